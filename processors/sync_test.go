package processors

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSyncEvent(t *testing.T) {
	ev, err := ParseSyncEvent([]byte(`{"event_id":"0b9f1c1e-7d1a-4a53-9d7e-1f0c2b3a4d5e","type":"note.updated","occurred_at":"2025-10-09T08:53:20.5+02:00","device_id":"dev-42","conversation_id":"conv-1","content":{"title":"Groceries"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.EventID != "0b9f1c1e-7d1a-4a53-9d7e-1f0c2b3a4d5e" || ev.Type != "note.updated" {
		t.Errorf("event = %+v", ev)
	}
	if ev.DeviceID != "dev-42" || ev.ConversationID != "conv-1" {
		t.Errorf("device_id, conversation_id = %q, %q", ev.DeviceID, ev.ConversationID)
	}
	if want := time.Date(2025, 10, 9, 6, 53, 20, 5e8, time.UTC); !ev.OccurredAt.Equal(want) {
		t.Errorf("OccurredAt = %v, want %v", ev.OccurredAt, want)
	}
	if string(ev.Content) != `{"title":"Groceries"}` {
		t.Errorf("Content = %s", ev.Content)
	}
	if ev.Encrypted != nil {
		t.Error("Encrypted set for a plaintext event")
	}
}

func TestParseSyncEventEncrypted(t *testing.T) {
	ev, err := ParseSyncEvent([]byte(`{"event_id":"e1","type":"note.updated","occurred_at":"2025-10-09T08:53:20Z","device_id":"d","encrypted":{"alg":"A256GCM","key_id":"ck1","iv":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA==","checksum":""}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Content != nil {
		t.Errorf("Content = %s, want nil", ev.Content)
	}
	if ev.Encrypted == nil || ev.Encrypted.Alg != "A256GCM" || ev.Encrypted.KeyID != "ck1" {
		t.Fatalf("Encrypted = %+v", ev.Encrypted)
	}
}

func TestParseSyncEventRejects(t *testing.T) {
	tests := []struct {
		name    string
		event   string
		notJSON bool
		want    string
	}{
		{"not JSON", `{"event_id":`, true, "not a JSON object"},
		{"array", `[]`, true, "not a JSON object"},
		{"empty", ``, true, "not a JSON object"},
		{"trailing data", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{}}x`, true, "not a JSON object"},
		{"unknown field", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{},"payload":{}}`, false, "unknown field"},
		{"field in other case", `{"Event_ID":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{}}`, false, "unknown field"},
		{"number event id", `{"event_id":5,"type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{}}`, false, "wrong type"},
		{"missing event id", `{"type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{}}`, false, "event_id"},
		{"missing type", `{"event_id":"e","occurred_at":"2025-10-09T08:53:20Z","content":{}}`, false, "type"},
		{"missing time", `{"event_id":"e","type":"t","content":{}}`, false, "occurred_at"},
		{"time without zone", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20","content":{}}`, false, "occurred_at"},
		{"neither content nor encrypted", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z"}`, false, "one of content and encrypted"},
		{"content and encrypted", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","content":{},"encrypted":{"alg":"A256GCM"}}`, false, "both"},
		{"content not an object", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","content":"plain"}`, false, "content is not a JSON object"},
		{"encrypted not an object", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","encrypted":"abc"}`, false, "encrypted"},
		{"encrypted unknown field", `{"event_id":"e","type":"t","occurred_at":"2025-10-09T08:53:20Z","encrypted":{"alg":"A256GCM","plaintext":"x"}}`, false, "encrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSyncEvent([]byte(tt.event))
			if !errors.Is(err, ErrInvalidSyncEvent) {
				t.Fatalf("error = %v, want ErrInvalidSyncEvent", err)
			}
			if got := errors.Is(err, errNotJSON); got != tt.notJSON {
				t.Errorf("errors.Is(err, errNotJSON) = %v, want %v", got, tt.notJSON)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestCheckClientPayload(t *testing.T) {
	ciphertext := bytes.Repeat([]byte{0xfb, 0xff, 0x01}, 11) // 33 bytes, has + and / in base64
	sum := sha256.Sum256(ciphertext)
	checksum := checksumPrefix + hex.EncodeToString(sum[:])
	iv12 := base64.StdEncoding.EncodeToString(make([]byte, 12))
	iv24 := base64.RawStdEncoding.EncodeToString(make([]byte, 24))
	std := base64.StdEncoding.EncodeToString(ciphertext)
	rawStd := base64.RawStdEncoding.EncodeToString(ciphertext)
	urlSafe := base64.RawURLEncoding.EncodeToString(ciphertext)
	all := []string{AlgA256GCM, AlgXChaCha20Poly1305}

	tests := []struct {
		name    string
		p       ClientPayload
		allowed []string
		want    string // "" means valid
	}{
		{"gcm with checksum", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std, Checksum: checksum}, all, ""},
		{"gcm without checksum", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std}, all, ""},
		{"xchacha unpadded", ClientPayload{KeyID: "ck1", Alg: AlgXChaCha20Poly1305, IV: iv24, Ciphertext: rawStd, Checksum: checksum}, all, ""},
		{"url-safe alphabet", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: urlSafe}, all, "ciphertext is not base64"},
		{"missing key id", ClientPayload{Alg: AlgA256GCM, IV: iv12, Ciphertext: std}, all, "key_id"},
		{"alg not allowed", ClientPayload{KeyID: "ck1", Alg: AlgXChaCha20Poly1305, IV: iv24, Ciphertext: std}, []string{AlgA256GCM}, "algorithm"},
		{"unknown alg", ClientPayload{KeyID: "ck1", Alg: "none", IV: iv12, Ciphertext: std}, all, "algorithm"},
		{"lower-case alg", ClientPayload{KeyID: "ck1", Alg: "a256gcm", IV: iv12, Ciphertext: std}, all, "algorithm"},
		{"gcm with 24-byte iv", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv24, Ciphertext: std}, all, "iv is 24 bytes"},
		{"xchacha with 12-byte iv", ClientPayload{KeyID: "ck1", Alg: AlgXChaCha20Poly1305, IV: iv12, Ciphertext: std}, all, "iv is 12 bytes"},
		{"iv not base64", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: "!!!!", Ciphertext: std}, all, "iv is not base64"},
		{"missing iv", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, Ciphertext: std}, all, "iv is not base64"},
		{"ciphertext not base64", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: "a b c"}, all, "ciphertext is not base64"},
		{"missing ciphertext", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12}, all, "ciphertext is not base64"},
		{"ciphertext shorter than tag", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: base64.StdEncoding.EncodeToString(make([]byte, 15))}, all, "shorter"},
		{"checksum mismatch", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std, Checksum: checksumPrefix + strings.Repeat("0", 64)}, all, "does not match"},
		{"checksum without prefix", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std, Checksum: hex.EncodeToString(sum[:])}, all, "sha256:"},
		{"checksum truncated", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std, Checksum: checksum[:40]}, all, "64 hex digits"},
		{"checksum other hash", ClientPayload{KeyID: "ck1", Alg: AlgA256GCM, IV: iv12, Ciphertext: std, Checksum: "md5:" + strings.Repeat("0", 32)}, all, "sha256:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckClientPayload(tt.p, tt.allowed)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckClientPayload: %v", err)
				}
				if !bytes.Equal(got, ciphertext) {
					t.Fatalf("ciphertext = %x, want %x", got, ciphertext)
				}
				return
			}
			if !errors.Is(err, ErrInvalidClientPayload) {
				t.Fatalf("error = %v, want ErrInvalidClientPayload", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
