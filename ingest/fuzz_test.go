package ingest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

func FuzzVerifySignature(f *testing.F) {
	keys, err := newWebhookKeys([]WhatsAppApp{{
		Name:        "main",
		VerifyToken: testVerifyToken,
		Secrets:     []AppSecret{{ID: "s1", Secret: testAppSecret}},
	}})
	if err != nil {
		f.Fatal(err)
	}

	body := waBody("fuzz")
	good := sign(testAppSecret, body)
	f.Add(good, body)
	f.Add(strings.ToUpper(good), body)
	f.Add(good[len("sha256="):], body)
	f.Add(good[:40], body)
	f.Add(good+"0", body)
	f.Add("", body)
	f.Add("sha256=", []byte{})
	f.Add("sha1=5c67268513b4bb716374eb2b49301b990b60b74e", body)
	f.Add(sign(testAppSecret, nil), []byte(nil))

	now := time.Now()
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		match, err := keys.verifySignature([]string{header}, body, now)
		want := sign(testAppSecret, body)
		valid := strings.HasPrefix(header, "sha256=") && strings.EqualFold(header, want)
		if (err == nil) != valid {
			t.Fatalf("verifySignature(%q) err = %v, but the signature is valid: %v", header, err, valid)
		}
		if err == nil && (match.app != "main" || match.secretID != "s1") {
			t.Fatalf("match = %+v", match)
		}
	})
}

func FuzzParseSyncBatch(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ev := `{"event_id":"e1","type":"message.created","occurred_at":"2025-06-01T11:59:00Z","device_id":"dev-42","conversation_id":"c","content":{"t":"x"}}`
	enc := `{"event_id":"e2","type":"t","occurred_at":"2025-06-01T11:59:00Z","device_id":"dev-42","conversation_id":"c","encrypted":{"alg":"A256GCM","iv":"AAAAAAAAAAAAAAAA","ciphertext":"q6urq6urq6urq6urq6urqw==","key_id":"k","checksum":"sha256:00"}}`
	seeds := []string{
		"[" + ev + "]",
		`{"events":[` + ev + "," + enc + "]}",
		ev + "\n" + enc + "\r\n\n",
		"[" + ev + ",1,null,\"x\",[]]",
		`[{"event_id":"a","event_id":"b"}]`,
		`[{"device\u005fid":"x","device_id":"y"}]`,
		strings.Repeat("[", 100),
		`["\"[[[[`,
		"{\"events\":null}",
		"\n\n\n",
		"",
	}
	for _, s := range seeds {
		f.Add(uint8(mediaJSON), []byte(s))
		f.Add(uint8(mediaNDJSON), []byte(s))
	}
	rules := eventRules{device: "dev-42", now: now, maxAge: 7 * 24 * time.Hour, skew: 5 * time.Minute}
	f.Fuzz(func(t *testing.T, media uint8, body []byte) {
		events, err := parseBatch(int(media%2), body, batchLimits{maxEvents: 50, maxLineBytes: 1 << 10})
		if err != nil {
			return
		}
		if len(events) == 0 || len(events) > 50 {
			t.Fatalf("%d events without an error", len(events))
		}
		for _, e := range events {
			if !json.Valid(e) {
				t.Fatalf("event %q is not valid JSON", e)
			}
			if !bytes.Contains(body, e) {
				t.Fatalf("event %q is not part of the body", e)
			}
			id, rej := rules.validateEvent(e)
			if rej == nil && !validID(id, maxIDLen) {
				t.Fatalf("accepted event %q has invalid id %q", e, id)
			}
		}
	})
}
