package processors

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"
)

// WhatsAppObject is the "object" of every WhatsApp Business Account webhook.
const WhatsAppObject = "whatsapp_business_account"

// FieldMessages is the change field that carries messages and statuses.
const FieldMessages = "messages"

// knownTypes maps each modelled message type to the JSON kind of its content
// object, which sits under a key named after the type.
var knownTypes = map[string]byte{
	"text":        '{',
	"image":       '{',
	"audio":       '{',
	"video":       '{',
	"document":    '{',
	"sticker":     '{',
	"location":    '{',
	"contacts":    '[',
	"interactive": '{',
	"button":      '{',
	"reaction":    '{',
	"system":      '{',
	"order":       '{',
}

// envelopeFields are the message fields that stay in clear on the output
// record; every other field of a message is content and gets encrypted.
var envelopeFields = map[string]bool{"from": true, "id": true, "timestamp": true, "type": true}

// Webhook is a parsed WhatsApp Cloud API webhook notification. One POST can
// carry several entries, each with several changes.
type Webhook struct {
	Object  string
	Entries []Entry
}

// Entry is one WhatsApp Business Account's part of a notification.
type Entry struct {
	// ID is the WhatsApp Business Account id.
	ID      string
	Changes []Change
}

// Change is one change of an entry. Only changes with Field "messages"
// carry messages and statuses.
type Change struct {
	Field string
	Value ChangeValue
}

// ChangeValue is the value of a "messages" change.
type ChangeValue struct {
	MessagingProduct   string
	DisplayPhoneNumber string
	// PhoneNumberID is the business phone number id: the account of every
	// message and status of this change.
	PhoneNumberID string
	Contacts      []Contact
	Messages      []Message
	Statuses      []StatusUpdate
	// Errors is the value-level errors array as received, or nil.
	Errors json.RawMessage
}

// Contact is a customer named in a change. Profile is optional: status
// notifications carry contacts with only wa_id or user_id.
type Contact struct {
	WaID        string
	UserID      string
	ProfileName string
}

// Message is one inbound message. Content and Extra hold JSON as received,
// with Meta's escapes (\/, \u0040) intact; decoding them yields the text the
// customer sent.
type Message struct {
	ID         string
	From       string
	FromUserID string
	Type       string
	// Timestamp is the send time in Unix seconds as received, digits only.
	Timestamp string
	SentAt    time.Time
	// Known is true when Type is a modelled type and its content object is
	// present with the expected JSON kind.
	Known bool
	// Content is the type's content object (for example the "text" object
	// of a text message). For types that are not Known it is the whole
	// message object without from, id, timestamp and type, so that nothing
	// of an unsupported message is dropped.
	Content json.RawMessage
	// Extra holds the other fields of a Known message, such as context,
	// referral or identity, as one JSON object; nil when there are none.
	Extra json.RawMessage
	// Errors is the message's errors array as received, or nil. Messages of
	// type "unsupported" and "unknown" carry one instead of content.
	Errors json.RawMessage
	// Invalid is why the message cannot be routed, or "" when it can.
	Invalid string
}

// StatusUpdate is a delivery status of an outbound message.
type StatusUpdate struct {
	ID              string
	Status          string
	Timestamp       string
	Time            time.Time
	RecipientID     string
	RecipientUserID string
	ConversationID  string
	// Pricing and Errors are the objects as received, or nil.
	Pricing json.RawMessage
	Errors  json.RawMessage
	// Invalid is why the status cannot be routed, or "" when it can.
	Invalid string
}

// ProfileName returns the profile name of the contact with the given wa_id,
// or of the only contact when no wa_id matches, or "".
func (v ChangeValue) ProfileName(waID string) string {
	for _, c := range v.Contacts {
		if c.WaID != "" && c.WaID == waID {
			return c.ProfileName
		}
	}
	if len(v.Contacts) == 1 && v.Contacts[0].WaID == "" {
		return v.Contacts[0].ProfileName
	}
	return ""
}

// The raw* types mirror Meta's JSON. Ids and timestamps are flexStrings,
// because Meta sends them as strings but other senders use numbers.
type rawWebhook struct {
	Object string     `json:"object"`
	Entry  []rawEntry `json:"entry"`
}

type rawEntry struct {
	ID      flexString  `json:"id"`
	Changes []rawChange `json:"changes"`
}

type rawChange struct {
	Field string   `json:"field"`
	Value rawValue `json:"value"`
}

type rawValue struct {
	MessagingProduct string `json:"messaging_product"`
	Metadata         struct {
		DisplayPhoneNumber flexString `json:"display_phone_number"`
		PhoneNumberID      flexString `json:"phone_number_id"`
	} `json:"metadata"`
	Contacts []rawContact      `json:"contacts"`
	Messages []json.RawMessage `json:"messages"`
	Statuses []json.RawMessage `json:"statuses"`
	Errors   json.RawMessage   `json:"errors"`
}

type rawContact struct {
	Profile *struct {
		Name string `json:"name"`
	} `json:"profile"`
	WaID   flexString `json:"wa_id"`
	UserID flexString `json:"user_id"`
}

type rawStatus struct {
	ID              flexString      `json:"id"`
	Status          string          `json:"status"`
	Timestamp       flexString      `json:"timestamp"`
	RecipientID     flexString      `json:"recipient_id"`
	RecipientUserID flexString      `json:"recipient_user_id"`
	Conversation    json.RawMessage `json:"conversation"`
	Pricing         json.RawMessage `json:"pricing"`
	Errors          json.RawMessage `json:"errors"`
}

// flexString decodes a JSON string, or a JSON number kept as its literal
// digits so that ids beyond 2^53 keep every digit. null decodes to "".
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("%w: empty value", ErrInvalidWebhook)
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		// The decoder hands over a valid JSON number literal.
		*s = flexString(b)
	default:
		return fmt.Errorf("%w: want a string or a number", ErrInvalidWebhook)
	}
	return nil
}

// ParseWebhook parses a WhatsApp webhook body. It fails only when the body
// as a whole is unusable: not JSON, not of the webhook's shape, or not a
// WhatsApp Business Account notification. A single malformed message or
// status is returned with Invalid set, so that the others still route.
func ParseWebhook(body []byte) (*Webhook, error) {
	var raw rawWebhook
	if err := decodeJSON(body, &raw); err != nil {
		// The decoder's message may quote the body, so it is not wrapped.
		return nil, ErrInvalidWebhook
	}
	if raw.Object != WhatsAppObject {
		return nil, ErrNotWhatsApp
	}

	w := &Webhook{Object: raw.Object, Entries: make([]Entry, 0, len(raw.Entry))}
	for _, re := range raw.Entry {
		e := Entry{ID: string(re.ID), Changes: make([]Change, 0, len(re.Changes))}
		for _, rc := range re.Changes {
			e.Changes = append(e.Changes, Change{Field: rc.Field, Value: parseValue(rc.Value)})
		}
		w.Entries = append(w.Entries, e)
	}
	return w, nil
}

func parseValue(rv rawValue) ChangeValue {
	v := ChangeValue{
		MessagingProduct:   rv.MessagingProduct,
		DisplayPhoneNumber: string(rv.Metadata.DisplayPhoneNumber),
		PhoneNumberID:      string(rv.Metadata.PhoneNumberID),
		Errors:             nonNull(rv.Errors),
	}
	for _, rc := range rv.Contacts {
		c := Contact{WaID: string(rc.WaID), UserID: string(rc.UserID)}
		if rc.Profile != nil {
			c.ProfileName = rc.Profile.Name
		}
		v.Contacts = append(v.Contacts, c)
	}
	for _, rm := range rv.Messages {
		v.Messages = append(v.Messages, parseMessage(rm))
	}
	for _, rs := range rv.Statuses {
		v.Statuses = append(v.Statuses, parseStatus(rs))
	}
	return v
}

func parseMessage(b json.RawMessage) Message {
	var fields map[string]json.RawMessage
	if err := decodeJSON(b, &fields); err != nil || fields == nil {
		return Message{Invalid: "message is not a JSON object"}
	}

	var m Message
	for _, f := range []struct {
		name string
		dst  *string
	}{{"id", &m.ID}, {"from", &m.From}, {"from_user_id", &m.FromUserID}, {"timestamp", &m.Timestamp}} {
		var s flexString
		if raw, ok := fields[f.name]; ok {
			if err := decodeJSON(raw, &s); err != nil {
				return Message{ID: m.ID, Invalid: f.name + " is neither a string nor a number"}
			}
		}
		*f.dst = string(s)
	}
	if raw, ok := fields["type"]; ok {
		if err := decodeJSON(raw, &m.Type); err != nil {
			return Message{ID: m.ID, Invalid: "type is not a string"}
		}
	}
	m.Errors = nonNull(fields["errors"])

	if inv := m.check(); inv != "" {
		m.Invalid = inv
		return m
	}

	kind, known := knownTypes[m.Type]
	content := nonNull(fields[m.Type])
	if known && len(content) > 0 && content[0] == kind {
		extra, err := marshalFields(fields, func(name string) bool {
			return envelopeFields[name] || name == m.Type || name == "errors"
		})
		if err != nil {
			m.Invalid = "fields cannot be re-encoded as JSON"
			return m
		}
		m.Known, m.Content, m.Extra = true, content, extra
		return m
	}
	// An unsupported, unknown or malformed type: keep everything but the
	// envelope, so that the message is stored, not dropped.
	content, err := marshalFields(fields, func(name string) bool { return envelopeFields[name] })
	if err != nil {
		m.Invalid = "fields cannot be re-encoded as JSON"
		return m
	}
	if content == nil {
		content = json.RawMessage("{}")
	}
	m.Content = content
	return m
}

// check returns why m misses a field that routing needs, or "".
func (m *Message) check() string {
	switch {
	case m.ID == "":
		return "missing id"
	case m.From == "" && m.FromUserID == "":
		return "missing from"
	case m.Type == "":
		return "missing type"
	}
	t, ok := parseUnixSeconds(m.Timestamp)
	if !ok {
		return "missing or invalid timestamp"
	}
	m.SentAt = t
	return ""
}

func parseStatus(b json.RawMessage) StatusUpdate {
	var rs rawStatus
	if err := decodeJSON(b, &rs); err != nil {
		return StatusUpdate{Invalid: "status is not a JSON object of the status shape"}
	}
	s := StatusUpdate{
		ID:              string(rs.ID),
		Status:          rs.Status,
		Timestamp:       string(rs.Timestamp),
		RecipientID:     string(rs.RecipientID),
		RecipientUserID: string(rs.RecipientUserID),
		Pricing:         nonNull(rs.Pricing),
		Errors:          nonNull(rs.Errors),
	}
	if conv := nonNull(rs.Conversation); conv != nil {
		var c struct {
			ID flexString `json:"id"`
		}
		if err := decodeJSON(conv, &c); err == nil {
			s.ConversationID = string(c.ID)
		}
	}

	switch {
	case s.ID == "":
		s.Invalid = "missing id"
	case s.Status == "":
		s.Invalid = "missing status"
	case s.RecipientID == "" && s.RecipientUserID == "":
		s.Invalid = "missing recipient_id"
	default:
		t, ok := parseUnixSeconds(s.Timestamp)
		if !ok {
			s.Invalid = "missing or invalid timestamp"
		}
		s.Time = t
	}
	return s
}

// parseUnixSeconds parses a non-negative integer count of Unix seconds.
func parseUnixSeconds(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

// marshalFields returns the fields that skip does not match as one JSON
// object, or nil when no field is left.
func marshalFields(fields map[string]json.RawMessage, skip func(string) bool) (json.RawMessage, error) {
	rest := make(map[string]json.RawMessage, len(fields))
	for name, v := range fields {
		if !skip(name) {
			rest[name] = v
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	return json.Marshal(rest)
}

// decodeJSON decodes b into x like json.Unmarshal, except that struct field
// names must match exactly. Bytes after the value are an error.
func decodeJSON(b []byte, x any) error {
	rest, err := json.Parse(b, x, json.DontMatchCaseInsensitiveStructFields)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errTrailingData
	}
	return nil
}

// nonNull returns nil for an absent or null JSON value, else raw.
func nonNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	return raw
}
