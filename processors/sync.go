package processors

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
)

// checksumPrefix starts the checksum of a client-encrypted payload.
const checksumPrefix = "sha256:"

// aeadTagSize is the authentication tag size of both supported client
// algorithms; a shorter ciphertext cannot be valid.
const aeadTagSize = 16

// SyncEvent is one event that a sync client sent, as ingest stored it in
// the raw topic: event_id, type, occurred_at, device_id, conversation_id and
// exactly one of content (a JSON object) and encrypted (content that the
// client encrypted end to end). Ingest rejects unknown fields, and so does
// ParseSyncEvent.
type SyncEvent struct {
	EventID        string
	Type           string
	OccurredAt     time.Time
	DeviceID       string
	ConversationID string
	// Content is the plaintext content object as received, or nil.
	Content json.RawMessage
	// Encrypted is the client-side encrypted content, or nil.
	Encrypted *ClientPayload
}

// ClientPayload is content that the client encrypted itself. The server
// never holds its key: it checks the structure and stores it as received.
type ClientPayload struct {
	// Alg is A256GCM or XCHACHA20-POLY1305.
	Alg   string `json:"alg"`
	KeyID string `json:"key_id"`
	// IV and Ciphertext are standard base64, padded or not.
	IV         string `json:"iv"`
	Ciphertext string `json:"ciphertext"`
	// Checksum is optional: "sha256:" and the hex SHA-256 of the
	// ciphertext bytes.
	Checksum string `json:"checksum"`
}

type rawSyncEvent struct {
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	OccurredAt     string          `json:"occurred_at"`
	DeviceID       string          `json:"device_id"`
	ConversationID string          `json:"conversation_id"`
	Content        json.RawMessage `json:"content"`
	Encrypted      json.RawMessage `json:"encrypted"`
}

// strictSyncParse rejects unknown fields, so that no data rides along
// unchecked, and matches field names exactly, as ingest does.
const strictSyncParse = json.DisallowUnknownFields | json.DontMatchCaseInsensitiveStructFields

// ParseSyncEvent parses one sync event. Errors wrap ErrInvalidSyncEvent and
// never quote the event's content.
func ParseSyncEvent(b []byte) (SyncEvent, error) {
	if len(b) == 0 || b[0] != '{' {
		return SyncEvent{}, fmt.Errorf("%w: %w", ErrInvalidSyncEvent, errNotJSON)
	}
	var raw rawSyncEvent
	if err := decodeStrict(b, &raw); err != nil {
		// Unknown fields and wrong types are schema errors, the rest is
		// not JSON at all.
		if json.Valid(b) {
			return SyncEvent{}, fmt.Errorf("%w: unknown field or field of the wrong type", ErrInvalidSyncEvent)
		}
		return SyncEvent{}, fmt.Errorf("%w: %w", ErrInvalidSyncEvent, errNotJSON)
	}
	ev := SyncEvent{
		EventID:        raw.EventID,
		Type:           raw.Type,
		DeviceID:       raw.DeviceID,
		ConversationID: raw.ConversationID,
		Content:        nonNull(raw.Content),
	}
	switch {
	case ev.EventID == "":
		return ev, fmt.Errorf("%w: missing event_id", ErrInvalidSyncEvent)
	case ev.Type == "":
		return ev, fmt.Errorf("%w: missing type", ErrInvalidSyncEvent)
	}
	t, err := time.Parse(time.RFC3339Nano, raw.OccurredAt)
	if err != nil {
		return ev, fmt.Errorf("%w: occurred_at is not an RFC 3339 time", ErrInvalidSyncEvent)
	}
	ev.OccurredAt = t.UTC()

	enc := nonNull(raw.Encrypted)
	switch {
	case ev.Content == nil && enc == nil:
		return ev, fmt.Errorf("%w: one of content and encrypted is required", ErrInvalidSyncEvent)
	case ev.Content != nil && enc != nil:
		return ev, fmt.Errorf("%w: content and encrypted must not both be set", ErrInvalidSyncEvent)
	case ev.Content != nil && ev.Content[0] != '{':
		return ev, fmt.Errorf("%w: content is not a JSON object", ErrInvalidSyncEvent)
	case enc != nil:
		var p ClientPayload
		if enc[0] != '{' || decodeStrict(enc, &p) != nil {
			return ev, fmt.Errorf("%w: encrypted is not an object of alg, key_id, iv, ciphertext and checksum", ErrInvalidSyncEvent)
		}
		ev.Encrypted = &p
	}
	return ev, nil
}

// decodeStrict decodes b into x with strictSyncParse. Bytes after the value
// are an error.
func decodeStrict(b []byte, x any) error {
	rest, err := json.Parse(b, x, strictSyncParse)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errTrailingData
	}
	return nil
}

// CheckClientPayload checks the structure of a client-encrypted payload and
// returns its decoded ciphertext. The algorithm must be in allowed and the
// key id must be set. The IV
// must have the algorithm's size: 12 bytes for A256GCM, 24 for
// XCHACHA20-POLY1305. The ciphertext must be at least as long as an AEAD
// tag, and a checksum, when present, must match the ciphertext bytes.
// Errors wrap ErrInvalidClientPayload.
func CheckClientPayload(p ClientPayload, allowed []string) ([]byte, error) {
	ivSize, ok := clientIVSizes[p.Alg]
	if !ok || !slices.Contains(allowed, p.Alg) {
		// The value is not quoted: the detail must never carry client data.
		return nil, fmt.Errorf("%w: algorithm is not one of %v", ErrInvalidClientPayload, allowed)
	}
	if p.KeyID == "" {
		return nil, fmt.Errorf("%w: missing key_id", ErrInvalidClientPayload)
	}
	iv, err := decodeBase64(p.IV)
	if err != nil {
		return nil, fmt.Errorf("%w: iv is not base64", ErrInvalidClientPayload)
	}
	if len(iv) != ivSize {
		return nil, fmt.Errorf("%w: iv is %d bytes, %s needs %d", ErrInvalidClientPayload, len(iv), p.Alg, ivSize)
	}
	ciphertext, err := decodeBase64(p.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64", ErrInvalidClientPayload)
	}
	if len(ciphertext) < aeadTagSize {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, shorter than the %d-byte tag", ErrInvalidClientPayload, len(ciphertext), aeadTagSize)
	}
	if p.Checksum != "" {
		if err := checkChecksum(p.Checksum, ciphertext); err != nil {
			return nil, err
		}
	}
	return ciphertext, nil
}

func checkChecksum(checksum string, ciphertext []byte) error {
	hexSum, ok := strings.CutPrefix(checksum, checksumPrefix)
	if !ok {
		return fmt.Errorf("%w: checksum does not start with %q", ErrInvalidClientPayload, checksumPrefix)
	}
	want, err := hex.DecodeString(hexSum)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: checksum is not 64 hex digits", ErrInvalidClientPayload)
	}
	got := sha256.Sum256(ciphertext)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return fmt.Errorf("%w: checksum does not match the ciphertext", ErrInvalidClientPayload)
	}
	return nil
}

// decodeBase64 decodes standard base64, with or without padding, which is
// what ingest accepts.
func decodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, errEmptyBase64
	}
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}
