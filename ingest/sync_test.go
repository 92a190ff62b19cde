package ingest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSyncValidBatches(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		encoding    string
		body        func(h *harness, a, b string) []byte
	}{
		{"JSON array", "application/json", "", func(h *harness, a, b string) []byte {
			return []byte("[" + a + ", \n" + b + "]")
		}},
		{"JSON object", "application/json; charset=utf-8", "", func(h *harness, a, b string) []byte {
			return []byte(`{"events":[` + a + "," + b + "]}")
		}},
		{"NDJSON with CRLF, blank lines and no final newline", "application/x-ndjson", "", func(h *harness, a, b string) []byte {
			return []byte("\n" + a + "\r\n  \r\n" + b)
		}},
		{"gzip JSON", "application/json", "gzip", func(h *harness, a, b string) []byte {
			return []byte("[" + a + "," + b + "]")
		}},
		{"gzip NDJSON", "application/x-ndjson", "gzip", func(h *harness, a, b string) []byte {
			return []byte(a + "\n" + b + "\n")
		}},
		{"identity coding", "application/json", "identity", func(h *harness, a, b string) []byte {
			return []byte("[" + a + "," + b + "]")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			a, b := h.event("evt-a"), h.event("evt-b")
			body := tt.body(h, a, b)
			if tt.encoding == "gzip" {
				body = gzipped(t, body)
			}
			tok := h.token(h.claims())
			req := h.syncRequest(tt.contentType, body, tok)
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			rec := h.do(req)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body.String())
			}
			ans := batchResponseOf(t, rec)
			if ans.Accepted != 2 || ans.Rejected != 0 || len(ans.Results) != 2 {
				t.Fatalf("response = %+v", ans)
			}
			if ans.RequestID != rec.Header().Get("X-Request-Id") {
				t.Errorf("request_id = %q, header %q", ans.RequestID, rec.Header().Get("X-Request-Id"))
			}
			for i, id := range []string{"evt-a", "evt-b"} {
				if r := ans.Results[i]; r.Index != i || r.EventID != id || r.Status != eventAccepted {
					t.Errorf("result %d = %+v", i, r)
				}
			}

			raw := h.records(schemas.TopicRaw)
			if len(raw) != 2 {
				t.Fatalf("%d raw records, want 2", len(raw))
			}
			values := map[string]bool{}
			for _, r := range raw {
				values[string(r.Value)] = true
				checkSyncRecord(t, h, r.Value, r, ans.RequestID)
			}
			if !values[a] || !values[b] {
				t.Errorf("record values are not the events as sent:\n%q\n%q", raw[0].Value, raw[1].Value)
			}
			if containsAny(raw, tok) || containsAny(raw, tok[strings.LastIndexByte(tok, '.')+1:]) {
				t.Error("the bearer token appears in a raw record")
			}
			audit := h.waitRecords(schemas.TopicAudit, 1)
			if containsAny(audit, tok[strings.LastIndexByte(tok, '.')+1:]) {
				t.Error("the bearer token appears in an audit record")
			}
		})
	}
}

// checkSyncRecord checks the key and headers of a sync raw record.
func checkSyncRecord(t *testing.T, h *harness, value []byte, rec *kgo.Record, requestID string) {
	t.Helper()
	if string(rec.Key) != testDevice {
		t.Errorf("key = %q, want the device id", rec.Key)
	}
	receivedAt := h.clock().UTC().Format(time.RFC3339Nano)
	want := map[string]string{
		schemas.HeaderKind:       schemas.KindSync,
		schemas.HeaderRequestID:  requestID,
		schemas.HeaderReceivedAt: receivedAt,
		schemas.HeaderSource:     "192.0.2.1",
		schemas.HeaderDevice:     testDevice,
		schemas.HeaderSubject:    "user-1",
	}
	for k, v := range want {
		if got := header(t, rec, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	mac := header(t, rec, schemas.HeaderMAC)
	if !schemas.CheckEnvelopeMAC(h.envelope, mac, requestID, receivedAt, testDevice, "user-1", value) {
		t.Errorf("envelope MAC %q does not verify", mac)
	}
}

func TestSyncRejectedRequests(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SyncMaxEvents = 5
		c.SyncMaxLineBytes = 4 << 10
		c.SyncMaxBodyBytes = 64 << 10
	})
	ev := h.event("evt-1")
	ndjson := func(lines ...string) []byte { return []byte(strings.Join(lines, "\n")) }
	bomb := gzipped(t, make([]byte, 8<<20))
	tests := []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		chunked     bool
		status      int
		code        string
	}{
		{"text/plain", "text/plain", "", []byte("[" + ev + "]"), false, 415, schemas.ReasonUnsupportedMedia},
		{"no content type", "", "", []byte("[" + ev + "]"), false, 415, schemas.ReasonUnsupportedMedia},
		{"br encoding", "application/json", "br", []byte("[" + ev + "]"), false, 415, schemas.ReasonUnsupportedMedia},
		{"gzip twice", "application/json", "gzip, gzip", gzipped(t, gzipped(t, []byte("["+ev+"]"))), false, 415, schemas.ReasonUnsupportedMedia},
		{"says gzip but plain", "application/json", "gzip", []byte("[" + ev + "]"), false, 400, schemas.ReasonInvalidRequest},
		{"truncated gzip", "application/json", "gzip", gzipped(t, []byte("["+ev+"]"))[:20], false, 400, schemas.ReasonInvalidRequest},
		{"gzip bomb", "application/json", "gzip", bomb, false, 413, schemas.ReasonPayloadTooLarge},
		{"body over limit", "application/json", "", append([]byte("["+ev), bytes.Repeat([]byte(" "), 70<<10)...), false, 413, schemas.ReasonPayloadTooLarge},
		{"body over limit chunked", "application/json", "", append([]byte("["+ev), bytes.Repeat([]byte(" "), 70<<10)...), true, 413, schemas.ReasonPayloadTooLarge},
		{"too many events JSON", "application/json", "", []byte("[" + strings.Repeat(ev+",", 5) + ev + "]"), false, 413, schemas.ReasonPayloadTooLarge},
		{"too many events NDJSON", "application/x-ndjson", "", ndjson(ev, ev, ev, ev, ev, ev), false, 413, schemas.ReasonPayloadTooLarge},
		{"NDJSON line too long", "application/x-ndjson", "", ndjson(ev, `{"pad":"`+strings.Repeat("x", 5<<10)+`"}`, ev), false, 413, schemas.ReasonPayloadTooLarge},
		{"NDJSON invalid line", "application/x-ndjson", "", ndjson(ev, "{not json", ev), false, 400, schemas.ReasonInvalidJSON},
		{"malformed JSON", "application/json", "", []byte("[" + ev), false, 400, schemas.ReasonInvalidJSON},
		{"trailing garbage", "application/json", "", []byte("[" + ev + "] x"), false, 400, schemas.ReasonInvalidJSON},
		{"JSON scalar", "application/json", "", []byte(`"events"`), false, 400, schemas.ReasonInvalidJSON},
		{"object without events", "application/json", "", []byte(`{"evnts":[` + ev + `]}`), false, 400, schemas.ReasonInvalidJSON},
		{"nested too deeply", "application/json", "", []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), false, 400, schemas.ReasonInvalidJSON},
		{"empty array", "application/json", "", []byte(`[]`), false, 400, schemas.ReasonInvalidRequest},
		{"empty NDJSON", "application/x-ndjson", "", []byte("\n\r\n"), false, 400, schemas.ReasonInvalidRequest},
		{"empty body", "application/json", "", nil, false, 400, schemas.ReasonInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := h.syncRequest(tt.contentType, tt.body, h.token(h.claims()))
			if tt.contentType == "" {
				req.Header.Del("Content-Type")
			}
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			if tt.chunked {
				req.ContentLength = -1
			}
			wantProblem(t, h.do(req), tt.status, tt.code)
		})
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("rejected requests produced %d raw records", n)
	}
}

func TestSyncPerEventResults(t *testing.T) {
	h := newHarness(t, nil)
	ts := func(d time.Duration) string { return h.clock().Add(d).Format(time.RFC3339) }
	ciphertext := bytes.Repeat([]byte{0xab}, 40)
	sum := sha256.Sum256(ciphertext)
	enc := func(alg string, ivLen int, checksum string) string {
		return fmt.Sprintf(`{"event_id":"enc-%s-%d","type":"message.created","occurred_at":%q,"device_id":%q,"conversation_id":"c","encrypted":{"alg":%q,"iv":%q,"ciphertext":%q,"key_id":"k1"%s}}`,
			strings.ToLower(alg[:3]), ivLen, ts(0), testDevice, alg,
			base64.StdEncoding.EncodeToString(make([]byte, ivLen)), base64.StdEncoding.EncodeToString(ciphertext), checksum)
	}
	base := func(id, extra string) string {
		return fmt.Sprintf(`{"event_id":%q,"type":"message.created","occurred_at":%q,"device_id":%q,"conversation_id":"c"%s}`, id, ts(0), testDevice, extra)
	}
	events := []struct {
		json string
		code string // "" means accepted
	}{
		{h.event("ok-1"), ""},
		{enc("A256GCM", 12, `,"checksum":"sha256:`+hex.EncodeToString(sum[:])+`"`), ""},
		{enc("XCHACHA20-POLY1305", 24, ""), ""},
		{enc("A256GCM", 24, ""), schemas.ReasonInvalidEvent},
		{enc("A128GCM", 12, ""), schemas.ReasonInvalidEvent},
		{enc("XCHACHA20-POLY1305", 24, `,"checksum":"sha256:`+strings.Repeat("00", 32)+`"`), schemas.ReasonInvalidEvent},
		{h.eventAt("old", h.clock().Add(-8*24*time.Hour)), schemas.ReasonEventOutOfWindow},
		{h.eventAt("future", h.clock().Add(10*time.Minute)), schemas.ReasonEventOutOfWindow},
		{h.eventAt("edge-old", h.clock().Add(-7*24*time.Hour)), ""},
		{h.eventAt("edge-future", h.clock().Add(5*time.Minute)), ""},
		{strings.Replace(h.event("other-device"), testDevice, "dev-43", 1), schemas.ReasonDeviceMismatch},
		{base("both", `,"content":{},"encrypted":{}`), schemas.ReasonInvalidEvent},
		{base("neither", ``), schemas.ReasonInvalidEvent},
		{base("content-array", `,"content":[1]`), schemas.ReasonInvalidEvent},
		{base("content-null", `,"content":null`), schemas.ReasonInvalidEvent},
		{base("unknown-field", `,"content":{},"note":"smuggled"`), schemas.ReasonInvalidEvent},
		{base("case-variant", `,"content":{},"Device_ID":"dev-43"`), schemas.ReasonInvalidEvent},
		{base("dup-key", `,"content":{},"device_id":"dev-43"`), schemas.ReasonInvalidEvent},
		{base("dup-escaped-key", `,"content":{},"device\u005fid":"dev-42"`), schemas.ReasonInvalidEvent},
		{`{"event_id":"bad id!","type":"t","occurred_at":"` + ts(0) + `","device_id":"dev-42","conversation_id":"c","content":{}}`, schemas.ReasonInvalidEvent},
		{`{"event_id":"bad-time","type":"t","occurred_at":"yesterday","device_id":"dev-42","conversation_id":"c","content":{}}`, schemas.ReasonInvalidEvent},
		{`{"event_id":"bad-offset","type":"t","occurred_at":"` + h.clock().UTC().Format("2006-01-02T15:04:05") + "+24:00" + `","device_id":"dev-42","conversation_id":"c","content":{}}`, schemas.ReasonInvalidEvent},
		{`{"event_id":7}`, schemas.ReasonInvalidEvent},
		{`[1,2]`, schemas.ReasonInvalidEvent},
		{h.event("ok-1"), schemas.ReasonDuplicate},
	}

	var parts []string
	for _, e := range events {
		parts = append(parts, e.json)
	}
	rec := h.do(h.syncRequest("application/json", []byte("["+strings.Join(parts, ",")+"]"), h.token(h.claims())))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body.String())
	}

	ans := batchResponseOf(t, rec)
	accepted := 0
	for i, e := range events {
		r := ans.Results[i]
		if r.Index != i {
			t.Errorf("result %d has index %d", i, r.Index)
		}
		switch {
		case e.code == "" && r.Status != eventAccepted:
			t.Errorf("event %d %.60s: %+v %+v, want accepted", i, e.json, r, r.Error)
		case e.code != "" && (r.Status != eventRejected || r.Error == nil || r.Error.Code != e.code):
			t.Errorf("event %d %.60s: %+v %+v, want rejected with %s", i, e.json, r, r.Error, e.code)
		}
		if e.code == "" {
			accepted++
		}
	}
	if ans.Accepted != accepted || ans.Rejected != len(events)-accepted {
		t.Errorf("accepted %d rejected %d, want %d and %d", ans.Accepted, ans.Rejected, accepted, len(events)-accepted)
	}
	if n := len(h.records(schemas.TopicRaw)); n != accepted {
		t.Errorf("%d raw records, want %d", n, accepted)
	}
}

func TestSyncAllInvalid(t *testing.T) {
	h := newHarness(t, nil)
	old := h.eventAt("old", h.clock().Add(-8*24*time.Hour))
	rec := h.do(h.syncRequest("application/x-ndjson", []byte(old+"\n"+old), h.token(h.claims())))
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d, want 422; body %s", rec.Code, rec.Body.String())
	}
	ans := batchResponseOf(t, rec)
	if ans.Accepted != 0 || ans.Rejected != 2 || ans.Results[0].Error.Code != schemas.ReasonEventOutOfWindow {
		t.Errorf("response = %+v", ans)
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records, want 0", n)
	}
	evs := h.auditEvents(1)
	if evs[0].Reason != schemas.ReasonEventOutOfWindow || evs[0].Outcome != schemas.OutcomeRejected || evs[0].Device != testDevice {
		t.Errorf("audit event = %+v", evs[0])
	}
}

func TestSyncLongLinesWithinLimit(t *testing.T) {
	h := newHarness(t, nil)
	ev := h.event("long")
	long := strings.Replace(ev, `"hello \u00e9"`, `"`+strings.Repeat("x", 60<<10)+`"`, 1)
	if len(long) < 60<<10 {
		t.Fatalf("the long event is %d bytes", len(long))
	}
	rec := h.do(h.syncRequest("application/x-ndjson", []byte(long+"\n"+h.event("short")+"\n"), h.token(h.claims())))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("60 KiB line: status %d; body %.300s", rec.Code, rec.Body.String())
	}
	if ans := batchResponseOf(t, rec); ans.Accepted != 2 {
		t.Errorf("accepted %d, want 2", ans.Accepted)
	}
}

func TestSyncKafkaDown(t *testing.T) {
	keys := newTestKeys(t)
	cfg := testConfig(keys)
	cfg.ProduceTimeout = 300 * time.Millisecond
	kcfg := testKafkaConfig()
	kcfg.Brokers = []string{closedPort(t)}
	h := newHarnessOn(t, cfg, kcfg, keys)

	body := "[" + h.event("a") + `,{"event_id":"bad"}]`
	rec := h.do(h.syncRequest("application/json", []byte(body), h.token(h.claims())))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("Retry-After") != "5" {
		t.Errorf("Retry-After = %q, want 5", rec.Header().Get("Retry-After"))
	}
	ans := batchResponseOf(t, rec)
	if ans.Accepted != 0 || ans.Rejected != 2 {
		t.Errorf("response = %+v", ans)
	}
	if e := ans.Results[0].Error; e == nil || e.Code != schemas.ReasonUnavailable {
		t.Errorf("result 0 = %+v, want unavailable", ans.Results[0])
	}
	if e := ans.Results[1].Error; e == nil || e.Code != schemas.ReasonInvalidEvent {
		t.Errorf("result 1 = %+v, want invalid_event", ans.Results[1])
	}
}

func TestRFC3339Syntax(t *testing.T) {
	for s, want := range map[string]bool{
		"2026-12-04T21:33:44Z":           true,
		"2026-12-04T21:33:44.5Z":         true,
		"2026-12-04T21:33:44.123456789Z": true,
		"2026-12-04T21:33:44+05:30":      true,
		"2026-12-04T21:33:44.25-23:59":   true,
		"2026-12-04T21:33:44,5Z":         false,
		"2026-12-04T21:33:44+24:00":      false,
		"2026-12-04T21:33:44+05:60":      false,
		"2026-12-04T21:33:44.Z":          false,
		"2026-12-04t21:33:44Z":           false,
		"2026-12-04 21:33:44Z":           false,
		"2026-12-04T21:33:44":            false,
		"2026-12-04T21:33:44+0530":       false,
		"2026-12-04T21:33:44Zjunk":       false,
		"20261204T213344Z":               false,
		"":                               false,
	} {
		if got := rfc3339Syntax(s); got != want {
			t.Errorf("rfc3339Syntax(%q) = %v, want %v", s, got, want)
		}
	}
}
