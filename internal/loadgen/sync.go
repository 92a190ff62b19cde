package loadgen

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// TokenSigner mints access tokens for sync devices. Signer implements it.
type TokenSigner interface {
	// SignToken returns a bearer token for the subject's device and the
	// time it expires.
	SignToken(subject, deviceID string) (token string, expiresAt time.Time, err error)
}

const (
	// tokenRefreshMargin is how long before expiry a device replaces its
	// cached token.
	tokenRefreshMargin = 2 * time.Minute
	// recentEvents is how many event ids per device edits, deletions,
	// reactions and read receipts refer back to.
	recentEvents = 16
)

// SyncFactory generates batches of sync-client events with bearer tokens.
// It is safe for concurrent use. Event content, ids and encryption are
// deterministic for a seed and clock, but tokens come from the TokenSigner.
type SyncFactory struct {
	mu             sync.Mutex
	rng            *rand.Rand
	src            *rand.ChaCha8
	now            func() time.Time
	signer         TokenSigner
	devices        []*syncDevice
	maxEvents      int
	encryptedShare float64
}

// syncDevice is a device's client state: its conversations, its end-to-end
// key, its cached token and the ids of its latest events.
type syncDevice struct {
	Device
	conversations []string
	keyID         string
	aead          cipher.AEAD
	token         string
	tokenExpiry   time.Time
	recent        []string
}

// NewSyncFactory returns a factory for the given devices. Each device gets
// its own AES-256 client key, generated from the seed, for the events it
// encrypts end to end.
func NewSyncFactory(seed int64, devices []Device, signer TokenSigner, opts ...Option) (*SyncFactory, error) {
	if len(devices) == 0 {
		return nil, errors.New("new sync factory: at least one device is required")
	}
	if signer == nil {
		return nil, errors.New("new sync factory: a token signer is required")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxEvents < 1 {
		return nil, fmt.Errorf("new sync factory: max events must be at least 1, got %d", o.maxEvents)
	}
	if o.encryptedShare < 0 || o.encryptedShare > 1 {
		return nil, fmt.Errorf("new sync factory: encrypted share must be between 0 and 1, got %g", o.encryptedShare)
	}

	rng, src := newSeededRand(seed, "sync")
	f := &SyncFactory{
		rng:            rng,
		src:            src,
		now:            o.now,
		signer:         signer,
		maxEvents:      o.maxEvents,
		encryptedShare: o.encryptedShare,
	}
	for _, d := range devices {
		if d.ID == "" || d.Subject == "" {
			return nil, errors.New("new sync factory: every device needs an id and a subject")
		}
		key := make([]byte, 32)
		_, _ = src.Read(key)
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("new sync factory: create client key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("new sync factory: create client key: %w", err)
		}
		sd := &syncDevice{Device: d, keyID: "ck-" + d.ID + "-1", aead: aead}
		for range 4 {
			sd.conversations = append(sd.conversations, "conv-"+f.hexString(6))
		}
		f.devices = append(f.devices, sd)
	}
	return f, nil
}

// syncEvent is one event as a sync client sends it. Exactly one of Content
// and Encrypted is set.
type syncEvent struct {
	EventID        string         `json:"event_id"`
	Type           string         `json:"type"`
	OccurredAt     string         `json:"occurred_at"`
	DeviceID       string         `json:"device_id"`
	ConversationID string         `json:"conversation_id"`
	Content        *syncContent   `json:"content,omitempty"`
	Encrypted      *syncEncrypted `json:"encrypted,omitempty"`
}

type syncContent struct {
	Text          string `json:"text,omitempty"`
	Title         string `json:"title,omitempty"`
	Body          string `json:"body,omitempty"`
	Emoji         string `json:"emoji,omitempty"`
	TargetEventID string `json:"target_event_id,omitempty"`
	UpToEventID   string `json:"up_to_event_id,omitempty"`
}

// syncEncrypted is an end-to-end encrypted content object: AES-256-GCM
// with the event id as additional data, and the SHA-256 of the decoded
// ciphertext (tag included), so the server can check integrity without the
// key.
type syncEncrypted struct {
	Alg        string `json:"alg"`
	IV         string `json:"iv"`
	Ciphertext string `json:"ciphertext"`
	KeyID      string `json:"key_id"`
	Checksum   string `json:"checksum"`
}

// syncEventTypes are the sync event types with their weights.
var syncEventTypes = []weighted[string]{
	{"message.created", 50},
	{"receipt.read", 20},
	{"reaction.added", 12},
	{"message.edited", 8},
	{"message.deleted", 5},
	{"note.updated", 5},
}

// Next returns a batch of 1 to the configured maximum of events from one
// device, as a JSON array, with the device's bearer token. It returns an
// error only when the TokenSigner fails.
func (f *SyncFactory) Next() (Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	dev := f.devices[f.rng.IntN(len(f.devices))]
	token, err := f.token(dev)
	if err != nil {
		return Request{}, err
	}

	// Cubing a uniform number skews sizes towards small batches.
	u := f.rng.Float64()
	n := 1 + int(float64(f.maxEvents-1)*u*u*u)
	req := Request{Kind: KindSync, Method: http.MethodPost, Path: SyncPath}
	events := make([]syncEvent, 0, n)
	for range n {
		events = append(events, f.event(dev, &req))
	}

	body, err := json.Marshal(events)
	if err != nil {
		panic("BUG: sync event types must always encode: " + err.Error())
	}
	req.Body = body
	req.Header = http.Header{}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Device-ID", dev.ID)
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return req, nil
}

func (f *SyncFactory) token(dev *syncDevice) (string, error) {
	if dev.token != "" && f.now().Add(tokenRefreshMargin).Before(dev.tokenExpiry) {
		return dev.token, nil
	}
	token, exp, err := f.signer.SignToken(dev.Subject, dev.ID)
	if err != nil {
		return "", fmt.Errorf("sign token for device %s: %w", dev.ID, err)
	}
	dev.token, dev.tokenExpiry = token, exp
	return token, nil
}

// event builds one event of dev and records it in req.
func (f *SyncFactory) event(dev *syncDevice, req *Request) syncEvent {
	typ := pickWeighted(f.rng, syncEventTypes)
	ev := syncEvent{
		EventID:        f.uuid(),
		Type:           typ,
		OccurredAt:     f.now().Add(-time.Duration(f.rng.IntN(3000)) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		DeviceID:       dev.ID,
		ConversationID: pick(f.rng, dev.conversations),
	}

	target := ev.EventID
	if len(dev.recent) > 0 {
		target = pick(f.rng, dev.recent)
	}
	c := &syncContent{}
	var plain []string
	switch typ {
	case "message.created":
		c.Text = fillTemplate(f.rng, pick(f.rng, textTemplates))
		plain = []string{c.Text}
	case "message.edited":
		c.Text = fillTemplate(f.rng, pick(f.rng, textTemplates)) + " (edited)"
		c.TargetEventID = target
		plain = []string{c.Text}
	case "message.deleted":
		c.TargetEventID = target
	case "reaction.added":
		c.Emoji = pick(f.rng, reactionEmoji)
		c.TargetEventID = target
		plain = []string{c.Emoji}
	case "receipt.read":
		c.UpToEventID = target
	case "note.updated":
		c.Title = "Notes " + fillTemplate(f.rng, "{d}")
		c.Body = fillTemplate(f.rng, pick(f.rng, textTemplates))
		plain = []string{c.Title, c.Body}
	}

	encrypted := len(plain) > 0 && f.rng.Float64() < f.encryptedShare
	if encrypted {
		ev.Encrypted = f.encrypt(dev, ev.EventID, c)
	} else {
		ev.Content = c
		req.Plaintexts = append(req.Plaintexts, plain...)
	}

	if len(dev.recent) < recentEvents {
		dev.recent = append(dev.recent, ev.EventID)
	} else {
		dev.recent[f.rng.IntN(recentEvents)] = ev.EventID
	}
	req.Messages = append(req.Messages, MessageRef{ID: ev.EventID, Type: typ, Account: dev.ID, Encrypted: encrypted})
	return ev
}

// encrypt seals the content as the client would before sending it.
//
// NOTE: client keys and IVs come from the seeded stream, not crypto/rand,
// so that runs are reproducible. An IV repeats only when the whole stream
// repeats (same seed), and then with the same key and plaintext. That is
// acceptable for test traffic and wrong for a real client.
func (f *SyncFactory) encrypt(dev *syncDevice, eventID string, c *syncContent) *syncEncrypted {
	plaintext, err := json.Marshal(c)
	if err != nil {
		panic("BUG: sync content must always encode: " + err.Error())
	}
	iv := make([]byte, dev.aead.NonceSize())
	_, _ = f.src.Read(iv)
	ciphertext := dev.aead.Seal(nil, iv, plaintext, []byte(eventID))
	sum := sha256.Sum256(ciphertext)
	return &syncEncrypted{
		Alg:        "A256GCM",
		IV:         base64.StdEncoding.EncodeToString(iv),
		Ciphertext: base64.StdEncoding.EncodeToString(ciphertext),
		KeyID:      dev.keyID,
		Checksum:   "sha256:" + hex.EncodeToString(sum[:]),
	}
}

// uuid returns a random (version 4) UUID drawn from the seeded stream.
func (f *SyncFactory) uuid() string {
	var b [16]byte
	_, _ = f.src.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (f *SyncFactory) hexString(n int) string {
	b := make([]byte, n)
	_, _ = f.src.Read(b)
	return hex.EncodeToString(b)
}
