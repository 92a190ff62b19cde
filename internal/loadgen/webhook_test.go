package loadgen

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/config"
)

const testAppSecret = config.Secret("test_app_secret_for_loadgen")

func fixedClock() time.Time { return time.Unix(1760000000, 0) }

func newTestWebhookFactory(t *testing.T, seed int64, accounts int) *WebhookFactory {
	t.Helper()
	f, err := NewWebhookFactory(seed, ExampleAccounts(testAppSecret, accounts), WithClock(fixedClock))
	if err != nil {
		t.Fatalf("NewWebhookFactory: %v", err)
	}
	return f
}

// verifySignature checks X-Hub-Signature-256 as ingest does: HMAC-SHA256 of
// the exact body bytes, compared in constant time.
func verifySignature(secret []byte, req Request) bool {
	header := req.Header.Get("X-Hub-Signature-256")
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(req.Body)
	return hmac.Equal(got, m.Sum(nil))
}

// parsedNotification is the decoded view of a webhook that tests inspect.
type parsedNotification struct {
	types    []string // message types; interactive ones as "interactive/<subtype>"
	statuses []StatusRef
	ids      []string
	strings  []string // every string value anywhere in the body
	entries  int
	changes  int
	phoneIDs []string
}

func parseNotification(t *testing.T, body []byte) parsedNotification {
	t.Helper()
	var n waNotification
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		t.Fatalf("body is not a webhook notification: %v\n%s", err, body)
	}

	var p parsedNotification
	p.entries = len(n.Entry)
	for _, e := range n.Entry {
		for _, c := range e.Changes {
			p.changes++
			p.phoneIDs = append(p.phoneIDs, c.Value.Metadata.PhoneNumberID)
			for _, m := range c.Value.Messages {
				typ := m.Type
				if m.Interactive != nil {
					typ += "/" + m.Interactive.Type
				}
				if m.Reaction != nil && m.Reaction.Emoji == "" {
					typ += "/removed"
				}
				p.types = append(p.types, typ)
				p.ids = append(p.ids, m.ID)
				if !regexp.MustCompile(`^[0-9]{10}$`).MatchString(m.Timestamp) {
					t.Errorf("message %s: timestamp %q is not Unix seconds as a string", m.ID, m.Timestamp)
				}
			}
			for _, s := range c.Value.Statuses {
				p.statuses = append(p.statuses, StatusRef{MessageID: s.ID, Status: s.Status, Account: c.Value.Metadata.PhoneNumberID})
				if s.Status == "failed" && len(s.Errors) == 0 {
					t.Errorf("failed status %s has no errors", s.ID)
				}
			}
		}
	}

	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		t.Fatal(err)
	}
	collectStrings(generic, &p.strings)
	return p
}

func collectStrings(v any, out *[]string) {
	switch v := v.(type) {
	case string:
		*out = append(*out, v)
	case []any:
		for _, x := range v {
			collectStrings(x, out)
		}
	case map[string]any:
		for _, x := range v {
			collectStrings(x, out)
		}
	}
}

func TestWebhookCoversEveryType(t *testing.T) {
	f := newTestWebhookFactory(t, 1, 3)
	seen := map[string]int{}
	shapes := map[string]int{}
	for range 600 {
		req := f.Next()
		p := parseNotification(t, req.Body)
		for _, typ := range p.types {
			seen[typ]++
		}
		for _, s := range p.statuses {
			seen["status/"+s.Status]++
		}
		switch {
		case p.entries == 2:
			shapes["two entries"]++
		case p.changes == 2:
			shapes["two changes"]++
		}
	}
	want := []string{
		"text", "image", "document", "audio", "video", "sticker", "location",
		"contacts", "interactive/button_reply", "interactive/list_reply",
		"button", "reaction", "reaction/removed", "unsupported",
		"status/sent", "status/delivered", "status/read", "status/failed",
	}
	for _, typ := range want {
		if seen[typ] == 0 {
			t.Errorf("no %s in 600 notifications; seen %v", typ, seen)
		}
	}
	if seen["text"] < seen["image"]*3 {
		t.Errorf("text (%d) should dominate image (%d)", seen["text"], seen["image"])
	}
	for _, shape := range []string{"two entries", "two changes"} {
		if shapes[shape] == 0 {
			t.Errorf("no notification with %s in 600", shape)
		}
	}
}

var (
	upperEscape = regexp.MustCompile(`\\u[0-9a-f]{0,3}[A-F]`)
	rawSlash    = regexp.MustCompile(`[^\\]/`)
)

func TestWebhookMetaByteForm(t *testing.T) {
	f := newTestWebhookFactory(t, 2, 2)
	var escapes, slashes int
	for range 300 {
		body := f.Next().Body
		for i, b := range body {
			if b >= 0x80 {
				t.Fatalf("raw non-ASCII byte at %d in %s", i, body)
			}
		}
		if bytes.IndexByte(body, '@') >= 0 {
			t.Fatalf("raw '@' in %s", body)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			t.Fatalf("body is not JSON: %v", err)
		}
		if !bytes.Equal(compact.Bytes(), body) {
			t.Fatalf("body is not compact: %s", body)
		}
		if m := rawSlash.Find(body); m != nil {
			t.Fatalf("unescaped '/' (%q) in %s", m, body)
		}
		if m := upperEscape.Find(body); m != nil {
			t.Fatalf("uppercase \\u escape %q in %s", m, body)
		}
		escapes += bytes.Count(body, []byte(`\u`))
		slashes += bytes.Count(body, []byte(`\/`))
	}
	if escapes == 0 || slashes == 0 {
		t.Errorf("300 notifications had %d \\u escapes and %d escaped slashes; both should occur", escapes, slashes)
	}
}

func TestWebhookSignatures(t *testing.T) {
	f := newTestWebhookFactory(t, 3, 2)
	secret := []byte(testAppSecret.Reveal())
	for range 200 {
		req := f.Next()
		if !verifySignature(secret, req) {
			t.Fatalf("valid notification does not verify: %s", req.Header.Get("X-Hub-Signature-256"))
		}
		if req.Method != "POST" || req.Path != WebhookPath {
			t.Fatalf("request line = %s %s", req.Method, req.Path)
		}
		if got := req.Header.Get("Content-Type"); got != "application/json" {
			t.Fatalf("Content-Type = %q", got)
		}
	}
	for range 200 {
		req := f.Forged()
		if req.Kind != KindForged {
			t.Fatalf("forged Kind = %s", req.Kind)
		}
		if verifySignature(secret, req) {
			t.Fatalf("forged notification verifies; headers %v", req.Header)
		}
		parseNotification(t, req.Body)
	}
}

func TestWebhookRequestContents(t *testing.T) {
	f := newTestWebhookFactory(t, 4, 2)
	ids := map[string]bool{}
	for range 400 {
		req := f.Next()
		p := parseNotification(t, req.Body)
		if !slices.Equal(req.MessageIDs(), p.ids) {
			t.Fatalf("MessageIDs = %v, body has %v", req.MessageIDs(), p.ids)
		}
		if !slices.Equal(req.Statuses, p.statuses) {
			t.Fatalf("Statuses = %v, body has %v", req.Statuses, p.statuses)
		}
		for _, s := range req.Plaintexts {
			// Coordinates are JSON numbers, so they are found in the raw body.
			inString := slices.ContainsFunc(p.strings, func(x string) bool { return strings.Contains(x, s) })
			if !inString && !bytes.Contains(req.Body, []byte(`:`+s+`,`)) {
				t.Fatalf("plaintext %q not in body %s", s, req.Body)
			}
		}
		for _, s := range req.Personal {
			if !slices.Contains(p.strings, s) {
				t.Fatalf("personal value %q not in body %s", s, req.Body)
			}
		}
		for _, id := range p.ids {
			if ids[id] {
				t.Fatalf("message id %s repeats", id)
			}
			ids[id] = true
			tag, ok := strings.CutPrefix(id, "wamid.")
			if !ok {
				t.Fatalf("message id %q lacks the wamid. prefix", id)
			}
			if _, err := base64.StdEncoding.DecodeString(tag); err != nil {
				t.Fatalf("message id %q: tag is not base64: %v", id, err)
			}
		}
	}
}

func TestWebhookStatusOrder(t *testing.T) {
	f := newTestWebhookFactory(t, 5, 1)
	next := map[string][]string{
		"":          {"sent"},
		"sent":      {"delivered", "failed"},
		"delivered": {"read"},
	}
	last := map[string]string{}
	for range 500 {
		for _, s := range f.Next().Statuses {
			if !slices.Contains(next[last[s.MessageID]], s.Status) {
				t.Fatalf("status %s of %s follows %q", s.Status, s.MessageID, last[s.MessageID])
			}
			last[s.MessageID] = s.Status
		}
	}
}

func TestWebhookDeterministic(t *testing.T) {
	a := newTestWebhookFactory(t, 6, 3)
	b := newTestWebhookFactory(t, 6, 3)
	c := newTestWebhookFactory(t, 7, 3)
	for i := range 100 {
		ra, rb, rc := a.Next(), b.Next(), c.Next()
		if !bytes.Equal(ra.Body, rb.Body) {
			t.Fatalf("draw %d differs for the same seed:\n%s\n%s", i, ra.Body, rb.Body)
		}
		for _, id := range rc.MessageIDs() {
			if slices.Contains(ra.MessageIDs(), id) {
				t.Fatalf("seeds 6 and 7 share message id %s", id)
			}
		}
	}
}

func TestWebhookRedelivery(t *testing.T) {
	f := newTestWebhookFactory(t, 8, 1)
	first := f.Redelivery()
	if first.Kind != KindWebhook {
		t.Fatalf("first Redelivery Kind = %s, want %s", first.Kind, KindWebhook)
	}
	bodies := map[string]bool{string(first.Body): true}
	for range 20 {
		bodies[string(f.Next().Body)] = true
	}
	for range 50 {
		bodies[string(f.Forged().Body)] = false
	}
	for range 50 {
		r := f.Redelivery()
		if r.Kind != KindRedelivery {
			t.Fatalf("Kind = %s, want %s", r.Kind, KindRedelivery)
		}
		if !bodies[string(r.Body)] {
			t.Fatalf("redelivered body was not generated as a valid notification: %s", r.Body)
		}
		if !verifySignature([]byte(testAppSecret.Reveal()), r) {
			t.Fatal("redelivery does not verify")
		}
	}
}

func TestWebhookForAccount(t *testing.T) {
	f := newTestWebhookFactory(t, 9, 3)
	accounts := ExampleAccounts(testAppSecret, 3)
	only, err := f.ForAccount(accounts[1].PhoneNumberID)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		for _, req := range []Request{only.Next(), only.NextText(), only.Forged()} {
			for _, id := range parseNotification(t, req.Body).phoneIDs {
				if id != accounts[1].PhoneNumberID {
					t.Fatalf("phone number id %s, want only %s", id, accounts[1].PhoneNumberID)
				}
			}
		}
	}
	if _, err := f.ForAccount("999"); err == nil {
		t.Error("ForAccount of an unknown account: want an error")
	}
}

func TestNewWebhookFactoryRejects(t *testing.T) {
	good := ExampleAccounts(testAppSecret, 1)[0]
	cases := map[string]func(a *Account){
		"no secret":    func(a *Account) { a.AppSecret = "" },
		"no customers": func(a *Account) { a.Customers = nil },
		"no WABA id":   func(a *Account) { a.WABAID = "" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			a := good
			mutate(&a)
			if _, err := NewWebhookFactory(1, []Account{a}); err == nil {
				t.Error("want an error")
			}
		})
	}
	if _, err := NewWebhookFactory(1, nil); err == nil {
		t.Error("no accounts: want an error")
	}
}

func TestExampleAccountsMatchCases(t *testing.T) {
	a := ExampleAccounts(testAppSecret, 2)
	first := a[0]
	if first.WABAID != "100000000000001" || first.PhoneNumberID != "200000000000002" || first.DisplayNumber != "15550001111" {
		t.Errorf("first account = %s/%s/%s", first.WABAID, first.PhoneNumberID, first.DisplayNumber)
	}
	if c := first.Customers[0]; c != (Customer{WAID: "15550002222", Name: "Test User"}) {
		t.Errorf("first customer = %+v", c)
	}
	if c := first.Customers[1]; c != (Customer{WAID: "15550003333", Name: "Second Tester"}) {
		t.Errorf("second customer = %+v", c)
	}
	seen := map[string]bool{}
	for _, acc := range a {
		for _, c := range acc.Customers {
			if seen[c.WAID] || len(c.WAID) != 11 {
				t.Errorf("customer id %q repeats or is not 11 digits", c.WAID)
			}
			seen[c.WAID] = true
		}
	}
}
