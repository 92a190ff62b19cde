package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/syncguard/syncguard/schemas"
)

// Limits of sync event fields.
const (
	maxEventTypeLen      = 64
	maxConversationIDLen = 128
	minCiphertextLen     = 16 // the authentication tag of both AEADs
	checksumPrefix       = "sha256:"
)

// Client-side encryption algorithms and their nonce sizes in bytes.
var encryptionNonceSizes = map[string]int{
	"A256GCM":            12,
	"XCHACHA20-POLY1305": 24,
}

// syncEvent is the schema of one sync event. Exactly one of Content and
// Encrypted is set.
type syncEvent struct {
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	OccurredAt     string          `json:"occurred_at"`
	DeviceID       string          `json:"device_id"`
	ConversationID string          `json:"conversation_id"`
	Content        json.RawMessage `json:"content"`
	Encrypted      json.RawMessage `json:"encrypted"`
}

// encryptedContent is content that the client encrypted itself. The server
// checks its shape and checksum and never needs its key.
type encryptedContent struct {
	Alg        string `json:"alg"`
	IV         string `json:"iv"`
	Ciphertext string `json:"ciphertext"`
	KeyID      string `json:"key_id"`
	Checksum   string `json:"checksum"`
}

// Parse flags of sync events: unknown fields are rejected, so no data can
// ride along unchecked, and field names match exactly, so "Device_ID"
// cannot stand in for "device_id".
const strictParse = json.DisallowUnknownFields | json.DontMatchCaseInsensitiveStructFields | json.ZeroCopy

// eventRejection is the reason code and detail of one rejected event.
type eventRejection struct {
	code   string
	detail string
}

func invalidEvent(detail string) *eventRejection {
	return &eventRejection{code: schemas.ReasonInvalidEvent, detail: detail}
}

// eventRules are the checks that depend on the request and the clock.
type eventRules struct {
	device string
	now    time.Time
	maxAge time.Duration
	skew   time.Duration
}

// validateEvent checks one event's raw JSON and returns its event id, which
// is "" unless the id itself is valid.
func (rules eventRules) validateEvent(raw []byte) (string, *eventRejection) {
	if len(raw) == 0 || raw[0] != '{' {
		return "", invalidEvent("the event is not a JSON object")
	}
	var ev syncEvent
	if _, err := json.Parse(raw, &ev, strictParse); err != nil {
		return "", invalidEvent(describeParseError(err))
	}
	if key := duplicateKey(raw); key != "" {
		return "", invalidEvent("the field " + key + " appears twice")
	}
	if !validID(ev.EventID, maxIDLen) {
		return "", invalidEvent("event_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
	}
	id := ev.EventID
	if !validID(ev.Type, maxEventTypeLen) {
		return id, invalidEvent("type must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
	}
	if !validPrintable(ev.ConversationID, maxConversationIDLen) {
		return id, invalidEvent("conversation_id must be 1 to 128 printable ASCII characters without spaces")
	}
	if ev.DeviceID != rules.device {
		return id, &eventRejection{code: schemas.ReasonDeviceMismatch, detail: "device_id differs from the authenticated device"}
	}
	occurred, err := time.Parse(time.RFC3339, ev.OccurredAt)
	if err != nil || !rfc3339Syntax(ev.OccurredAt) {
		return id, invalidEvent("occurred_at must be an RFC 3339 time")
	}
	if occurred.Before(rules.now.Add(-rules.maxAge)) || occurred.After(rules.now.Add(rules.skew)) {
		return id, &eventRejection{code: schemas.ReasonEventOutOfWindow, detail: "occurred_at is outside the accepted window around the server time"}
	}

	switch {
	case ev.Content == nil && ev.Encrypted == nil:
		return id, invalidEvent("one of content and encrypted is required")
	case ev.Content != nil && ev.Encrypted != nil:
		return id, invalidEvent("content and encrypted must not both be set")
	case ev.Content != nil:
		if ev.Content[0] != '{' {
			return id, invalidEvent("content must be a JSON object")
		}
	default:
		if rej := validateEncrypted(ev.Encrypted); rej != nil {
			return id, rej
		}
	}
	return id, nil
}

func validateEncrypted(raw json.RawMessage) *eventRejection {
	if raw[0] != '{' {
		return invalidEvent("encrypted must be a JSON object")
	}
	var enc encryptedContent
	if _, err := json.Parse(raw, &enc, strictParse); err != nil {
		return invalidEvent("encrypted: " + describeParseError(err))
	}
	nonceSize, ok := encryptionNonceSizes[enc.Alg]
	if !ok {
		return invalidEvent("encrypted.alg must be A256GCM or XCHACHA20-POLY1305")
	}
	iv, err := decodeBase64(enc.IV)
	if err != nil || len(iv) != nonceSize {
		return invalidEvent("encrypted.iv must be the base64 of a nonce of the algorithm's size")
	}
	ciphertext, err := decodeBase64(enc.Ciphertext)
	if err != nil || len(ciphertext) < minCiphertextLen {
		return invalidEvent("encrypted.ciphertext must be base64 of at least 16 bytes")
	}
	if !validID(enc.KeyID, maxIDLen) {
		return invalidEvent("encrypted.key_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
	}
	if enc.Checksum != "" {
		hexSum, found := strings.CutPrefix(enc.Checksum, checksumPrefix)
		want, err := hex.DecodeString(hexSum)
		if !found || err != nil || len(want) != sha256.Size {
			return invalidEvent("encrypted.checksum must be sha256:<64 hex digits>")
		}
		got := sha256.Sum256(ciphertext)
		if !bytes.Equal(got[:], want) {
			return invalidEvent("encrypted.checksum does not match the ciphertext")
		}
	}
	return nil
}

// decodeBase64 decodes standard base64, with or without padding.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// validPrintable reports whether s is 1 to max bytes of ASCII 0x21-0x7e.
func validPrintable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// describeParseError turns a decoding error into a detail for the client.
// Field names are echoed only when they are short identifiers.
func describeParseError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if validID(typeErr.Field, 64) {
			return "the field " + typeErr.Field + " has the wrong type"
		}
		return "a field has the wrong type"
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if validID(name, 64) {
			return "unknown field " + name
		}
		return "unknown field"
	}
	return "the event is not valid JSON"
}

// Top-level fields of an event and of its encrypted object, by position.
var (
	eventFields     = []string{"event_id", "type", "occurred_at", "device_id", "conversation_id", "content", "encrypted"}
	encryptedFields = []string{"alg", "iv", "ciphertext", "key_id", "checksum"}
)

// duplicateKey returns the first field that appears twice at the top level
// of an event or in its encrypted object, or "". Go's decoders keep the
// last of two equal keys, other parsers the first, so a duplicate could
// show the processors another device or content than ingest checked.
// raw must already have parsed with strictParse, so every such key is one
// of eventFields or encryptedFields.
func duplicateKey(raw []byte) string {
	var seenTop, seenEncrypted uint32
	parent := ""
	t := json.NewTokenizer(raw)
	defer t.Reset(nil)
	for t.Next() {
		if !t.IsKey {
			continue
		}
		key := string(t.String())
		switch t.Depth {
		case 1:
			parent = key
			if dup := markSeen(&seenTop, eventFields, key); dup {
				return key
			}
		case 2:
			if parent == "encrypted" {
				if dup := markSeen(&seenEncrypted, encryptedFields, key); dup {
					return "encrypted." + key
				}
			}
		}
	}
	return ""
}

func markSeen(seen *uint32, fields []string, key string) bool {
	for i, f := range fields {
		if f == key {
			bit := uint32(1) << i
			dup := *seen&bit != 0
			*seen |= bit
			return dup
		}
	}
	return false
}

// rfc3339Syntax reports whether s has the shape of an RFC 3339 date-time
// with an upper-case T and Z: YYYY-MM-DDTHH:MM:SS, an optional fraction
// after a dot, and Z or an offset of at most 23:59. time.Parse also takes
// a comma before the fraction and offsets such as +24:00, which other
// parsers of the stored value would read differently or reject.
func rfc3339Syntax(s string) bool {
	const shape = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(shape)+1 {
		return false
	}
	for i := range len(shape) {
		if !matchesShape(s[i], shape[i]) {
			return false
		}
	}
	rest := s[len(shape):]
	if rest[0] == '.' {
		digits := 1
		for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
			digits++
		}
		if digits == 1 {
			return false
		}
		rest = rest[digits:]
	}
	switch {
	case rest == "Z":
		return true
	case len(rest) != 6 || (rest[0] != '+' && rest[0] != '-'):
		return false
	}
	for i, c := range []byte("dd:dd") {
		if !matchesShape(rest[1+i], c) {
			return false
		}
	}
	hours := int(rest[1]-'0')*10 + int(rest[2]-'0')
	minutes := int(rest[4]-'0')*10 + int(rest[5]-'0')
	return hours <= 23 && minutes <= 59
}

// matchesShape reports whether c fits the shape character want: 'd' for
// an ASCII digit, else that character itself.
func matchesShape(c, want byte) bool {
	if want == 'd' {
		return c >= '0' && c <= '9'
	}
	return c == want
}
