package loadgen

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Meta's legacy X-Hub-Signature header is HMAC-SHA1.
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	// historySize is how many valid webhooks Redelivery picks from.
	historySize = 256
	// maxOutbound bounds the outbound messages whose statuses are pending.
	maxOutbound = 64
)

// WebhookFactory generates signed WhatsApp Cloud API webhook notifications.
// It is safe for concurrent use. For a given seed, accounts and clock it
// produces the same bytes for the same sequence of calls.
type WebhookFactory struct {
	w *webhookState
	// only lists the indices of the accounts this factory generates for.
	// Nil means every account.
	only []int
}

// webhookState is the generator state that a factory and the views that
// ForAccount returns share.
type webhookState struct {
	mu       sync.Mutex
	rng      *rand.Rand
	src      *rand.ChaCha8
	now      func() time.Time
	accounts []Account
	// idPrefix starts every message id tag, so that runs with different
	// seeds never produce the same message id.
	idPrefix string
	seq      uint64
	outbound []outboundMessage
	history  []Request
	histNext int
}

// outboundMessage is a business message whose delivery statuses the
// factory reports, in order: sent, delivered, read, or sent then failed.
type outboundMessage struct {
	id        string
	account   int
	recipient Customer
	last      string
}

// NewWebhookFactory returns a factory for the given accounts. Every account
// needs a WABA id, a phone number id, a display number, an app secret and
// at least one customer.
func NewWebhookFactory(seed int64, accounts []Account, opts ...Option) (*WebhookFactory, error) {
	if len(accounts) == 0 {
		return nil, errors.New("new webhook factory: at least one account is required")
	}
	for i, a := range accounts {
		switch {
		case a.WABAID == "" || a.PhoneNumberID == "" || a.DisplayNumber == "":
			return nil, fmt.Errorf("new webhook factory: account %d: WABA id, phone number id and display number are required", i)
		case a.AppSecret == "":
			return nil, fmt.Errorf("new webhook factory: account %s: app secret is required", a.WABAID)
		case len(a.Customers) == 0:
			return nil, fmt.Errorf("new webhook factory: account %s: at least one customer is required", a.WABAID)
		}
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	rng, src := newSeededRand(seed, "webhook")
	return &WebhookFactory{w: &webhookState{
		rng:      rng,
		src:      src,
		now:      o.now,
		accounts: append([]Account(nil), accounts...),
		idPrefix: fmt.Sprintf("LG-%016x", uint64(seed)),
	}}, nil
}

// ForAccount returns a factory whose Next, NextText and Forged generate
// notifications of one account only, identified by its phone number id.
// It shares its state with f: message ids stay unique across both, and
// Redelivery repeats notifications of any account.
func (f *WebhookFactory) ForAccount(phoneNumberID string) (*WebhookFactory, error) {
	for i, a := range f.w.accounts {
		if a.PhoneNumberID == phoneNumberID {
			return &WebhookFactory{w: f.w, only: []int{i}}, nil
		}
	}
	return nil, fmt.Errorf("webhook factory: no account with phone number id %q", phoneNumberID)
}

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" and the
// lowercase hex HMAC-SHA256 of the exact bytes, keyed with the app secret.
func Sign(appSecret, body []byte) string {
	m := hmac.New(sha256.New, appSecret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signSHA1(appSecret, body []byte) string {
	m := hmac.New(sha1.New, appSecret)
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// Next returns a new validly signed notification. Most carry one inbound
// message or one or two statuses. About one in ten carries two changes in
// one entry, or two entries when several accounts share an app secret.
func (f *WebhookFactory) Next() Request {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.next(f.only)
}

// NextText returns a validly signed notification with one text message.
func (f *WebhookFactory) NextText() Request {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &draft{}
	ai := w.pickAccount(f.only)
	d.note.Entry = []waEntry{w.entry(ai, w.messageChange(d, ai, "text"))}
	req := w.signed(d, ai)
	w.remember(req)
	return req
}

// Redelivery returns an earlier valid notification again, with the same
// body bytes and headers, as Meta does when it retries. Before any valid
// notification exists it returns a new one, whose Kind is KindWebhook.
func (f *WebhookFactory) Redelivery() Request {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.history) == 0 {
		return w.next(f.only)
	}
	req := w.history[w.rng.IntN(len(w.history))]
	req.Kind = KindRedelivery
	req.Header = req.Header.Clone()
	return req
}

// forgeries are the ways Forged breaks the signature, with their weights.
var forgeries = []weighted[string]{
	{"wrong_secret", 60},
	{"tampered_body", 15},
	{"missing", 10},
	{"truncated", 10},
	{"legacy_only", 5},
}

// Forged returns a notification that ingest must reject: signed with the
// wrong secret, altered after signing, unsigned, with a truncated signature,
// or with only the legacy SHA-1 header. Forged notifications are never
// redelivered.
func (f *WebhookFactory) Forged() Request {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &draft{}
	ai := w.pickAccount(f.only)
	d.note.Entry = []waEntry{w.entry(ai, w.messageChange(d, ai, pickWeighted(w.rng, messageTypes)))}
	req := w.signed(d, ai)
	req.Kind = KindForged
	switch pickWeighted(w.rng, forgeries) {
	case "wrong_secret":
		wrong := make([]byte, 16)
		_, _ = w.src.Read(wrong)
		key := []byte(hex.EncodeToString(wrong))
		req.Header.Set("X-Hub-Signature-256", Sign(key, req.Body))
		req.Header.Set("X-Hub-Signature", signSHA1(key, req.Body))
	case "tampered_body":
		msg := &d.note.Entry[0].Changes[0].Value.Messages[0]
		msg.Type, msg.Text = "text", &waText{Body: "Please pay the invoice at https://pay.example.net/" + strconv.Itoa(w.rng.IntN(1e6))}
		clearContent(msg)
		tampered := mustMarshalMeta(&d.note)
		req.Body = tampered
		req.Messages[0].Type = "text"
		req.Plaintexts = []string{msg.Text.Body}
		req.Header.Set("Content-Length", strconv.Itoa(len(tampered)))
	case "missing":
		req.Header.Del("X-Hub-Signature-256")
		req.Header.Del("X-Hub-Signature")
	case "truncated":
		// The legacy header stays valid: ingest must not fall back to it.
		sig := req.Header.Get("X-Hub-Signature-256")
		req.Header.Set("X-Hub-Signature-256", sig[:len("sha256=")+32])
	case "legacy_only":
		// The legacy header stays valid: ingest must not accept it alone.
		req.Header.Del("X-Hub-Signature-256")
	}
	return req
}

func (w *webhookState) pickAccount(only []int) int {
	if only != nil {
		return only[w.rng.IntN(len(only))]
	}
	return w.rng.IntN(len(w.accounts))
}

func (w *webhookState) next(only []int) Request {
	d := &draft{}
	first := w.pickAccount(only)
	shape := w.rng.Float64()
	second := -1
	if only == nil && len(w.accounts) > 1 {
		second = (first + 1 + w.rng.IntN(len(w.accounts)-1)) % len(w.accounts)
		if w.accounts[second].AppSecret != w.accounts[first].AppSecret {
			// One POST is signed with one app secret, so only accounts of
			// the same app share a notification.
			second = -1
		}
	}
	switch {
	case shape < 0.04 && second >= 0:
		d.note.Entry = []waEntry{
			w.entry(first, w.change(d, first)),
			w.entry(second, w.change(d, second)),
		}
	case shape < 0.10:
		d.note.Entry = []waEntry{w.entry(first, w.change(d, first), w.change(d, first))}
	default:
		d.note.Entry = []waEntry{w.entry(first, w.change(d, first))}
	}
	req := w.signed(d, first)
	w.remember(req)
	return req
}

// clearContent removes every content field but Text from msg.
func clearContent(msg *waMessage) {
	text := msg.Text
	*msg = waMessage{From: msg.From, ID: msg.ID, Timestamp: msg.Timestamp, Type: msg.Type, Text: text}
}

func (w *webhookState) remember(req Request) {
	if len(w.history) < historySize {
		w.history = append(w.history, req)
		return
	}
	w.history[w.histNext] = req
	w.histNext = (w.histNext + 1) % historySize
}

// signed encodes the draft and signs it with the app secret of account ai.
func (w *webhookState) signed(d *draft, ai int) Request {
	d.note.Object = "whatsapp_business_account"
	body := mustMarshalMeta(&d.note)
	secret := []byte(w.accounts[ai].AppSecret.Reveal())
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "facebookexternalua")
	h.Set("X-Hub-Signature", signSHA1(secret, body))
	h.Set("X-Hub-Signature-256", Sign(secret, body))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return Request{
		Kind:       KindWebhook,
		Method:     http.MethodPost,
		Path:       WebhookPath,
		Header:     h,
		Body:       body,
		Messages:   d.messages,
		Statuses:   d.statuses,
		Plaintexts: d.plaintexts,
		Personal:   d.personal,
	}
}

func mustMarshalMeta(v any) []byte {
	b, err := MarshalMeta(v)
	if err != nil {
		panic("BUG: webhook payload types must always encode: " + err.Error())
	}
	return b
}

// draft collects a notification and what it carries while it is built.
type draft struct {
	note       waNotification
	messages   []MessageRef
	statuses   []StatusRef
	plaintexts []string
	personal   []string
}

func (d *draft) plain(s ...string) {
	for _, x := range s {
		if x != "" {
			d.plaintexts = append(d.plaintexts, x)
		}
	}
}

func (w *webhookState) entry(ai int, changes ...waChange) waEntry {
	if len(changes) == 0 {
		panic("BUG: an entry needs a change")
	}
	return waEntry{ID: w.accounts[ai].WABAID, Changes: changes}
}

// change returns a messages change (60%) or a statuses change (40%).
func (w *webhookState) change(d *draft, ai int) waChange {
	if w.rng.Float64() < 0.6 {
		return w.messageChange(d, ai, pickWeighted(w.rng, messageTypes))
	}
	return w.statusChange(d, ai)
}

func (w *webhookState) value(ai int) waValue {
	a := w.accounts[ai]
	return waValue{
		MessagingProduct: "whatsapp",
		Metadata:         waMetadata{DisplayPhoneNumber: a.DisplayNumber, PhoneNumberID: a.PhoneNumberID},
	}
}

func (w *webhookState) messageChange(d *draft, ai int, kind string) waChange {
	a := w.accounts[ai]
	c := a.Customers[w.rng.IntN(len(a.Customers))]
	v := w.value(ai)
	v.Contacts = []waContact{{Profile: &waProfile{Name: c.Name}, WAID: c.WAID}}
	msg := w.message(d, ai, c, kind)
	v.Messages = []waMessage{msg}
	d.messages = append(d.messages, MessageRef{ID: msg.ID, Type: msg.Type, Account: a.PhoneNumberID})
	d.personal = append(d.personal, c.WAID, c.Name)
	return waChange{Value: v, Field: "messages"}
}

// newID returns a message id: "wamid." and the base64 of a tag that is
// unique for this factory's seed.
func (w *webhookState) newID(direction string) string {
	w.seq++
	tag := fmt.Sprintf("%s-%s-%d", w.idPrefix, direction, w.seq)
	return "wamid." + base64.StdEncoding.EncodeToString([]byte(tag))
}

// timestamp returns the current time, up to two seconds earlier, as the
// decimal Unix seconds string that Meta sends.
func (w *webhookState) timestamp() string {
	return strconv.FormatInt(w.now().Unix()-int64(w.rng.IntN(3)), 10)
}
