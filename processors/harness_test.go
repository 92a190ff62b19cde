package processors

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	stdjson "encoding/json"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// Fake test credentials; none of them is used anywhere real.
const (
	testAppName   = "main"
	testAppSecret = "fake_app_secret_9c1e7a5f2b"
	testOldSecret = "fake_old_app_secret_0000"
	testAccount   = "200000000000002"
)

// waitTimeout bounds every wait for the pipeline in these tests.
const waitTimeout = 60 * time.Second

// outputSuffixes are the topics a processor writes.
var outputSuffixes = []string{
	schemas.TopicMessages, schemas.TopicStatuses, schemas.TopicSync, schemas.TopicDLQ,
	schemas.TopicAudit, schemas.TopicKeys, schemas.TopicDedupe,
}

// harness runs processors against one Kafka cluster (kfake or real) under
// a topic prefix of its own, with a producer for raw records and a
// collector of every output record.
type harness struct {
	t        *testing.T
	cluster  *kfake.Cluster // nil against a real Kafka
	kafka    kafkaclient.Config
	ring     *keys.Keyring
	producer *kgo.Client
	out      *collector
}

func randomPrefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t-" + hex.EncodeToString(b[:]) + "."
}

// newKfakeHarness starts an in-process kfake cluster with every pipeline
// topic.
func newKfakeHarness(t *testing.T) *harness {
	t.Helper()
	cfg := kafkaclient.Defaults()
	cfg.TopicPrefix = randomPrefix(t)
	cfg.InProcess = true
	cluster, cfg, err := cfg.StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, cfg)
	h.cluster = cluster
	// Cleanups run last-in first-out: the cluster closes after every client.
	t.Cleanup(cluster.Close)
	h.init()
	return h
}

// newBrokerHarness creates the pipeline topics on the real Kafka at brokers
// and deletes them when the test ends.
func newBrokerHarness(t *testing.T, brokers []string) *harness {
	t.Helper()
	cfg := kafkaclient.Defaults()
	cfg.Brokers = brokers
	cfg.TopicPrefix = randomPrefix(t)
	testenv.CreateTopics(t, cfg)
	h := newHarness(t, cfg)
	h.init()
	return h
}

func newHarness(t *testing.T, cfg kafkaclient.Config) *harness {
	return &harness{t: t, kafka: cfg, ring: keys.Generate()}
}

func (h *harness) init() {
	t := h.t
	t.Helper()
	var err error
	h.producer, err = h.kafka.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.producer.Close)
	h.out = newCollector(t, h.kafka)
}

func (h *harness) config() Config {
	cfg := DefaultConfig()
	cfg.Group = "g-" + h.kafka.TopicPrefix
	cfg.TransactionalID = "tx-" + h.kafka.TopicPrefix
	cfg.Apps = []App{{Name: testAppName, Secrets: []AppSecret{
		{ID: "old", Secret: config.Secret(testOldSecret)},
		{ID: "current", Secret: config.Secret(testAppSecret)},
	}}}
	return cfg
}

// runningProcessor is a Processor running in a goroutine of the test.
type runningProcessor struct {
	*Processor
	registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// startProcessor starts a processor with cfg and waits until it is ready.
func (h *harness) startProcessor(cfg Config) *runningProcessor {
	t := h.t
	t.Helper()
	reg := prometheus.NewRegistry()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	p, err := New(Options{
		Config:   cfg,
		Kafka:    h.kafka,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "processor"),
		Registry: reg,
		Keyring:  h.ring,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningProcessor{Processor: p, registry: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	t.Cleanup(func() { rp.stop(t) })

	waitFor(t, "processor ready", func() bool {
		select {
		case err := <-rp.done:
			t.Fatalf("Run returned before ready: %v", err)
		default:
		}
		return p.Ready()
	})
	return rp
}

// stop cancels Run and checks that it returns nil, as a clean stop must.
func (rp *runningProcessor) stop(t *testing.T) {
	t.Helper()
	rp.stopOnce.Do(func() {
		rp.cancel()
		select {
		case err := <-rp.done:
			if err != nil {
				t.Errorf("Run returned %v on a clean stop, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v of cancel", waitTimeout)
		}
		if rp.Ready() {
			t.Error("Ready() is true after Run returned")
		}
	})
}

// produceRaw seals the value of a raw record as ingest does, writes it and
// returns where it landed.
func (h *harness) produceRaw(r *kgo.Record) *kgo.Record {
	h.t.Helper()
	sealer, err := schemas.NewRawSealer(h.ring.EnvelopeKey())
	if err != nil {
		h.t.Fatal(err)
	}
	var kind, requestID string
	for _, hd := range r.Headers {
		switch hd.Key {
		case schemas.HeaderKind:
			kind = string(hd.Value)
		case schemas.HeaderRequestID:
			requestID = string(hd.Value)
		}
	}
	r.Value = sealer.Seal(kind, requestID, r.Key, r.Value)
	return h.produceUnsealed(r)
}

// produceUnsealed writes a raw record as it is, as someone without the
// envelope key would.
func (h *harness) produceUnsealed(r *kgo.Record) *kgo.Record {
	h.t.Helper()
	r.Topic = h.kafka.Topic(schemas.TopicRaw)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.producer.ProduceSync(ctx, r).FirstErr(); err != nil {
		h.t.Fatalf("produce raw record: %v", err)
	}
	return r
}

// whatsAppRecord returns a raw record as ingest writes it for a webhook
// body signed with secret. An empty signature header is left out.
func whatsAppRecord(body []byte, app, secret string) *kgo.Record {
	r := &kgo.Record{
		Key:   []byte(testAccount),
		Value: body,
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderKind, Value: []byte(schemas.KindWhatsApp)},
			{Key: schemas.HeaderRequestID, Value: []byte("req-" + hex.EncodeToString(body[len(body)-8:]))},
			{Key: schemas.HeaderReceivedAt, Value: []byte("2025-10-09T08:53:21.123456789Z")},
			{Key: schemas.HeaderSource, Value: []byte("127.0.0.1")},
			{Key: schemas.HeaderApp, Value: []byte(app)},
		},
	}
	if secret != "" {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: schemas.HeaderSignature, Value: []byte("sha256=" + hex.EncodeToString(m.Sum(nil)))})
	}
	return r
}

// syncRecord returns a raw record as ingest writes it for one sync event,
// with the envelope MAC computed under macKey.
func syncRecord(event []byte, device, subject, requestID string, macKey []byte) *kgo.Record {
	receivedAt := "2025-10-09T08:53:21.5Z"
	mac := schemas.EnvelopeMAC(macKey, requestID, receivedAt, device, subject, event)
	return &kgo.Record{
		Key:   []byte(device),
		Value: event,
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderKind, Value: []byte(schemas.KindSync)},
			{Key: schemas.HeaderRequestID, Value: []byte(requestID)},
			{Key: schemas.HeaderReceivedAt, Value: []byte(receivedAt)},
			{Key: schemas.HeaderSource, Value: []byte("127.0.0.1")},
			{Key: schemas.HeaderDevice, Value: []byte(device)},
			{Key: schemas.HeaderSubject, Value: []byte(subject)},
			{Key: schemas.HeaderMAC, Value: []byte(mac)},
		},
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collector reads every output topic with read_committed, so it collects
// only what committed transactions wrote.
type collector struct {
	t     *testing.T
	kafka kafkaclient.Config
	cl    *kgo.Client

	mu      sync.Mutex
	records map[string][]*kgo.Record // by topic suffix, data records only
	// next is one past the highest offset seen per topic and partition,
	// control records included.
	next map[string]map[int32]int64
}

func newCollector(t *testing.T, cfg kafkaclient.Config) *collector {
	t.Helper()
	var topics []string
	for _, s := range outputSuffixes {
		topics = append(topics, cfg.Topic(s))
	}
	cl, err := cfg.NewClient(
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &collector{t: t, kafka: cfg, cl: cl, records: map[string][]*kgo.Record{}, next: map[string]map[int32]int64{}}
}

func (c *collector) suffix(topic string) string { return topic[len(c.kafka.TopicPrefix):] }

// poll fetches what is available within a short wait.
func (c *collector) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	fetches := c.cl.PollFetches(ctx)
	for _, fe := range fetches.Errors() {
		if !errors.Is(fe.Err, context.DeadlineExceeded) {
			c.t.Fatalf("collector fetch %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fetches.EachRecord(func(r *kgo.Record) {
		s := c.suffix(r.Topic)
		if c.next[s] == nil {
			c.next[s] = map[int32]int64{}
		}
		c.next[s][r.Partition] = max(c.next[s][r.Partition], r.Offset+1)
		if !r.Attrs.IsControl() {
			c.records[s] = append(c.records[s], r)
		}
	})
}

// waitUntil polls until cond holds for the records collected so far.
func (c *collector) waitUntil(what string, cond func() bool) {
	c.t.Helper()
	waitFor(c.t, what, func() bool {
		c.poll()
		c.mu.Lock()
		defer c.mu.Unlock()
		return cond()
	})
}

// settle reads every output topic up to its current last stable offset, so
// that the collector holds everything committed so far.
func (c *collector) settle() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	adm := kadm.NewClient(c.cl)
	ends := map[string]map[int32]int64{}
	for _, s := range outputSuffixes {
		listed, err := adm.ListCommittedOffsets(ctx, c.kafka.Topic(s))
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			c.t.Fatalf("list offsets of %s: %v", s, err)
		}
		ends[s] = map[int32]int64{}
		for p, o := range listed[c.kafka.Topic(s)] {
			ends[s][p] = o.Offset
		}
	}
	c.waitUntil("collector to reach the last stable offsets", func() bool {
		for s, parts := range ends {
			for p, end := range parts {
				if end > 0 && c.next[s][p] < end {
					return false
				}
			}
		}
		return true
	})
}

// all returns the data records collected from the topic with suffix.
func (c *collector) all(suffix string) []*kgo.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*kgo.Record(nil), c.records[suffix]...)
}

// countLocked counts the records of suffix that match; the caller holds mu.
func (c *collector) countLocked(suffix string, match func(*kgo.Record) bool) int {
	n := 0
	for _, r := range c.records[suffix] {
		if match == nil || match(r) {
			n++
		}
	}
	return n
}

// auditFor decodes the audit events collected so far that match.
func (c *collector) audits(match func(schemas.AuditEvent) bool) []schemas.AuditEvent {
	c.t.Helper()
	var out []schemas.AuditEvent
	for _, r := range c.all(schemas.TopicAudit) {
		var ev schemas.AuditEvent
		if err := stdjson.Unmarshal(r.Value, &ev); err != nil {
			c.t.Fatalf("audit record is not an AuditEvent: %v", err)
		}
		if match == nil || match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func decodeJSONRecord[T any](t *testing.T, r *kgo.Record) T {
	t.Helper()
	var v T
	if err := stdjson.Unmarshal(r.Value, &v); err != nil {
		t.Fatalf("decode %s record: %v", r.Topic, err)
	}
	return v
}

// decryptMessage opens an EncryptedMessage with the data key that the keys
// topic holds for it.
func (h *harness) decryptMessage(t *testing.T, m schemas.EncryptedMessage) Content {
	t.Helper()
	var wrapped *schemas.WrappedKey
	for _, r := range h.out.all(schemas.TopicKeys) {
		w := decodeJSONRecord[schemas.WrappedKey](t, r)
		if w.Subject == m.Subject && w.KeyID == m.KeyID {
			wrapped = &w
		}
	}
	if wrapped == nil {
		t.Fatalf("no key %s/%s in the keys topic", m.Subject, m.KeyID)
	}
	dek, err := h.ring.UnwrapKey(*wrapped)
	if err != nil {
		t.Fatalf("unwrap data key: %v", err)
	}
	plaintext, err := keys.Open(dek, m.Nonce, m.Ciphertext, []byte(m.MessageID))
	if err != nil {
		t.Fatalf("decrypt message %s: %v", m.MessageID, err)
	}
	var c Content
	if err := stdjson.Unmarshal(plaintext, &c); err != nil {
		t.Fatalf("plaintext is not Content JSON: %v", err)
	}
	return c
}
