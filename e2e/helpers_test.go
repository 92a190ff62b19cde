package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/schemas"
)

// waitFor polls cond every 100ms until it returns true or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count runs a SELECT count() query in the stack's database. {db} in the
// query stands for the database name.
func (s *stack) count(query string, args ...any) uint64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	q := strings.ReplaceAll(query, "{db}", s.database)
	if err := s.ch.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitCount waits until the count query returns want, then holds for a
// moment to catch rows that would arrive late, and checks again.
func (s *stack) waitCount(want uint64, timeout time.Duration, query string, args ...any) {
	s.t.Helper()
	var got uint64
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if got = s.count(query, args...); got >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != want {
		s.t.Fatalf("%s = %d, want %d", query, got, want)
	}
}

// settle waits until the sink has stored everything the pipeline produced:
// the audit_log row count stops changing for a second.
func (s *stack) settle() {
	s.t.Helper()
	last, stable := uint64(0), 0
	waitFor(s.t, 60*time.Second, "the pipeline to settle", func() bool {
		n := s.count("SELECT count() FROM {db}.audit_log")
		if n == last && n > 0 {
			stable++
		} else {
			stable = 0
		}
		last = n
		time.Sleep(150 * time.Millisecond)
		return stable >= 7
	})
}

// storedMessage is one row of the messages table.
type storedMessage struct {
	MessageID, Kind, Type, Account, Subject, KeyID string
	Nonce, Ciphertext                              []byte
	Meta, Errors                                   string
}

func (s *stack) messages(where string, args ...any) []storedMessage {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := "SELECT message_id, kind, type, account, subject, key_id, nonce, ciphertext, meta, errors FROM " +
		s.database + ".messages FINAL WHERE " + where + " ORDER BY message_id"
	rows, err := s.ch.Query(ctx, q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []storedMessage
	for rows.Next() {
		var m storedMessage
		var nonce, ct string
		if err := rows.Scan(&m.MessageID, &m.Kind, &m.Type, &m.Account, &m.Subject, &m.KeyID, &nonce, &ct, &m.Meta, &m.Errors); err != nil {
			s.t.Fatal(err)
		}
		m.Nonce, m.Ciphertext = []byte(nonce), []byte(ct)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// decrypt opens a stored message with its subject's data key, which it
// unwraps from the keys topic with the stack's keyring, as an auditor with
// the keyring would.
func (s *stack) decrypt(m storedMessage) []byte {
	s.t.Helper()
	var dek []byte
	for _, r := range s.readTopic(schemas.TopicKeys) {
		if string(r.Key) != m.Subject+"/"+m.KeyID {
			continue
		}
		var w schemas.WrappedKey
		if err := json.Unmarshal(r.Value, &w); err != nil {
			s.t.Fatal(err)
		}
		k, err := s.ring.UnwrapKey(w)
		if err != nil {
			s.t.Fatalf("unwrap data key %s: %v", r.Key, err)
		}
		dek = k
	}
	if dek == nil {
		s.t.Fatalf("no data key %s/%s in the keys topic", m.Subject, m.KeyID)
	}
	plain, err := keys.Open(dek, m.Nonce, m.Ciphertext, []byte(m.MessageID))
	if err != nil {
		s.t.Fatalf("decrypt %s: %v", m.MessageID, err)
	}
	return plain
}

// readTopic returns every committed record of a topic of the stack, up to
// the end offsets at the time of the call.
func (s *stack) readTopic(suffix string) []*kgo.Record {
	s.t.Helper()
	topic := s.topic(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.kafka)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(s.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: startOffsets(want)}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers take offsets too; keeping them lets the loop
		// see the last offset of a transactional partition.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()

	var out []*kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			s.t.Fatalf("read %s: %v (still waiting for partitions %v)", topic, err, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

func startOffsets(ends map[int32]int64) map[int32]kgo.Offset {
	m := make(map[int32]kgo.Offset, len(ends))
	for p := range ends {
		m[p] = kgo.NewOffset().AtStart()
	}
	return m
}

// assertNoPlaintext fails if any Kafka record of the stack or any
// ClickHouse column of its database contains one of the strings, in plain
// or JSON-escaped form.
func (s *stack) assertNoPlaintext(secrets ...string) {
	s.t.Helper()
	var needles [][]byte
	for _, p := range secrets {
		needles = append(needles, []byte(p))
		escaped, _ := json.Marshal(p)
		needles = append(needles, bytes.Trim(escaped, `"`))
	}
	for _, suffix := range schemas.AllTopics {
		for _, r := range s.readTopic(suffix) {
			for _, n := range needles {
				if bytes.Contains(r.Value, n) || bytes.Contains(r.Key, n) {
					s.t.Errorf("topic %s partition %d offset %d contains plaintext %q", suffix, r.Partition, r.Offset, n)
				}
				for _, h := range r.Headers {
					if bytes.Contains(h.Value, n) {
						s.t.Errorf("topic %s offset %d header %s contains plaintext %q", suffix, r.Offset, h.Key, n)
					}
				}
			}
		}
	}
	for _, table := range []string{"audit_log", "messages", "statuses", "alerts"} {
		for _, p := range secrets {
			n := s.count(fmt.Sprintf("SELECT count() FROM {db}.%s WHERE position(toString(tuple(*)), ?) > 0", table), p)
			if n > 0 {
				s.t.Errorf("table %s has %d rows containing plaintext %q", table, n, p)
			}
		}
	}
}

// httpResult is a received HTTP response.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// send sends one request to the stack's ingest. Header names are used as
// given, without canonicalisation, so a test can send a lower-case name.
func (s *stack) send(method, target string, headers [][2]string, body []byte) httpResult {
	s.t.Helper()
	req, err := http.NewRequest(method, s.ingestURL+target, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, h := range headers {
		if strings.EqualFold(h[0], "Content-Length") || strings.EqualFold(h[0], "Host") {
			continue
		}
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// sendGenerated sends a request from the load generator's factories to the
// stack's ingest.
func (s *stack) sendGenerated(req loadgen.Request) httpResult {
	s.t.Helper()
	var headers [][2]string
	for k, vs := range req.Header {
		for _, v := range vs {
			headers = append(headers, [2]string{k, v})
		}
	}
	return s.send(req.Method, req.Path, headers, req.Body)
}
