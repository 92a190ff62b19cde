package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The recorded WhatsApp cases under testdata/whatsapp are inputs that broke
// other webhook integrations in production. Each case's expected.md states
// the behaviour; these tests send every request byte for byte to a running
// syncguard and check the responses and what ends up stored.

type manifest struct {
	Requests []caseRequest `json:"requests"`
}

type caseRequest struct {
	Case           string      `json:"case"`
	Request        string      `json:"request"`
	Method         string      `json:"method"`
	Target         string      `json:"target"`
	Headers        [][2]string `json:"headers"`
	BodyFile       string      `json:"body_file"`
	Expect         string      `json:"expect"`
	ConcurrentWith string      `json:"concurrent_with"`
	DelaySeconds   int         `json:"delay_s"`
	Precondition   string      `json:"precondition"`
}

func loadCases(t *testing.T) map[string][]caseRequest {
	t.Helper()
	b, err := os.ReadFile("testdata/whatsapp/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	byCase := map[string][]caseRequest{}
	for _, r := range m.Requests {
		byCase[r.Case] = append(byCase[r.Case], r)
	}
	return byCase
}

func (r caseRequest) body(t *testing.T) []byte {
	t.Helper()
	if r.BodyFile == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join("testdata/whatsapp", r.BodyFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// check compares a response with the manifest's expectation: "200",
// "4xx", "403", "5xx ..." or "200 body=TEXT".
func (r caseRequest) check(t *testing.T, got httpResult) {
	t.Helper()
	want, wantBody, hasBody := strings.Cut(r.Expect, " body=")
	want = strings.Fields(want)[0]
	ok := false
	switch want {
	case "4xx":
		ok = got.Status >= 400 && got.Status < 500
	case "5xx":
		ok = got.Status >= 500 && got.Status < 600
	default:
		ok = want == http.StatusText(got.Status) || want == itoa(got.Status)
	}
	if !ok {
		t.Errorf("%s/%s: status %d, want %s; body %s", r.Case, r.Request, got.Status, r.Expect, got.Body)
	}
	if hasBody && string(got.Body) != wantBody {
		t.Errorf("%s/%s: body %q, want exactly %q", r.Case, r.Request, got.Body, wantBody)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// sendCase sends the requests of one case in order; requests marked
// concurrent_with are sent at the same moment.
func (s *stack) sendCase(t *testing.T, reqs []caseRequest) []httpResult {
	t.Helper()
	results := make([]httpResult, len(reqs))
	for i := 0; i < len(reqs); i++ {
		r := reqs[i]
		if r.ConcurrentWith != "" && i+1 < len(reqs) && reqs[i+1].Request == r.ConcurrentWith {
			var wg sync.WaitGroup
			for j := i; j <= i+1; j++ {
				wg.Add(1)
				go func(j int) {
					defer wg.Done()
					results[j] = s.send(reqs[j].Method, reqs[j].Target, reqs[j].Headers, reqs[j].body(t))
				}(j)
			}
			wg.Wait()
			reqs[i].check(t, results[i])
			reqs[i+1].check(t, results[i+1])
			i++
			continue
		}
		results[i] = s.send(r.Method, r.Target, r.Headers, r.body(t))
		r.check(t, results[i])
	}
	return results
}

// stringsIn returns every string value inside a JSON document.
func stringsIn(t *testing.T, doc []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("decrypted content is not JSON: %v", err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// wantContent checks that the message decrypts to content holding every
// given string as one of its values.
func (s *stack) wantContent(t *testing.T, m storedMessage, want ...string) {
	t.Helper()
	values := stringsIn(t, s.decrypt(m))
	for _, w := range want {
		if !slices.Contains(values, w) {
			t.Errorf("%s: decrypted content %q lacks %q", m.MessageID, values, w)
		}
	}
}

func (s *stack) oneMessage(t *testing.T, id string) storedMessage {
	t.Helper()
	s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.messages FINAL WHERE message_id = ?", id)
	return s.messages("message_id = ?", id)[0]
}

func TestWhatsAppCases(t *testing.T) {
	cases := loadCases(t)
	s := newStack(t, stackOptions{})

	// Content strings that must be stored only encrypted.
	var plaintexts []string

	t.Run("C01 escaped body bytes", func(t *testing.T) {
		s.sendCase(t, cases["C01"])
		m := s.oneMessage(t, "wamid.RkFLRS1DMDEtMQ==")
		if m.Type != "text" || m.Account != "200000000000002" {
			t.Errorf("type %q account %q, want text 200000000000002", m.Type, m.Account)
		}
		if m.Subject != s.ring.Pseudonym("15550002222") {
			t.Errorf("subject %q is not the pseudonym of the sender", m.Subject)
		}
		text := "Contact me at test.user@example.com or https://example.com/help?id=42"
		s.wantContent(t, m, text)
		plaintexts = append(plaintexts, text)
	})

	t.Run("C03 media messages", func(t *testing.T) {
		s.sendCase(t, cases["C03"])
		want := map[string]struct{ typ, mime, content string }{
			"wamid.RkFLRS1DMDMtaW1n": {"image", "image/jpeg", "Rechnung für März / invoice"},
			"wamid.RkFLRS1DMDMtYXVk": {"audio", "audio/ogg; codecs=opus", ""},
			"wamid.RkFLRS1DMDMtZG9j": {"document", "application/pdf", "Vertrag_März_2025.pdf"},
			"wamid.RkFLRS1DMDMtc3Rr": {"sticker", "image/webp", ""},
		}
		for id, w := range want {
			m := s.oneMessage(t, id)
			if m.Type != w.typ {
				t.Errorf("%s: type %q, want %q", id, m.Type, w.typ)
			}
			var meta map[string]any
			if err := json.Unmarshal([]byte(m.Meta), &meta); err != nil {
				t.Errorf("%s: meta %q is not JSON: %v", id, m.Meta, err)
			} else if meta["mime_type"] != w.mime {
				t.Errorf("%s: meta mime_type %v, want %q", id, meta["mime_type"], w.mime)
			}
			if w.content != "" {
				s.wantContent(t, m, w.content)
				plaintexts = append(plaintexts, w.content)
			}
		}
		doc := s.messages("message_id = ?", "wamid.RkFLRS1DMDMtZG9j")[0]
		s.wantContent(t, doc, "Vertrag")
	})

	t.Run("C04 wrong HMAC keys", func(t *testing.T) {
		s.sendCase(t, cases["C04"])
		s.oneMessage(t, "wamid.RkFLRS1DMDQtMQ==")
		if n := s.count("SELECT count() FROM {db}.audit_log WHERE stage = 'ingest' AND reason = 'invalid_signature'"); n < 2 {
			t.Errorf("%d invalid_signature audit rows, want at least the 2 of this case", n)
		}
	})

	t.Run("C05 signature header variants", func(t *testing.T) {
		s.sendCase(t, cases["C05"])
		m := s.oneMessage(t, "wamid.RkFLRS1DMDUtMQ==")
		s.wantContent(t, m, "Hello from the signature format test")
		plaintexts = append(plaintexts, "Hello from the signature format test")
	})

	t.Run("C06 handshake echoes the challenge", func(t *testing.T) {
		results := s.sendCase(t, cases["C06"])
		for i, r := range results {
			if r.Status == http.StatusOK && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("r%02d: Content-Type %q, want text/plain", i+1, r.Header.Get("Content-Type"))
			}
			if r.Status != http.StatusOK && strings.Contains(string(r.Body), "1158201444") {
				t.Errorf("r%02d: rejected handshake body contains the challenge", i+1)
			}
		}
	})

	t.Run("C07 handshake needs no signature", func(t *testing.T) {
		s.sendCase(t, cases["C07"])
	})

	t.Run("C08 status without profile", func(t *testing.T) {
		s.sendCase(t, cases["C08"])
		id := "wamid.RkFLRS1DMDgtb3V0LTE="
		s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.statuses WHERE message_id = ? AND status = 'delivered' AND timestamp = toDateTime(1760000060) AND recipient = ?", id, s.ring.Pseudonym("15550002222"))
		if n := s.count("SELECT count() FROM {db}.statuses WHERE message_id = ? AND position(pricing, 'PMP') > 0 AND position(pricing, 'utility') > 0", id); n != 1 {
			t.Errorf("status pricing not kept: %d rows match", n)
		}
		if n := s.count("SELECT count() FROM {db}.messages WHERE message_id = ?", id); n != 0 {
			t.Errorf("a status created %d message rows", n)
		}
	})

	t.Run("C09 failed statuses keep errors", func(t *testing.T) {
		s.sendCase(t, cases["C09"])
		s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.statuses WHERE message_id = 'wamid.RkFLRS1DMDktb3V0LTE=' AND status = 'failed' AND position(errors, '131049') > 0")
		s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.statuses WHERE message_id = 'wamid.RkFLRS1DMDktb3V0LTI=' AND status = 'failed' AND position(errors, '131026') > 0")
	})

	t.Run("C11 redeliveries stored once", func(t *testing.T) {
		reqs := cases["C11"]
		s.sendCase(t, reqs[:2])
		// The late copy goes out once the first is stored, which is later
		// than any in-flight deduplication could cover.
		s.oneMessage(t, "wamid.RkFLRS1DMTEtMQ==")
		s.sendCase(t, reqs[2:])
		s.settle()
		if n := s.count("SELECT count() FROM {db}.messages WHERE message_id = 'wamid.RkFLRS1DMTEtMQ=='"); n != 1 {
			t.Errorf("%d rows for the redelivered message, want 1", n)
		}
		if n := s.count("SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND outcome = 'duplicate' AND message_id = 'wamid.RkFLRS1DMTEtMQ=='"); n != 2 {
			t.Errorf("%d duplicate audit rows, want 2", n)
		}
	})

	t.Run("C14 unsupported and unknown types", func(t *testing.T) {
		s.sendCase(t, cases["C14"])
		for id, typ := range map[string]string{"wamid.RkFLRS1DMTQtMQ==": "unsupported", "wamid.RkFLRS1DMTQtMg==": "unknown"} {
			m := s.oneMessage(t, id)
			if m.Type != typ {
				t.Errorf("%s: type %q, want %q", id, m.Type, typ)
			}
			if !strings.Contains(m.Errors, "131051") {
				t.Errorf("%s: errors %q lack code 131051", id, m.Errors)
			}
		}
	})

	t.Run("C15 reaction and its removal", func(t *testing.T) {
		s.sendCase(t, cases["C15"])
		added := s.oneMessage(t, "wamid.RkFLRS1DMTUtcjE=")
		removed := s.oneMessage(t, "wamid.RkFLRS1DMTUtcjI=")
		for _, m := range []storedMessage{added, removed} {
			if m.Type != "reaction" {
				t.Errorf("%s: type %q, want reaction", m.MessageID, m.Type)
			}
			if !strings.Contains(m.Meta, "wamid.RkFLRS1DMTUtb3V0LTE=") {
				t.Errorf("%s: meta %q lacks the reaction target", m.MessageID, m.Meta)
			}
		}
		s.wantContent(t, added, "\U0001F62E")
		if slices.Contains(stringsIn(t, s.decrypt(removed)), "\U0001F62E") {
			t.Errorf("the removal carries the emoji")
		}
	})

	t.Run("C17 interactive replies", func(t *testing.T) {
		s.sendCase(t, cases["C17"])
		want := map[string]struct {
			typ, meta string
			content   []string
		}{
			"wamid.RkFLRS1DMTctMQ==": {"interactive", "btn_confirm_yes", []string{"Yes, confirm"}},
			"wamid.RkFLRS1DMTctMg==": {"interactive", "slot_tue_10", []string{"Tue 10:00", "Tuesday morning slot"}},
			"wamid.RkFLRS1DMTctMw==": {"button", "STOP_PROMOS", []string{"Stop promotions"}},
		}
		for id, w := range want {
			m := s.oneMessage(t, id)
			if m.Type != w.typ {
				t.Errorf("%s: type %q, want %q", id, m.Type, w.typ)
			}
			if !strings.Contains(m.Meta, w.meta) || !strings.Contains(m.Meta, "wamid.RkFLRS1DMTctb3V0LTE=") {
				t.Errorf("%s: meta %q lacks the reply id %q or the context id", id, m.Meta, w.meta)
			}
			s.wantContent(t, m, w.content...)
			plaintexts = append(plaintexts, w.content...)
		}
	})

	t.Run("rejected requests store nothing", func(t *testing.T) {
		s.settle()
		// Only the valid POSTs of all cases above produced raw records.
		if n := s.count("SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND action = 'verify' AND outcome = 'rejected'"); n != 0 {
			t.Errorf("%d raw records failed verification in the processor, want 0", n)
		}
		if n := s.count("SELECT count() FROM {db}.audit_log WHERE stage = 'ingest' AND status >= 500"); n != 0 {
			t.Errorf("%d requests got a 5xx answer", n)
		}
	})

	t.Run("no plaintext in kafka or clickhouse", func(t *testing.T) {
		if len(plaintexts) < 8 {
			t.Fatalf("only %d content strings collected; a case above failed early", len(plaintexts))
		}
		// Customer phone numbers and profile names are personal data and
		// appear only as pseudonyms or inside ciphertext.
		s.assertNoPlaintext(append(plaintexts, "15550002222", "15550003333", "Test User")...)
	})
}

// TestWhatsAppCaseKafkaDown sends C20: with Kafka unreachable the webhook
// gets 503 with Retry-After within seconds, so Meta retries; the
// redeliveries after recovery are stored once.
func TestWhatsAppCaseKafkaDown(t *testing.T) {
	reqs := loadCases(t)["C20"]

	// NOTE: the shared test broker cannot be stopped without disturbing
	// tests running beside this one, so "Kafka down" is an ingest whose
	// broker address accepts no connections.
	down := newStack(t, stackOptions{Targets: "ingest", Brokers: []string{freeAddr(t)}, NotReady: true})
	start := time.Now()
	got := down.send(reqs[0].Method, reqs[0].Target, reqs[0].Headers, reqs[0].body(t))
	elapsed := time.Since(start)
	reqs[0].check(t, got)
	if got.Status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", got.Status)
	}
	if got.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// The configured produce_timeout is 2s; Meta waits longer than that.
	if elapsed > 5*time.Second {
		t.Errorf("answer took %s, want about the 2s produce timeout", elapsed)
	}
	down.stop()

	up := newStack(t, stackOptions{})
	up.sendCase(t, reqs[1:])
	up.settle()
	m := up.oneMessage(t, "wamid.RkFLRS1DMjAtMQ==")
	up.wantContent(t, m, "Sent while the pipeline was down")
	if n := up.count("SELECT count() FROM {db}.messages WHERE message_id = 'wamid.RkFLRS1DMjAtMQ=='"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}
