package ingest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// Fake credentials of the WhatsApp test cases.
const (
	testAppSecret   = "fake_app_secret_9c1e7a5f2b"
	testVerifyToken = "fake_verify_token_4711"
	testIssuer      = "https://auth.test.invalid"
	testAudience    = "sync-ingest"
	testDevice      = "dev-42"
	testHS256Secret = "fake-hs256-secret-0123456789abcdef0123"
)

// testKeys are the trusted signing keys of the sync tests.
type testKeys struct {
	ed      ed25519.PrivateKey
	ec      *ecdsa.PrivateKey
	jwks    string // path of the JWKS file with both public keys
	jwksRaw []byte
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKeys{ed: ed, ec: ec}
	b64 := base64.RawURLEncoding.EncodeToString
	point, err := ec.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig", "x": b64(ed.Public().(ed25519.PublicKey))},
		{"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256", "use": "sig", "x": b64(point[1:33]), "y": b64(point[33:])},
	}}
	k.jwksRaw, _ = json.Marshal(set)
	k.jwks = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(k.jwks, k.jwksRaw, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// realBrokerConfig is testConfig with room for a real broker that has just
// created the test's topics on a busy machine. With 2 s, the first DPoP
// claim of a test sometimes timed out while other packages' tests ran.
func realBrokerConfig(keys *testKeys) Config {
	cfg := testConfig(keys)
	cfg.ProduceTimeout = 15 * time.Second
	cfg.WriteTimeout = cfg.ReadTimeout + cfg.ProduceTimeout + minResponseTime
	return cfg
}

// testConfig is a valid configuration with one app and the test keys.
func testConfig(keys *testKeys) Config {
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.ProduceTimeout = 2 * time.Second
	cfg.WhatsAppApps = []WhatsAppApp{{
		Name:        "main",
		VerifyToken: config.Secret(testVerifyToken),
		Secrets:     []AppSecret{{ID: "s1", Secret: config.Secret(testAppSecret)}},
	}}
	cfg.SyncAuth.Issuer = testIssuer
	cfg.SyncAuth.Audience = testAudience
	cfg.SyncAuth.JWKSFile = keys.jwks
	return cfg
}

// harness is a Server on an in-process Kafka cluster.
type harness struct {
	t      *testing.T
	srv    *Server
	kafka  kafkaclient.Config
	client *kgo.Client
	keys   *testKeys
	// nowNanos is the server's clock in Unix nanoseconds: tests move it
	// with advance while the replay follower reads it.
	nowNanos atomic.Int64
	envelope []byte
	registry *prometheus.Registry
	cluster  *kfake.Cluster // nil unless newHarness started it
}

// newHarness starts a kfake cluster and a Server on it. edit may change
// the configuration first.
func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	keys := newTestKeys(t)
	cfg := testConfig(keys)
	if edit != nil {
		edit(&cfg)
	}
	cluster, kcfg, err := testKafkaConfig().StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	h := newHarnessOn(t, cfg, kcfg, keys)
	h.cluster = cluster
	return h
}

// newHarnessOn builds a Server with cfg on the Kafka cluster of kcfg. opts
// are added to the options of the server's Kafka client.
func newHarnessOn(t *testing.T, cfg Config, kcfg kafkaclient.Config, keys *testKeys, opts ...kgo.Opt) *harness {
	t.Helper()
	client, err := kcfg.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	h := &harness{
		t:        t,
		kafka:    kcfg,
		client:   client,
		keys:     keys,
		envelope: bytes.Repeat([]byte{7}, 32),
		registry: prometheus.NewRegistry(),
	}
	h.nowNanos.Store(time.Now().Truncate(time.Second).UnixNano())
	h.srv, err = New(Options{
		Config:      cfg,
		Kafka:       kcfg,
		Registry:    h.registry,
		EnvelopeKey: h.envelope,
		Now:         func() time.Time { return h.clock() },
		Client:      client,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Serve starts the replay topic follower; tests that call the handler
	// directly need it for DPoP proofs.
	stopReplay, err := h.srv.followReplay()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopReplay)
	return h
}

// do sends req to the server's handler and returns the recorded response.
func (h *harness) do(req *http.Request) *httptest.ResponseRecorder {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// sign returns the X-Hub-Signature-256 value of body under secret.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhookRequest is a POST /webhooks/whatsapp with body and headers.
func webhookRequest(body []byte, headers map[string]string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/whatsapp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		// Set canonicalises the name as net/http's server does with the
		// names it reads; TestServeOverTCP sends lower-case names on the
		// wire.
		req.Header.Set(k, v)
	}
	return req
}

// waBody is a WhatsApp text message notification in Meta's compact form,
// with the escapes Meta uses, so that re-serialising it would change it.
func waBody(text string) []byte {
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"100000000000001","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"200000000000002"},"contacts":[{"profile":{"name":"Test User"},"wa_id":"15550002222"}],"messages":[{"from":"15550002222","id":"wamid.RkFLRS1UMDEtMQ==","timestamp":"1760000040","text":{"body":"` + text + `"},"type":"text"}]},"field":"messages"}]}]}`)
}

// records returns every record of the topic with the given suffix. Raw
// records are complete once their request got its response, so the end
// offsets at the time of the call bound the records to read.
func (h *harness) records(suffix string) []*kgo.Record {
	h.t.Helper()
	topic := h.kafka.Topic(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(h.client)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		h.t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	consumer, err := h.kafka.NewClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer consumer.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("read %d of %d records of %s before the deadline", len(out), total, topic)
		}
		fetches.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if suffix == schemas.TopicRaw {
		for _, r := range out {
			r.Value = openRaw(h.t, h.envelope, r)
		}
	}
	return out
}

// openRaw returns the plaintext of a sealed raw record value. It fails the
// test if the sealed value contains the plaintext or does not open.
func openRaw(t *testing.T, envelopeKey []byte, r *kgo.Record) []byte {
	t.Helper()
	sealer, err := schemas.NewRawSealer(envelopeKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sealer.Open(header(t, r, schemas.HeaderKind), header(t, r, schemas.HeaderRequestID), r.Key, r.Value)
	if err != nil {
		t.Fatalf("raw record at offset %d: %v", r.Offset, err)
	}
	if len(plain) > 16 && bytes.Contains(r.Value, plain[:16]) {
		t.Errorf("raw record at offset %d holds its value in plaintext", r.Offset)
	}
	return plain
}

// waitRecords polls until the topic contains at least n records. Audit
// records are produced without waiting, so they may arrive after the
// response.
func (h *harness) waitRecords(suffix string, n int) []*kgo.Record {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := h.records(suffix)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("topic %s holds %d records, want %d", suffix, len(recs), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditEvents waits for at least n audit events and returns them all.
// The client is flushed first, so every audit record of a completed
// request has been acknowledged or failed.
func (h *harness) auditEvents(n int) []schemas.AuditEvent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.client.Flush(ctx); err != nil {
		h.t.Fatalf("flush: %v", err)
	}
	recs := h.waitRecords(schemas.TopicAudit, n)
	evs := make([]schemas.AuditEvent, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.Value, &evs[i]); err != nil {
			h.t.Fatalf("audit record %d: %v", i, err)
		}
	}
	return evs
}

// header returns the value of a record header, failing when it is absent.
func header(t *testing.T, r *kgo.Record, key string) string {
	t.Helper()
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	t.Fatalf("record has no header %s", key)
	return ""
}

// problemBody is the decoded application/problem+json response.
type problemBody struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// wantProblem checks that rec is a problem response with status and code.
func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) problemBody {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body.String(), err)
	}
	if p.Code != code {
		t.Fatalf("code = %q, want %q (detail %q)", p.Code, code, p.Detail)
	}
	if p.Status != status {
		t.Errorf("problem status = %d, want %d", p.Status, status)
	}
	if p.Type != "https://syncguard.dev/problems/"+code {
		t.Errorf("type = %q", p.Type)
	}
	if p.RequestID == "" || p.RequestID != rec.Header().Get("X-Request-Id") {
		t.Errorf("request_id = %q, X-Request-Id = %q", p.RequestID, rec.Header().Get("X-Request-Id"))
	}
	return p
}

// clock returns the server's current time.
func (h *harness) clock() time.Time { return time.Unix(0, h.nowNanos.Load()).UTC() }

// advance moves the server's clock forward by d.
func (h *harness) advance(d time.Duration) { h.nowNanos.Add(int64(d)) }

// claims returns access token claims valid at h.clock() for testDevice.
func (h *harness) claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "user-1",
		"device_id": testDevice,
		"scope":     "sync:read sync:write",
		"iat":       h.clock().Unix(),
		"nbf":       h.clock().Unix(),
		"exp":       h.clock().Add(10 * time.Minute).Unix(),
		"jti":       newID(),
	}
}

// token signs claims with the Ed25519 test key (kid ed-1).
func (h *harness) token(claims jwt.MapClaims) string {
	h.t.Helper()
	return signToken(h.t, jwt.SigningMethodEdDSA, h.keys.ed, "ed-1", claims)
}

func signToken(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["typ"] = "at+jwt"
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawToken assembles a token from a header, claims and signature as given.
func rawToken(header, claims any, sig []byte) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(hb) + "." + enc(cb) + "." + enc(sig)
}

// event returns a valid plaintext sync event as JSON.
func (h *harness) event(id string) string {
	return h.eventAt(id, h.clock().Add(-time.Minute))
}

// eventAt returns a plaintext sync event that occurred at t.
func (h *harness) eventAt(id string, t time.Time) string {
	return fmt.Sprintf(`{"event_id":%q,"type":"message.created","occurred_at":%q,"device_id":%q,"conversation_id":"conv-1","content":{"text":"hello \u00e9"}}`,
		id, t.Format(time.RFC3339Nano), testDevice)
}

// syncRequest is a POST /v1/sync/events with a bearer token.
func (h *harness) syncRequest(contentType string, body []byte, token string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/v1/sync/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Device-ID", testDevice)
	return req
}

// batchResponseOf decodes a sync batch response.
func batchResponseOf(t *testing.T, rec *httptest.ResponseRecorder) batchResponse {
	t.Helper()
	var a batchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("batch response %q: %v", rec.Body.String(), err)
	}
	return a
}

// readAllString reads a response body.
func readAllString(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// containsAny reports whether any record's key, value or headers contain s.
func containsAny(recs []*kgo.Record, s string) bool {
	for _, r := range recs {
		if strings.Contains(string(r.Key), s) || strings.Contains(string(r.Value), s) {
			return true
		}
		for _, h := range r.Headers {
			if strings.Contains(h.Key, s) || strings.Contains(string(h.Value), s) {
				return true
			}
		}
	}
	return false
}

// testKafkaConfig is a Kafka configuration with a unique topic prefix.
func testKafkaConfig() kafkaclient.Config {
	kcfg := kafkaclient.Defaults()
	kcfg.TopicPrefix = "t-" + newID()[:8] + "."
	kcfg.Partitions = 2
	return kcfg
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testutilCounter sums a counter over all its label sets.
func testutilCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// counterWith returns the value of a counter with the given labels.
func counterWith(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func writeTestFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}

// memoryClaimer is a claimer in this process's memory, for tests that
// exercise the proof checks without Kafka.
type memoryClaimer struct{ seen *ttlCache[struct{}] }

func newMemoryClaimer(ttl time.Duration) memoryClaimer {
	return memoryClaimer{seen: newTTLCache[struct{}](ttl, 1<<20, false)}
}

func (m memoryClaimer) claim(_ context.Context, k cacheKey) (int, error) {
	if m.seen.add(k, struct{}{}, time.Now()) == cachePresent {
		return claimReplay, nil
	}
	return claimFresh, nil
}
