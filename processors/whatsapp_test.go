package processors

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readMeta(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "meta", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseMeta(t testing.TB, name string) *Webhook {
	t.Helper()
	wh, err := ParseWebhook(readMeta(t, name))
	if err != nil {
		t.Fatalf("ParseWebhook(%s): %v", name, err)
	}
	return wh
}

// onlyMessage returns the single message of a one-entry, one-change body.
func onlyMessage(t *testing.T, wh *Webhook) (ChangeValue, Message) {
	t.Helper()
	if len(wh.Entries) != 1 || len(wh.Entries[0].Changes) != 1 {
		t.Fatalf("got %d entries, want 1 entry with 1 change", len(wh.Entries))
	}
	v := wh.Entries[0].Changes[0].Value
	if len(v.Messages) != 1 {
		t.Fatalf("got %d messages, want 1", len(v.Messages))
	}
	return v, v.Messages[0]
}

// decodeObject decodes raw JSON the way a reader of the plaintext would,
// with numbers kept exact.
func decodeObject(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	dec := stdjson.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

// field walks a decoded object along path and returns the value there.
func field(t *testing.T, obj any, path ...string) any {
	t.Helper()
	cur := obj
	for _, name := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("at %q: not an object in path %v", name, path)
		}
		cur, ok = m[name]
		if !ok {
			return nil
		}
	}
	return cur
}

func wantField(t *testing.T, obj any, want any, path ...string) {
	t.Helper()
	got := field(t, obj, path...)
	if n, ok := got.(stdjson.Number); ok {
		got = string(n)
	}
	if got != want {
		t.Errorf("%s = %#v, want %#v", strings.Join(path, "."), got, want)
	}
}

func TestParseWebhookMessageTypes(t *testing.T) {
	tests := []struct {
		file    string
		id      string
		typ     string
		known   bool
		from    string
		profile string
		sentAt  int64
		check   func(t *testing.T, content, extra map[string]any)
	}{
		{
			"text_escaped.json", "wamid.RkFLRS1DMDEtMQ==", "text", true, "15550002222", "Test User", 1760000000,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Contact me at test.user@example.com or https://example.com/help?id=42", "body")
			},
		},
		{
			"text_reserialized.json", "wamid.RkFLRS1DMDEtMQ==", "text", true, "15550002222", "Test User", 1760000000,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Contact me at test.user@example.com or https://example.com/help?id=42", "body")
			},
		},
		{
			"image.json", "wamid.RkFLRS1DMDMtaW1n", "image", true, "15550002222", "Test User", 1760000020,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Rechnung für März / invoice", "caption")
				wantField(t, c, "image/jpeg", "mime_type")
				wantField(t, c, "k3/9Zx+QmT1fAkeImageHashBase64Value0000000=", "sha256")
				wantField(t, c, "900000000000101", "id")
			},
		},
		{
			"audio.json", "wamid.RkFLRS1DMDMtYXVk", "audio", true, "15550002222", "Test User", 1760000021,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "audio/ogg; codecs=opus", "mime_type")
				wantField(t, c, true, "voice")
			},
		},
		{
			"document.json", "wamid.RkFLRS1DMDMtZG9j", "document", true, "15550002222", "Test User", 1760000022,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Vertrag", "caption")
				wantField(t, c, "Vertrag_März_2025.pdf", "filename")
				wantField(t, c, "application/pdf", "mime_type")
			},
		},
		{
			"sticker.json", "wamid.RkFLRS1DMDMtc3Rr", "sticker", true, "15550002222", "Test User", 1760000023,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "image/webp", "mime_type")
				wantField(t, c, false, "animated")
			},
		},
		{
			"video.json", "wamid.RkFLRS1WSUQtMQ==", "video", true, "15550002222", "Test User", 1760000300,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Urlaub am Strand \u2600\ufe0f", "caption")
				wantField(t, c, "video/mp4", "mime_type")
			},
		},
		{
			"location.json", "wamid.RkFLRS1MT0MtMQ==", "location", true, "15550002222", "Test User", 1760000301,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "52.521918", "latitude")
				wantField(t, c, "13.413215", "longitude")
				wantField(t, c, "Fake Meeting Point", "name")
				wantField(t, c, "Alexanderplatz 1, 10178 Berlin", "address")
			},
		},
		{
			"system.json", "wamid.RkFLRS1TWVMtMQ==", "system", true, "15550002222", "Test User", 1760000303,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "Test User changed from 15550002222 to 15550005555", "body")
				wantField(t, c, "user_changed_number", "type")
			},
		},
		{
			"order.json", "wamid.RkFLRS1PUkQtMQ==", "order", true, "15550002222", "Test User", 1760000304,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "300000000000003", "catalog_id")
				wantField(t, c, "Bitte bis Freitag liefern", "text")
			},
		},
		{
			"interactive_button_reply.json", "wamid.RkFLRS1DMTctMQ==", "interactive", true, "15550002222", "Test User", 1760000180,
			func(t *testing.T, c, e map[string]any) {
				wantField(t, c, "button_reply", "type")
				wantField(t, c, "btn_confirm_yes", "button_reply", "id")
				wantField(t, c, "Yes, confirm", "button_reply", "title")
				wantField(t, e, "wamid.RkFLRS1DMTctb3V0LTE=", "context", "id")
				wantField(t, e, "15550001111", "context", "from")
			},
		},
		{
			"interactive_list_reply.json", "wamid.RkFLRS1DMTctMg==", "interactive", true, "15550002222", "Test User", 1760000181,
			func(t *testing.T, c, e map[string]any) {
				wantField(t, c, "list_reply", "type")
				wantField(t, c, "slot_tue_10", "list_reply", "id")
				wantField(t, c, "Tue 10:00", "list_reply", "title")
				wantField(t, c, "Tuesday morning slot", "list_reply", "description")
				wantField(t, e, "wamid.RkFLRS1DMTctb3V0LTE=", "context", "id")
			},
		},
		{
			"button_quick_reply.json", "wamid.RkFLRS1DMTctMw==", "button", true, "15550002222", "Test User", 1760000182,
			func(t *testing.T, c, e map[string]any) {
				wantField(t, c, "STOP_PROMOS", "payload")
				wantField(t, c, "Stop promotions", "text")
				wantField(t, e, "wamid.RkFLRS1DMTctb3V0LTE=", "context", "id")
			},
		},
		{
			"reaction.json", "wamid.RkFLRS1DMTUtcjE=", "reaction", true, "15550002222", "Test User", 1760000170,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "wamid.RkFLRS1DMTUtb3V0LTE=", "message_id")
				wantField(t, c, "\U0001F62E", "emoji")
			},
		},
		{
			"reaction_removed.json", "wamid.RkFLRS1DMTUtcjI=", "reaction", true, "15550002222", "Test User", 1760000175,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c, "wamid.RkFLRS1DMTUtb3V0LTE=", "message_id")
				if _, ok := c["emoji"]; ok {
					t.Error("removed reaction has an emoji")
				}
			},
		},
		{
			"text_referral.json", "wamid.RkFLRS1SRUYtMQ==", "text", true, "15550002222", "Test User", 1760000305,
			func(t *testing.T, c, e map[string]any) {
				wantField(t, c, "I saw your ad and want to know more", "body")
				wantField(t, e, "ad", "referral", "source_type")
				wantField(t, e, "https://fb.me/fakead", "referral", "source_url")
			},
		},
		{
			"unsupported.json", "wamid.RkFLRS1DMTQtMQ==", "unsupported", false, "15550002222", "Test User", 1760000160,
			func(t *testing.T, c, _ map[string]any) {
				errs, ok := c["errors"].([]any)
				if !ok || len(errs) != 1 {
					t.Fatalf("content errors = %#v, want one error", c["errors"])
				}
				wantField(t, errs[0], "131051", "code")
			},
		},
		{
			"unknown.json", "wamid.RkFLRS1DMTQtMg==", "unknown", false, "15550002222", "Test User", 1760000161,
			func(t *testing.T, c, _ map[string]any) {
				wantField(t, c["errors"].([]any)[0], "Fake details: this message type is not supported", "error_data", "details")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			wh := parseMeta(t, tt.file)
			if wh.Entries[0].ID != "100000000000001" {
				t.Errorf("entry id = %q, want the WABA id", wh.Entries[0].ID)
			}
			v, m := onlyMessage(t, wh)
			if v.PhoneNumberID != "200000000000002" {
				t.Errorf("phone_number_id = %q", v.PhoneNumberID)
			}
			if m.Invalid != "" {
				t.Fatalf("message invalid: %s", m.Invalid)
			}
			if m.ID != tt.id || m.Type != tt.typ || m.From != tt.from {
				t.Errorf("id, type, from = %q, %q, %q; want %q, %q, %q", m.ID, m.Type, m.From, tt.id, tt.typ, tt.from)
			}
			if m.Known != tt.known {
				t.Errorf("Known = %v, want %v", m.Known, tt.known)
			}
			if want := time.Unix(tt.sentAt, 0).UTC(); !m.SentAt.Equal(want) {
				t.Errorf("SentAt = %v, want %v", m.SentAt, want)
			}
			if got := v.ProfileName(m.From); got != tt.profile {
				t.Errorf("ProfileName = %q, want %q", got, tt.profile)
			}
			content := decodeObject(t, m.Content)
			if !m.Known {
				// The whole message minus its envelope.
				for _, envelope := range []string{"from", "id", "timestamp", "type"} {
					if _, ok := content[envelope]; ok {
						t.Errorf("content holds envelope field %q", envelope)
					}
				}
			}
			extra := map[string]any{}
			if m.Extra != nil {
				extra = decodeObject(t, m.Extra)
			}
			tt.check(t, content, extra)
		})
	}
}

func TestParseWebhookKeepsEscapes(t *testing.T) {
	_, m := onlyMessage(t, parseMeta(t, "text_escaped.json"))
	if !bytes.Contains(m.Content, []byte(`\u0040`)) || !bytes.Contains(m.Content, []byte(`\/`)) {
		t.Fatalf("content %s lost the escapes as received", m.Content)
	}
}

func TestParseWebhookContacts(t *testing.T) {
	_, m := onlyMessage(t, parseMeta(t, "contacts.json"))
	if !m.Known || m.Type != "contacts" {
		t.Fatalf("Known, Type = %v, %q; want true, contacts", m.Known, m.Type)
	}
	var cards []map[string]any
	if err := stdjson.Unmarshal(m.Content, &cards); err != nil {
		t.Fatalf("contacts content is not an array: %v", err)
	}
	if len(cards) != 1 {
		t.Fatalf("got %d contact cards, want 1", len(cards))
	}
	wantField(t, cards[0], "Erika Musterfrau", "name", "formatted_name")
	phones := cards[0]["phones"].([]any)
	wantField(t, phones[0], "15550004444", "wa_id")
	emails := cards[0]["emails"].([]any)
	wantField(t, emails[0], "erika@example.com", "email")
}

func TestParseWebhookLargeNumericIDs(t *testing.T) {
	wh := parseMeta(t, "numeric_ids.json")
	if got := wh.Entries[0].ID; got != "9007199254740993" {
		t.Errorf("entry id = %q, want 9007199254740993 (2^53+1, lost by float64)", got)
	}

	v, m := onlyMessage(t, wh)
	if v.PhoneNumberID != "123456789012345678901" {
		t.Errorf("phone_number_id = %q, want 123456789012345678901", v.PhoneNumberID)
	}
	if v.DisplayPhoneNumber != "15550001111" {
		t.Errorf("display_phone_number = %q", v.DisplayPhoneNumber)
	}
	if m.From != "98765432109876543210" {
		t.Errorf("from = %q, want 98765432109876543210", m.From)
	}
	if v.Contacts[0].WaID != "98765432109876543210" {
		t.Errorf("wa_id = %q", v.Contacts[0].WaID)
	}
	if got := v.ProfileName(m.From); got != "Big Number" {
		t.Errorf("ProfileName = %q, want Big Number", got)
	}
	if m.Timestamp != "1760000306" || !m.SentAt.Equal(time.Unix(1760000306, 0)) {
		t.Errorf("numeric timestamp = %q (%v), want 1760000306", m.Timestamp, m.SentAt)
	}

	if len(v.Statuses) != 1 {
		t.Fatalf("got %d statuses, want 1", len(v.Statuses))
	}
	s := v.Statuses[0]
	if s.Invalid != "" || s.RecipientID != "98765432109876543210" || s.Timestamp != "1760000307" {
		t.Errorf("status = %+v, want recipient 98765432109876543210 at 1760000307", s)
	}
}

func TestParseWebhookStatuses(t *testing.T) {
	t.Run("delivered without profile", func(t *testing.T) {
		wh := parseMeta(t, "status_delivered_no_profile.json")
		v := wh.Entries[0].Changes[0].Value
		if len(v.Messages) != 0 {
			t.Fatalf("got %d messages from a status-only body", len(v.Messages))
		}
		if len(v.Statuses) != 1 {
			t.Fatalf("got %d statuses, want 1", len(v.Statuses))
		}

		s := v.Statuses[0]
		if s.Invalid != "" {
			t.Fatalf("status invalid: %s", s.Invalid)
		}
		if s.ID != "wamid.RkFLRS1DMDgtb3V0LTE=" || s.Status != "delivered" || s.RecipientID != "15550002222" {
			t.Errorf("status = %+v", s)
		}
		if s.RecipientUserID != "US.FAKE0000000001" {
			t.Errorf("RecipientUserID = %q", s.RecipientUserID)
		}
		if want := time.Date(2025, 10, 9, 8, 54, 20, 0, time.UTC); !s.Time.Equal(want) {
			t.Errorf("Time = %v, want %v", s.Time, want)
		}

		pricing := decodeObject(t, s.Pricing)
		wantField(t, pricing, true, "billable")
		wantField(t, pricing, "PMP", "pricing_model")
		wantField(t, pricing, "utility", "category")
		if got := v.ProfileName("15550002222"); got != "" {
			t.Errorf("ProfileName of a contact without profile = %q, want empty", got)
		}
		if v.Contacts[0].UserID != "US.FAKE0000000001" {
			t.Errorf("contact user_id = %q", v.Contacts[0].UserID)
		}
	})

	t.Run("failed with errors", func(t *testing.T) {
		v := parseMeta(t, "statuses_failed.json").Entries[0].Changes[0].Value
		if len(v.Statuses) != 2 {
			t.Fatalf("got %d statuses, want 2", len(v.Statuses))
		}
		for i, want := range []struct{ id, code, recipient string }{
			{"wamid.RkFLRS1DMDktb3V0LTE=", "131049", "15550002222"},
			{"wamid.RkFLRS1DMDktb3V0LTI=", "131026", "15550003333"},
		} {
			s := v.Statuses[i]
			if s.ID != want.id || s.Status != "failed" || s.RecipientID != want.recipient {
				t.Errorf("status %d = %+v, want %s failed to %s", i, s, want.id, want.recipient)
			}
			var errs []map[string]any
			dec := stdjson.NewDecoder(bytes.NewReader(s.Errors))
			dec.UseNumber()
			if err := dec.Decode(&errs); err != nil || len(errs) != 1 {
				t.Fatalf("status %d errors = %s (%v), want one error", i, s.Errors, err)
			}
			wantField(t, errs[0], want.code, "code")
		}
		var first []map[string]any
		if err := stdjson.Unmarshal(v.Statuses[0].Errors, &first); err != nil {
			t.Fatal(err)
		}
		wantField(t, first[0], "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/", "href")
		wantField(t, first[0], "Fake details: delivery suppressed by engagement limits", "error_data", "details")
	})

	t.Run("sent with conversation", func(t *testing.T) {
		wh := parseMeta(t, "multi_entry.json")
		s := wh.Entries[1].Changes[0].Value.Statuses[0]
		if s.ConversationID != "CONVERSATION_FAKE_ID_1" {
			t.Errorf("ConversationID = %q", s.ConversationID)
		}
		wantField(t, decodeObject(t, s.Pricing), "CBP", "pricing_model")
	})
}

func TestParseWebhookSeveralEntriesAndChanges(t *testing.T) {
	wh := parseMeta(t, "multi_entry.json")
	if len(wh.Entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(wh.Entries))
	}
	first := wh.Entries[0]
	if len(first.Changes) != 2 {
		t.Fatalf("first entry has %d changes, want 2", len(first.Changes))
	}
	msgs := first.Changes[0].Value.Messages
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	if msgs[0].From != "15550002222" || msgs[1].From != "15550003333" {
		t.Errorf("senders = %q, %q", msgs[0].From, msgs[1].From)
	}
	if got := first.Changes[0].Value.ProfileName(msgs[0].From); got != "" {
		t.Errorf("ProfileName without contacts = %q, want empty", got)
	}
	if got := first.Changes[1].Field; got != "message_template_status_update" {
		t.Errorf("second change field = %q", got)
	}
	second := wh.Entries[1]
	if second.ID != "100000000000009" || second.Changes[0].Value.PhoneNumberID != "200000000000008" {
		t.Errorf("second entry = %s / %s", second.ID, second.Changes[0].Value.PhoneNumberID)
	}
}

func TestParseWebhookValueErrors(t *testing.T) {
	v := parseMeta(t, "value_errors.json").Entries[0].Changes[0].Value
	if v.Errors == nil {
		t.Fatal("value-level errors dropped")
	}
	if len(v.Messages) != 0 || len(v.Statuses) != 0 {
		t.Fatalf("got %d messages and %d statuses, want none", len(v.Messages), len(v.Statuses))
	}
	if got := errorCodes(v.Errors); got != "131000" {
		t.Errorf("errorCodes = %q, want 131000", got)
	}
}

// wrapMessages puts messages into the envelope of a webhook body.
func wrapMessages(messages string) []byte {
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"messages":[` +
		messages + `]}}]}]}`)
}

func TestParseWebhookUnknownTypesKept(t *testing.T) {
	tests := []struct {
		name    string
		message string
		typ     string
		want    []string // keys the content must hold
	}{
		{"future type with object", `{"from":"1","id":"w1","timestamp":"5","type":"poll","poll":{"question":"Lunch?"}}`, "poll", []string{"poll"}},
		{"known type without its object", `{"from":"1","id":"w2","timestamp":"5","type":"text","context":{"id":"w0"}}`, "text", []string{"context"}},
		{"known type with wrong kind", `{"from":"1","id":"w3","timestamp":"5","type":"image","image":"not-an-object"}`, "image", []string{"image"}},
		{"contacts as object", `{"from":"1","id":"w4","timestamp":"5","type":"contacts","contacts":{"name":"x"}}`, "contacts", []string{"contacts"}},
		{"no content at all", `{"from":"1","id":"w5","timestamp":"5","type":"request_welcome"}`, "request_welcome", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh, err := ParseWebhook(wrapMessages(tt.message))
			if err != nil {
				t.Fatal(err)
			}
			_, m := onlyMessage(t, wh)
			if m.Invalid != "" {
				t.Fatalf("message invalid: %s", m.Invalid)
			}
			if m.Known {
				t.Error("Known = true, want false")
			}
			if m.Type != tt.typ {
				t.Errorf("Type = %q, want %q", m.Type, tt.typ)
			}
			content := decodeObject(t, m.Content)
			if len(content) != len(tt.want) {
				t.Errorf("content = %s, want exactly keys %v", m.Content, tt.want)
			}
			for _, k := range tt.want {
				if _, ok := content[k]; !ok {
					t.Errorf("content %s lacks %q", m.Content, k)
				}
			}
		})
	}
}

func TestParseWebhookInvalidItems(t *testing.T) {
	valid := `{"from":"1","id":"ok","timestamp":"5","type":"text","text":{"body":"x"}}`
	tests := []struct {
		name    string
		message string
		want    string
	}{
		{"missing id", `{"from":"1","timestamp":"5","type":"text","text":{"body":"x"}}`, "missing id"},
		{"missing from", `{"id":"a","timestamp":"5","type":"text","text":{"body":"x"}}`, "missing from"},
		{"missing type", `{"from":"1","id":"a","timestamp":"5"}`, "missing type"},
		{"missing timestamp", `{"from":"1","id":"a","type":"text","text":{"body":"x"}}`, "timestamp"},
		{"fractional timestamp", `{"from":"1","id":"a","timestamp":1.5,"type":"text","text":{"body":"x"}}`, "timestamp"},
		{"negative timestamp", `{"from":"1","id":"a","timestamp":"-5","type":"text","text":{"body":"x"}}`, "timestamp"},
		{"word timestamp", `{"from":"1","id":"a","timestamp":"yesterday","type":"text","text":{"body":"x"}}`, "timestamp"},
		{"id is an object", `{"from":"1","id":{},"timestamp":"5","type":"text"}`, "id"},
		{"type is a number", `{"from":"1","id":"a","timestamp":"5","type":7}`, "type"},
		{"message is a string", `"hello"`, "not a JSON object"},
		{"message is null", `null`, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh, err := ParseWebhook(wrapMessages(tt.message + "," + valid))
			if err != nil {
				t.Fatalf("ParseWebhook failed as a whole: %v", err)
			}
			msgs := wh.Entries[0].Changes[0].Value.Messages
			if len(msgs) != 2 {
				t.Fatalf("got %d messages, want 2", len(msgs))
			}
			if !strings.Contains(msgs[0].Invalid, tt.want) {
				t.Errorf("Invalid = %q, want it to mention %q", msgs[0].Invalid, tt.want)
			}
			if msgs[1].Invalid != "" || msgs[1].ID != "ok" {
				t.Errorf("the valid message next to it = %+v, want it routable", msgs[1])
			}
		})
	}
}

func TestParseWebhookFromUserID(t *testing.T) {
	wh, err := ParseWebhook(wrapMessages(`{"from_user_id":"US.FAKE1","id":"a","timestamp":"5","type":"text","text":{"body":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, m := onlyMessage(t, wh)
	if m.Invalid != "" || m.FromUserID != "US.FAKE1" {
		t.Fatalf("message = %+v, want routable with FromUserID US.FAKE1", m)
	}
}

func TestParseWebhookInvalidStatus(t *testing.T) {
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[` +
		`{"id":"s1","timestamp":"5","recipient_id":"1"},` +
		`{"id":"s2","status":"read","timestamp":"5"},` +
		`{"id":"s3","status":"read","timestamp":"x","recipient_id":"1"},` +
		`{"id":"s4","status":7},` +
		`{"id":"s5","status":"read","timestamp":"5","recipient_id":"1"}]}}]}]}`)
	wh, err := ParseWebhook(body)
	if err != nil {
		t.Fatal(err)
	}
	statuses := wh.Entries[0].Changes[0].Value.Statuses
	wants := []string{"missing status", "missing recipient_id", "timestamp", "status shape", ""}
	if len(statuses) != len(wants) {
		t.Fatalf("got %d statuses, want %d", len(statuses), len(wants))
	}
	for i, want := range wants {
		if want == "" {
			if statuses[i].Invalid != "" {
				t.Errorf("status %d invalid: %s", i, statuses[i].Invalid)
			}
			continue
		}
		if !strings.Contains(statuses[i].Invalid, want) {
			t.Errorf("status %d Invalid = %q, want it to mention %q", i, statuses[i].Invalid, want)
		}
	}
}

func TestParseWebhookRejectsBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty", ``, ErrInvalidWebhook},
		{"not JSON", `hello`, ErrInvalidWebhook},
		{"array", `[]`, ErrInvalidWebhook},
		{"truncated", `{"object":"whatsapp_business_account","entry":[`, ErrInvalidWebhook},
		{"trailing data", `{"object":"whatsapp_business_account","entry":[]} {}`, ErrInvalidWebhook},
		{"entry not an array", `{"object":"whatsapp_business_account","entry":{}}`, ErrInvalidWebhook},
		{"messages not an array", `{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":{}}}]}]}`, ErrInvalidWebhook},
		{"other object", `{"object":"page","entry":[]}`, ErrNotWhatsApp},
		{"missing object", `{"entry":[]}`, ErrNotWhatsApp},
		{"object in other case", `{"OBJECT":"whatsapp_business_account","entry":[]}`, ErrNotWhatsApp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWebhook([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseWebhook error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseWebhookEmptyNotification(t *testing.T) {
	wh, err := ParseWebhook([]byte(`{"object":"whatsapp_business_account","entry":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(wh.Entries) != 0 {
		t.Fatalf("got %d entries, want 0", len(wh.Entries))
	}
}

func TestParseWebhookEveryTestdataBody(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "meta", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d bodies in testdata/meta, want at least 20", len(files))
	}
	for _, f := range files {
		wh := parseMeta(t, filepath.Base(f))
		for _, e := range wh.Entries {
			for _, c := range e.Changes {
				for _, m := range c.Value.Messages {
					if m.Invalid != "" {
						t.Errorf("%s: message %s invalid: %s", f, m.ID, m.Invalid)
					}
				}
				for _, s := range c.Value.Statuses {
					if s.Invalid != "" {
						t.Errorf("%s: status %s invalid: %s", f, s.ID, s.Invalid)
					}
				}
			}
		}
	}
}
