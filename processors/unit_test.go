package processors

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/schemas"
)

func TestBoundedMapEvictsOldest(t *testing.T) {
	m := newBoundedMap[int, string](3)
	for i := 1; i <= 3; i++ {
		m.put(i, "v")
	}
	m.put(1, "updated") // an update keeps 1 the oldest
	m.put(4, "v")
	if _, ok := m.get(1); ok {
		t.Error("oldest key 1 not evicted when the fourth key was added")
	}
	for _, k := range []int{2, 3, 4} {
		if _, ok := m.get(k); !ok {
			t.Errorf("key %d evicted, want it kept", k)
		}
	}
	if m.len() != 3 {
		t.Errorf("len = %d, want 3", m.len())
	}
	m.put(5, "v")
	m.put(6, "v")
	if _, ok := m.get(3); ok {
		t.Error("key 3 not evicted after two more inserts")
	}
	if m.len() != 3 {
		t.Errorf("len = %d after wrap-around, want 3", m.len())
	}
	m.delete(6)
	if _, ok := m.get(6); ok || m.len() != 2 {
		t.Errorf("delete left key 6 or len %d, want 2", m.len())
	}
}

func TestDedupeKeySeparatesParts(t *testing.T) {
	keys := []dedupeKey{
		newDedupeKey(dedupeWhatsAppStatus, "wamid.1", "read", "5"),
		newDedupeKey(dedupeWhatsAppStatus, "wamid.1", "rea", "d5"),
		newDedupeKey(dedupeWhatsAppStatus, "wamid.1", "delivered", "5"),
		newDedupeKey(dedupeWhatsAppMessage, "wamid.1"),
		newDedupeKey(dedupeSyncEvent, "wamid.1", ""),
	}
	seen := map[dedupeKey]int{}
	for i, k := range keys {
		if j, dup := seen[k]; dup {
			t.Errorf("keys %d and %d collide", j, i)
		}
		seen[k] = i
	}
	if newDedupeKey(dedupeWhatsAppMessage, "wamid.1") != keys[3] {
		t.Error("dedupe key is not deterministic")
	}
}

func TestKeyStoreApplyRecord(t *testing.T) {
	ring := keys.Generate()
	store := newKeyStore(ring, 10)
	record := func(subject, keyID string, created time.Time, dek []byte) *kgo.Record {
		t.Helper()
		w, err := ring.WrapKey(subject, keyID, dek, created)
		if err != nil {
			t.Fatal(err)
		}
		v, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Key: []byte(keyRecordKey(subject, keyID)), Value: v}
	}
	t0 := time.Date(2025, 10, 9, 0, 0, 0, 0, time.UTC)
	older, newer := keys.NewDataKey(), keys.NewDataKey()

	_ = store.applyRecord(record("p_a", "dk_new", t0.Add(time.Hour), newer))
	_ = store.applyRecord(record("p_a", "dk_old", t0, older))
	if k := store.get("p_a"); k == nil || k.id != "dk_new" || !bytes.Equal(k.dek, newer) {
		t.Fatalf("current key = %+v, want the newer dk_new", k)
	}

	// A tombstone of another key leaves the current one alone.
	_ = store.applyRecord(&kgo.Record{Key: []byte("p_a/dk_old")})
	if store.get("p_a") == nil {
		t.Fatal("tombstone of an older key removed the current key")
	}
	_ = store.applyRecord(&kgo.Record{Key: []byte("p_a/dk_new")})
	if store.get("p_a") != nil {
		t.Fatal("tombstone of the current key left it in place")
	}

	// Records that cannot be used are counted and ignored.
	moved := record("p_b", "dk_1", t0, older)
	moved.Key = []byte("p_c/dk_1")
	foreign, err := keys.Generate().WrapKey("p_d", "dk_1", older, t0)
	if err != nil {
		t.Fatal(err)
	}
	foreignValue, _ := json.Marshal(foreign)
	for _, r := range []*kgo.Record{
		moved,
		{Key: []byte("no-slash"), Value: []byte("{}")},
		{Key: []byte("p_e/dk_1"), Value: []byte("not json")},
		{Key: []byte("p_d/dk_1"), Value: foreignValue},
	} {
		if err := store.applyRecord(r); err != nil {
			t.Fatalf("applyRecord returned %v, want bad records counted", err)
		}
	}
	if got := store.skippedRecords(); got != 4 {
		t.Errorf("skipped records = %d, want 4", got)
	}
	for _, s := range []string{"p_b", "p_c", "p_d", "p_e"} {
		if store.get(s) != nil {
			t.Errorf("unusable record created a key for %s", s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Apps = []App{{Name: "main", Secrets: []AppSecret{{ID: "a", Secret: "s1"}, {ID: "b", Secret: "s2"}}}}
		return c
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"default", func(*Config) {}, ""},
		{"no apps", func(c *Config) { c.Apps = nil }, ""},
		{"empty group", func(c *Config) { c.Group = "" }, "processor.group"},
		{"empty transactional id", func(c *Config) { c.TransactionalID = "" }, "processor.transactional_id"},
		{"zero dedupe entries", func(c *Config) { c.DedupeMaxEntries = 0 }, "processor.dedupe_max_entries"},
		{"zero key cache", func(c *Config) { c.KeyCacheMaxEntries = 0 }, "processor.key_cache_max_entries"},
		{"zero poll records", func(c *Config) { c.MaxPollRecords = 0 }, "processor.max_poll_records"},
		{"unknown client alg", func(c *Config) { c.AllowedClientAlgs = []string{"A128CBC"} }, "processor.allowed_client_algs[0]"},
		{"unnamed app", func(c *Config) { c.Apps[0].Name = "" }, "processor.apps[0].name"},
		{"duplicate app", func(c *Config) { c.Apps = append(c.Apps, c.Apps[0]) }, "processor.apps[1].name"},
		{"app without secrets", func(c *Config) { c.Apps[0].Secrets = nil }, "processor.apps[0].secrets"},
		{"empty secret", func(c *Config) { c.Apps[0].Secrets[1].Secret = "" }, "processor.apps[0].secrets[1].secret"},
		{"duplicate secret id", func(c *Config) { c.Apps[0].Secrets[1].ID = "a" }, "processor.apps[0].secrets[1].id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want+":") {
				t.Fatalf("Validate error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	c := DefaultConfig()
	c.Apps = []App{{Name: "main", Secrets: []AppSecret{{ID: "a", Secret: config.Secret(testAppSecret)}}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(testAppSecret)) {
		t.Fatal("JSON of the config reveals an App Secret")
	}
}

func newUnitProcessor(t *testing.T) *Processor {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Apps = []App{{Name: testAppName, Secrets: []AppSecret{
		{ID: "old", Secret: config.Secret(testOldSecret)},
		{ID: "current", Secret: config.Secret(testAppSecret)},
	}}}
	p, err := New(Options{Config: cfg, Kafka: kafkaclient.Defaults(), Keyring: keys.Generate()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyWhatsAppSignature(t *testing.T) {
	p := newUnitProcessor(t)
	body := readMeta(t, "text_escaped.json")
	sign := func(secret string, b []byte) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(b)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	valid := sign(testAppSecret, body)
	reserialized := readMeta(t, "text_reserialized.json")

	tests := []struct {
		name      string
		value     []byte
		app       string
		signature *string // nil leaves the header out
		ok        bool
	}{
		{"current secret", body, testAppName, &valid, true},
		{"old secret during rotation", body, testAppName, ptr(sign(testOldSecret, body)), true},
		{"upper-case hex", body, testAppName, ptr("sha256=" + strings.ToUpper(valid[7:])), true},
		{"missing header", body, testAppName, nil, false},
		{"empty header", body, testAppName, ptr(""), false},
		{"no prefix", body, testAppName, ptr(valid[7:]), false},
		{"sha1 prefix", body, testAppName, ptr("sha1=" + valid[7:]), false},
		{"truncated digest", body, testAppName, ptr(valid[:7+32]), false},
		{"digest with extra byte", body, testAppName, ptr(valid + "00"), false},
		{"not hex", body, testAppName, ptr("sha256=" + strings.Repeat("zz", 32)), false},
		{"verify token as key", body, testAppName, ptr(sign("fake_verify_token_4711", body)), false},
		{"re-serialized body", reserialized, testAppName, &valid, false},
		{"unknown app", body, "other", &valid, false},
		{"missing app", body, "", &valid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &kgo.Record{Value: tt.value, Headers: []kgo.RecordHeader{{Key: schemas.HeaderApp, Value: []byte(tt.app)}}}
			if tt.signature != nil {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: schemas.HeaderSignature, Value: []byte(*tt.signature)})
			}
			why := p.verifyWhatsApp(newRawRecord(r))
			if got := why == ""; got != tt.ok {
				t.Fatalf("verifyWhatsApp = %q, want valid=%v", why, tt.ok)
			}
		})
	}
}

func TestVerifySyncMAC(t *testing.T) {
	p := newUnitProcessor(t)
	event := []byte(`{"event_id":"e1","type":"t","occurred_at":"2025-10-09T08:53:20Z"}`)
	good := syncRecord(event, "dev-1", "user-1", "req-1", p.envelopeKey)
	if why := p.verifySync(newRawRecord(good)); why != "" {
		t.Fatalf("valid MAC rejected: %s", why)
	}
	for header, value := range map[string]string{
		schemas.HeaderDevice:     "dev-2",
		schemas.HeaderSubject:    "user-2",
		schemas.HeaderRequestID:  "req-2",
		schemas.HeaderReceivedAt: "2025-10-09T08:53:22Z",
		schemas.HeaderMAC:        strings.Repeat("0", 64),
	} {
		r := syncRecord(event, "dev-1", "user-1", "req-1", p.envelopeKey)
		for i := range r.Headers {
			if r.Headers[i].Key == header {
				r.Headers[i].Value = []byte(value)
			}
		}
		if why := p.verifySync(newRawRecord(r)); why == "" {
			t.Errorf("changing header %s did not break the MAC", header)
		}
	}
	tampered := syncRecord(event, "dev-1", "user-1", "req-1", p.envelopeKey)
	tampered.Value = bytes.Replace(event, []byte("e1"), []byte("e2"), 1)
	if why := p.verifySync(newRawRecord(tampered)); why == "" {
		t.Error("changing the value did not break the MAC")
	}
}

func TestRateLimitedLog(t *testing.T) {
	var l rateLimitedLog
	t0 := time.Date(2025, 10, 9, 0, 0, 0, 0, time.UTC)
	if _, ok := l.allow(t0); !ok {
		t.Fatal("first line held back")
	}
	for i := 1; i <= 3; i++ {
		if _, ok := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d within the interval let through", i)
		}
	}
	suppressed, ok := l.allow(t0.Add(fetchWarningInterval))
	if !ok || suppressed != 3 {
		t.Fatalf("allow after the interval = %d, %v; want 3, true", suppressed, ok)
	}
}

func ptr(s string) *string { return &s }
