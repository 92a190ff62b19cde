package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

func TestHandshake(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name       string
		method     string
		query      string
		wantStatus int
		wantBody   string
	}{
		{"valid", http.MethodGet, "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + testVerifyToken, 200, "1158201444"},
		{"non-numeric challenge", http.MethodGet, "hub.mode=subscribe&hub.challenge=CHALLENGE_abc-123&hub.verify_token=" + testVerifyToken, 200, "CHALLENGE_abc-123"},
		{"head", http.MethodHead, "hub.mode=subscribe&hub.challenge=77&hub.verify_token=" + testVerifyToken, 200, ""},
		{"wrong token", http.MethodGet, "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong_token", 403, ""},
		{"token prefix", http.MethodGet, "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=fake_verify", 403, ""},
		{"missing mode", http.MethodGet, "hub.challenge=1158201444&hub.verify_token=" + testVerifyToken, 403, ""},
		{"wrong mode", http.MethodGet, "hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=" + testVerifyToken, 403, ""},
		{"missing challenge", http.MethodGet, "hub.mode=subscribe&hub.verify_token=" + testVerifyToken, 403, ""},
		{"challenge too long", http.MethodGet, "hub.mode=subscribe&hub.challenge=" + strings.Repeat("9", 300) + "&hub.verify_token=" + testVerifyToken, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/webhooks/whatsapp?"+tt.query, nil)
			req.Header.Set("User-Agent", "facebookexternalua")
			rec := h.do(req)
			if tt.wantStatus != 200 {
				p := wantProblem(t, rec, tt.wantStatus, schemas.ReasonHandshakeFailed)
				if strings.Contains(rec.Body.String(), "1158201444") {
					t.Errorf("rejected handshake echoes the challenge: %s", rec.Body.String())
				}
				_ = p
				return
			}
			if rec.Code != 200 {
				t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tt.method == http.MethodGet && rec.Body.String() != tt.wantBody {
				t.Errorf("body = %q, want exactly %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
	if recs := h.records(schemas.TopicRaw); len(recs) != 0 {
		t.Errorf("handshakes produced %d raw records", len(recs))
	}
}

func TestHandshakeAnyApp(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		second := c.WhatsAppApps[0]
		second.Name = "second"
		second.VerifyToken = "second_token"
		c.WhatsAppApps = append(c.WhatsAppApps, second)
	})
	for _, token := range []string{testVerifyToken, "second_token"} {
		rec := h.do(httptest.NewRequest(http.MethodGet, "/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=5&hub.verify_token="+token, nil))
		if rec.Code != 200 || rec.Body.String() != "5" {
			t.Errorf("token %s: status %d body %q", token, rec.Code, rec.Body.String())
		}
	}
}

func TestWebhookSignature(t *testing.T) {
	body := waBody(`Hello from the signature format test \u00e9 https:\/\/example.com`)
	good := sign(testAppSecret, body)
	tests := []struct {
		name    string
		headers map[string]string
		body    []byte
		status  int
		code    string
	}{
		{"valid", map[string]string{"X-Hub-Signature-256": good}, body, 200, ""},
		{"lower-case header name", map[string]string{"x-hub-signature-256": good}, body, 200, ""},
		{"upper-case hex digest", map[string]string{"X-Hub-Signature-256": "sha256=" + strings.ToUpper(good[7:])}, body, 200, ""},
		{"missing", nil, body, 401, schemas.ReasonMissingSignature},
		{"empty", map[string]string{"X-Hub-Signature-256": ""}, body, 401, schemas.ReasonInvalidSignature},
		{"legacy sha1 only", map[string]string{"X-Hub-Signature": "sha1=5c67268513b4bb716374eb2b49301b990b60b74e"}, body, 401, schemas.ReasonMissingSignature},
		{"prefix-less", map[string]string{"X-Hub-Signature-256": good[len("sha256="):]}, body, 401, schemas.ReasonInvalidSignature},
		{"upper-case prefix", map[string]string{"X-Hub-Signature-256": "SHA256=" + good[7:]}, body, 401, schemas.ReasonInvalidSignature},
		{"truncated", map[string]string{"X-Hub-Signature-256": good[:len("sha256=")+32]}, body, 401, schemas.ReasonInvalidSignature},
		{"extended", map[string]string{"X-Hub-Signature-256": good + "00"}, body, 401, schemas.ReasonInvalidSignature},
		{"not hex", map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("zz", 32)}, body, 401, schemas.ReasonInvalidSignature},
		{"tampered body", map[string]string{"X-Hub-Signature-256": good}, waBody("Hello from the signature format test!!"), 401, schemas.ReasonInvalidSignature},
		{"wrong key: verify token", map[string]string{"X-Hub-Signature-256": sign(testVerifyToken, body)}, body, 401, schemas.ReasonInvalidSignature},
		{"wrong key: empty", map[string]string{"X-Hub-Signature-256": sign("", body)}, body, 401, schemas.ReasonInvalidSignature},
		{"re-serialised body", map[string]string{"X-Hub-Signature-256": good}, bytes.ReplaceAll(body, []byte(`\/`), []byte("/")), 401, schemas.ReasonInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			rec := h.do(webhookRequest(tt.body, tt.headers))
			raw := h.records(schemas.TopicRaw)
			if tt.status != 200 {
				wantProblem(t, rec, tt.status, tt.code)
				if len(raw) != 0 {
					t.Errorf("rejected webhook produced %d raw records", len(raw))
				}
				return
			}
			if rec.Code != 200 {
				t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body.String())
			}
			if len(raw) != 1 {
				t.Fatalf("valid webhook produced %d raw records, want 1", len(raw))
			}
		})
	}
}

func TestWebhookRepeatedSignatureHeader(t *testing.T) {
	h := newHarness(t, nil)
	body := waBody("twice")
	req := webhookRequest(body, nil)
	req.Header.Add("X-Hub-Signature-256", sign(testAppSecret, body))
	req.Header.Add("X-Hub-Signature-256", sign("other", body))
	wantProblem(t, h.do(req), 401, schemas.ReasonInvalidSignature)
}

func TestWebhookRecord(t *testing.T) {
	h := newHarness(t, nil)
	// Escaped '/' and '@' as Meta sends them: the record must keep them.
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"100000000000001","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"200000000000002"},"messages":[{"from":"15550002222","id":"wamid.RkFLRS1DMDEtMQ==","timestamp":"1760000000","text":{"body":"mail me at test\u0040example.com or see https:\/\/example.com\/x \ud83d\ude00"},"type":"text"}]},"field":"messages"}]}]}`)
	sig := sign(testAppSecret, body)
	req := webhookRequest(body, map[string]string{"X-Hub-Signature-256": sig})
	req.RemoteAddr = "127.0.0.9:4321"
	rec := h.do(req)
	if rec.Code != 200 {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body.String())
	}

	raw := h.records(schemas.TopicRaw)
	if len(raw) != 1 {
		t.Fatalf("%d raw records, want exactly 1", len(raw))
	}
	r := raw[0]
	if !bytes.Equal(r.Value, body) {
		t.Errorf("value differs from the body:\n got %s\nwant %s", r.Value, body)
	}
	if string(r.Key) != "200000000000002" {
		t.Errorf("key = %q, want the phone number id", r.Key)
	}
	requestID := rec.Header().Get("X-Request-Id")
	wantHeaders := map[string]string{
		schemas.HeaderKind:       schemas.KindWhatsApp,
		schemas.HeaderRequestID:  requestID,
		schemas.HeaderReceivedAt: h.clock().UTC().Format(time.RFC3339Nano),
		schemas.HeaderSource:     "127.0.0.9",
		schemas.HeaderSignature:  sig,
		schemas.HeaderApp:        "main",
	}
	for k, want := range wantHeaders {
		if got := header(t, r, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if len(r.Headers) != len(wantHeaders) {
		t.Errorf("record has %d headers, want %d", len(r.Headers), len(wantHeaders))
	}

	evs := h.auditEvents(1)
	ev := evs[0]
	if ev.Stage != schemas.StageIngest || ev.Action != schemas.ActionHTTPRequest || ev.Route != routeWebhook {
		t.Errorf("audit stage/action/route = %s/%s/%s", ev.Stage, ev.Action, ev.Route)
	}
	if ev.Outcome != schemas.OutcomeAccepted || ev.Reason != schemas.ReasonOK || ev.Status != 200 {
		t.Errorf("audit outcome/reason/status = %s/%s/%d", ev.Outcome, ev.Reason, ev.Status)
	}
	if ev.Account != "200000000000002" || ev.Source != "127.0.0.9" || ev.RequestID != requestID {
		t.Errorf("audit account/source/request = %s/%s/%s", ev.Account, ev.Source, ev.RequestID)
	}
	if ev.Detail != "app=main secret=s1" {
		t.Errorf("audit detail = %q", ev.Detail)
	}
	if ev.BytesIn != len(body) || ev.ID == "" || ev.ID == ev.RequestID {
		t.Errorf("audit bytes_in = %d, id = %q", ev.BytesIn, ev.ID)
	}
}

func TestWebhookUnparsableBodyKeyedByApp(t *testing.T) {
	h := newHarness(t, nil)
	for _, body := range []string{`not json at all`, `{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"12ab"}}}]}]}`, strings.Repeat("[", 1000)} {
		rec := h.do(webhookRequest([]byte(body), map[string]string{"X-Hub-Signature-256": sign(testAppSecret, []byte(body))}))
		if rec.Code != 200 {
			t.Fatalf("signed body %.20q: status %d, want 200", body, rec.Code)
		}
	}
	raw := h.records(schemas.TopicRaw)
	if len(raw) != 3 {
		t.Fatalf("%d raw records, want 3", len(raw))
	}
	for _, r := range raw {
		if string(r.Key) != "main" {
			t.Errorf("key of %.20q = %q, want the app name", r.Value, r.Key)
		}
	}
}

// TestWebhookKeyMatchesFieldNameExactly sends a body whose metadata has
// the account under three spellings of the field name. Ingest must pick the
// one the processors read, so that the audit row, the rate limit and the
// record key name the account the message is stored under.
func TestWebhookKeyMatchesFieldNameExactly(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"PHONE_NUMBER_ID":"300000000000077","phone_number_id":"300000000000002","Phone_Number_Id":"300000000000088"}}}]}]}`
	rec := h.do(webhookRequest([]byte(body), map[string]string{"X-Hub-Signature-256": sign(testAppSecret, []byte(body))}))
	if rec.Code != 200 {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	raw := h.records(schemas.TopicRaw)
	if len(raw) != 1 {
		t.Fatalf("%d raw records, want 1", len(raw))
	}
	if string(raw[0].Key) != "300000000000002" {
		t.Errorf("record key = %q, want 300000000000002", raw[0].Key)
	}
	if ev := h.auditEvents(1)[0]; ev.Account != "300000000000002" {
		t.Errorf("audit account = %q, want 300000000000002", ev.Account)
	}
}

func TestPhoneNumberIDAsNumber(t *testing.T) {
	for body, want := range map[string]string{
		`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":300000000000003}}}]}]}`:   "300000000000003",
		`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"300000000000003"}}}]}]}`: "300000000000003",
		`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":3e14}}}]}]}`:              "",
		`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":null}}}]}]}`:              "",
		`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":{"a":1}}}}]}]}`:           "",
	} {
		if got := phoneNumberID([]byte(body)); got != want {
			t.Errorf("phoneNumberID(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestPhoneNumberIDsListsEveryAccount(t *testing.T) {
	var changes []string
	for i := range 40 {
		changes = append(changes, fmt.Sprintf(`{"value":{"metadata":{"phone_number_id":"%d"}}}`, 100+i%20))
	}
	body := `{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"12ab"}}}]},{"changes":[` + strings.Join(changes, ",") + `]}]}`
	first, all := phoneNumberIDs([]byte(body))
	if first != "" {
		t.Errorf("first = %q, want none because the first id is not a number", first)
	}
	if len(all) != 20 || all[0] != "100" || all[19] != "119" {
		t.Errorf("all = %v, want the 20 distinct ids 100 to 119, sorted", all)
	}
}

// TestWebhookBlockedSecondAccount sends a signed webhook whose second
// entry is for a blocked account. The processors would store that entry,
// so ingest must reject the whole webhook.
func TestWebhookBlockedSecondAccount(t *testing.T) {
	h := newHarness(t, nil)
	k, v := controlValue(t, schemas.ControlRecord{Kind: schemas.ControlBlockAccount, Value: "300000000000003", Active: true})
	if err := h.srv.blocks.apply(k, v, time.Now()); err != nil {
		t.Fatal(err)
	}
	body := `{"object":"whatsapp_business_account","entry":[` +
		`{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"200000000000002"}}}]},` +
		`{"id":"2","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"300000000000003"}}}]}]}`
	rec := h.do(webhookRequest([]byte(body), map[string]string{"X-Hub-Signature-256": sign(testAppSecret, []byte(body))}))
	wantProblem(t, rec, http.StatusForbidden, schemas.ReasonBlocked)
	if ev := h.auditEvents(1)[0]; ev.Account != "300000000000003" {
		t.Errorf("audit account = %q, want the blocked 300000000000003", ev.Account)
	}

	// Without phone_number_id the processors store the change under the
	// entry id, so the block must apply to that too.
	byEntry := `{"object":"whatsapp_business_account","entry":[` +
		`{"id":"300000000000003","changes":[{"field":"messages","value":{"metadata":{}}}]}]}`
	rec = h.do(webhookRequest([]byte(byEntry), map[string]string{"X-Hub-Signature-256": sign(testAppSecret, []byte(byEntry))}))
	wantProblem(t, rec, http.StatusForbidden, schemas.ReasonBlocked)
}

// TestWebhookRateLimitsKeyAccountOnly sends bodies listing many accounts.
// Only the record key's account spends a token, so such bodies cannot
// push other accounts' buckets out of the limiter.
func TestWebhookRateLimitsKeyAccountOnly(t *testing.T) {
	h := newHarness(t, nil)
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`{"id":"1","changes":[{"value":{"metadata":{"phone_number_id":"%d"}}}]}`, 400000000000000+i))
	}
	body := `{"object":"whatsapp_business_account","entry":[` + strings.Join(entries, ",") + `]}`
	rec := h.do(webhookRequest([]byte(body), map[string]string{"X-Hub-Signature-256": sign(testAppSecret, []byte(body))}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	if n := h.srv.limits.account.size.Load(); n != 1 {
		t.Errorf("the account limiter holds %d buckets after one webhook, want 1", n)
	}
}

func TestWebhookBodyLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WebhookMaxBodyBytes = 1024 })
	big := append(waBody("x"), bytes.Repeat([]byte(" "), 2000)...)
	sig := sign(testAppSecret, big)

	t.Run("content-length", func(t *testing.T) {
		wantProblem(t, h.do(webhookRequest(big, map[string]string{"X-Hub-Signature-256": sig})), 413, schemas.ReasonPayloadTooLarge)
	})
	t.Run("chunked", func(t *testing.T) {
		req := webhookRequest(big, map[string]string{"X-Hub-Signature-256": sig})
		req.ContentLength = -1
		wantProblem(t, h.do(req), 413, schemas.ReasonPayloadTooLarge)
	})
	t.Run("at the limit", func(t *testing.T) {
		body := append(waBody("x"), bytes.Repeat([]byte(" "), 1024-len(waBody("x")))...)
		rec := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)}))
		if rec.Code != 200 {
			t.Fatalf("body of exactly the limit: status %d", rec.Code)
		}
	})
	t.Run("content encoding", func(t *testing.T) {
		body := waBody("x")
		req := webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body), "Content-Encoding": "gzip"})
		wantProblem(t, h.do(req), 415, schemas.ReasonUnsupportedMedia)
	})
	if n := len(h.records(schemas.TopicRaw)); n != 1 {
		t.Errorf("%d raw records, want 1 (the body at the limit)", n)
	}
}

func TestWebhookSecretRotation(t *testing.T) {
	now := time.Now()
	h := newHarness(t, func(c *Config) {
		c.WhatsAppApps[0].Secrets = []AppSecret{
			{ID: "old", Secret: "old-secret", NotAfter: now.Add(-time.Hour)},
			{ID: "current", Secret: "current-secret", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)},
			{ID: "next", Secret: "next-secret", NotBefore: now.Add(time.Hour)},
		}
	})

	body := waBody("rotation")
	tests := []struct {
		secret string
		status int
	}{
		{"old-secret", 401},
		{"current-secret", 200},
		{"next-secret", 401},
	}
	for _, tt := range tests {
		rec := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(tt.secret, body)}))
		if rec.Code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.secret, rec.Code, tt.status)
		}
	}

	evs := h.auditEvents(3)
	found := false
	for _, ev := range evs {
		if ev.Detail == "app=main secret=current" {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit event names the secret that matched: %+v", evs)
	}
}

func TestWebhookKafkaDown(t *testing.T) {
	keys := newTestKeys(t)
	cfg := testConfig(keys)
	cfg.ProduceTimeout = 300 * time.Millisecond
	cfg.RetryAfter = 1500 * time.Millisecond
	kcfg := testKafkaConfig()
	// A port that was just free: nothing listens there.
	kcfg.Brokers = []string{closedPort(t)}
	h := newHarnessOn(t, cfg, kcfg, keys)

	body := waBody("Sent while the pipeline was down")
	start := time.Now()
	rec := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)}))
	elapsed := time.Since(start)
	wantProblem(t, rec, 503, schemas.ReasonUnavailable)
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (1.5s rounded up)", got)
	}
	if elapsed > 2*time.Second {
		t.Errorf("the response took %s with produce_timeout 300ms", elapsed)
	}
	if got := testutilCounter(t, h.registry, "syncguard_ingest_produce_errors_total"); got != 1 {
		t.Errorf("produce errors = %v, want 1", got)
	}
}

func TestUnknownRoutesAudited(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		method, path string
		status       int
		code         string
		allow        string
	}{
		{http.MethodGet, "/nope", 404, schemas.ReasonNotFound, ""},
		{http.MethodGet, "/webhooks/whatsapp/", 404, schemas.ReasonNotFound, ""},
		{http.MethodPut, "/webhooks/whatsapp", 405, schemas.ReasonMethodNotAllowed, "GET, HEAD, POST"},
		{http.MethodGet, "/v1/sync/events", 405, schemas.ReasonMethodNotAllowed, "POST"},
	}
	for _, tt := range tests {
		rec := h.do(httptest.NewRequest(tt.method, tt.path, nil))
		wantProblem(t, rec, tt.status, tt.code)
		if got := rec.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	evs := h.auditEvents(len(tests))
	if len(evs) != len(tests) {
		t.Fatalf("%d audit events, want %d", len(evs), len(tests))
	}
	for _, ev := range evs {
		if ev.Outcome != schemas.OutcomeRejected {
			t.Errorf("audit outcome %q for %s", ev.Outcome, ev.Route)
		}
	}
	// Health checks are not audited.
	for _, path := range []string{"/healthz", "/readyz"} {
		h.do(httptest.NewRequest(http.MethodGet, path, nil))
	}
	if evs := h.auditEvents(len(tests)); len(evs) != len(tests) {
		t.Errorf("health checks added audit events: %d", len(evs))
	}
}

func TestRequestMetrics(t *testing.T) {
	h := newHarness(t, nil)
	body := waBody("metrics")
	h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)}))
	h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign("wrong", body)}))
	h.do(webhookRequest(body, nil))

	tests := []struct {
		outcome, reason string
	}{
		{schemas.OutcomeAccepted, schemas.ReasonOK},
		{schemas.OutcomeRejected, schemas.ReasonInvalidSignature},
		{schemas.OutcomeRejected, schemas.ReasonMissingSignature},
	}
	for _, tt := range tests {
		labels := map[string]string{"route": routeWebhook, "outcome": tt.outcome, "reason": tt.reason}
		if got := counterWith(t, h.registry, "syncguard_ingest_requests_total", labels); got != 1 {
			t.Errorf("requests_total%v = %v, want 1", labels, got)
		}
	}

	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, f := range families {
		if f.GetName() == "syncguard_ingest_request_duration_seconds" {
			for _, m := range f.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != 3 {
		t.Errorf("duration histogram holds %d observations, want 3", observed)
	}
}

func TestBodyReadDetailHasNoErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("http2: stream 7: %w", os.ErrDeadlineExceeded), "reading body: timed out"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "reading body: timed out"},
		{fmt.Errorf("stream 9: %w", io.ErrUnexpectedEOF), "reading body: the client closed the body early"},
		{context.Canceled, "reading body: the client went away"},
		{errors.New("http2: stream 11 reset by 10.1.2.3"), "reading body: failed (*errors.errorString)"},
	} {
		if got := bodyReadDetail(tc.err); got != tc.want {
			t.Errorf("bodyReadDetail(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
