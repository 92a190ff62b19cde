package loadgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestSyncFactory(t *testing.T, seed int64, opts ...Option) (*SyncFactory, []byte) {
	t.Helper()
	s, jwks, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewSyncFactory(seed, ExampleDevices(6), s, opts...)
	if err != nil {
		t.Fatalf("NewSyncFactory: %v", err)
	}
	return f, jwks
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSyncBatches(t *testing.T) {
	f, jwks := newTestSyncFactory(t, 1, WithMaxEvents(10))
	types := map[string]int{}
	var encrypted, plain, sizes int
	ids := map[string]bool{}
	for range 200 {
		req, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		if req.Method != "POST" || req.Path != SyncPath || req.Kind != KindSync {
			t.Fatalf("request = %s %s %s", req.Kind, req.Method, req.Path)
		}
		device := req.Header.Get("X-Device-ID")
		token, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok {
			t.Fatalf("Authorization = %q", req.Header.Get("Authorization"))
		}
		_, claims, err := parseAccessToken(t, jwks, token)
		if err != nil {
			t.Fatalf("token does not verify: %v", err)
		}
		if claims["device_id"] != device {
			t.Fatalf("device_id claim %v, X-Device-ID %s", claims["device_id"], device)
		}

		var events []map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(req.Body))
		if err := dec.Decode(&events); err != nil {
			t.Fatalf("body is not a JSON array of objects: %v", err)
		}
		if len(events) < 1 || len(events) > 10 || len(events) != len(req.Messages) {
			t.Fatalf("%d events, %d refs, want 1..10 and equal", len(events), len(req.Messages))
		}
		sizes += len(events)
		for i, ev := range events {
			var e syncEvent
			raw, _ := json.Marshal(ev)
			strict := json.NewDecoder(bytes.NewReader(raw))
			strict.DisallowUnknownFields()
			if err := strict.Decode(&e); err != nil {
				t.Fatalf("event has unknown fields: %v", err)
			}
			if e.EventID != req.Messages[i].ID || e.Type != req.Messages[i].Type || e.DeviceID != device {
				t.Fatalf("event %+v does not match ref %+v and device %s", e, req.Messages[i], device)
			}
			if !uuidPattern.MatchString(e.EventID) || ids[e.EventID] {
				t.Fatalf("event_id %q is not a fresh UUIDv4", e.EventID)
			}
			ids[e.EventID] = true
			if _, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err != nil {
				t.Fatalf("occurred_at %q: %v", e.OccurredAt, err)
			}
			if e.ConversationID == "" {
				t.Fatal("conversation_id is empty")
			}
			types[e.Type]++
			switch {
			case e.Encrypted != nil && e.Content == nil:
				encrypted++
				checkEncrypted(t, f, e)
			case e.Content != nil && e.Encrypted == nil:
				plain++
			default:
				t.Fatalf("event %s must have exactly one of content and encrypted", e.EventID)
			}
			if e.Encrypted != nil != req.Messages[i].Encrypted {
				t.Fatalf("ref Encrypted = %v for event %s", req.Messages[i].Encrypted, e.EventID)
			}
		}
		var generic any
		if err := json.Unmarshal(req.Body, &generic); err != nil {
			t.Fatal(err)
		}
		var values []string
		collectStrings(generic, &values)
		for _, p := range req.Plaintexts {
			if !slices.Contains(values, p) {
				t.Fatalf("plaintext %q is not a string value of the body", p)
			}
		}
	}
	for _, typ := range []string{"message.created", "message.edited", "message.deleted", "reaction.added", "receipt.read", "note.updated"} {
		if types[typ] == 0 {
			t.Errorf("no %s event in 200 batches: %v", typ, types)
		}
	}
	if encrypted == 0 || plain == 0 {
		t.Errorf("%d encrypted and %d plain events; want both", encrypted, plain)
	}
	if sizes == 200 {
		t.Error("every batch has one event; want 1..10")
	}
}

// checkEncrypted opens an end-to-end payload with the device's client key
// and checks its checksum, as the receiving client would.
func checkEncrypted(t *testing.T, f *SyncFactory, e syncEvent) {
	t.Helper()
	enc := e.Encrypted
	if enc.Alg != "A256GCM" || enc.KeyID != "ck-"+e.DeviceID+"-1" {
		t.Fatalf("encrypted header = %+v", enc)
	}

	iv, err := base64.StdEncoding.DecodeString(enc.IV)
	if err != nil || len(iv) != 12 {
		t.Fatalf("iv %q is not 12 base64 bytes: %v", enc.IV, err)
	}
	ct, err := base64.StdEncoding.DecodeString(enc.Ciphertext)
	if err != nil {
		t.Fatalf("ciphertext is not base64: %v", err)
	}
	sum := sha256.Sum256(ct)
	if enc.Checksum != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("checksum %s does not match the ciphertext", enc.Checksum)
	}

	var dev *syncDevice
	for _, d := range f.devices {
		if d.ID == e.DeviceID {
			dev = d
		}
	}
	pt, err := dev.aead.Open(nil, iv, ct, []byte(e.EventID))
	if err != nil {
		t.Fatalf("payload does not decrypt: %v", err)
	}
	var c syncContent
	if err := json.Unmarshal(pt, &c); err != nil {
		t.Fatalf("decrypted payload is not content JSON: %v", err)
	}
	if c == (syncContent{}) {
		t.Fatal("decrypted content is empty")
	}
}

func TestSyncDeterministic(t *testing.T) {
	clock := WithClock(fixedClock)
	a, _ := newTestSyncFactory(t, 3, clock)
	b, _ := newTestSyncFactory(t, 3, clock)
	for range 50 {
		ra, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ra.Body, rb.Body) {
			t.Fatalf("bodies differ for the same seed:\n%s\n%s", ra.Body, rb.Body)
		}
	}
}

type countingSigner struct {
	calls int
	err   error
}

func (c *countingSigner) SignToken(_, deviceID string) (string, time.Time, error) {
	c.calls++
	return "token-" + deviceID, fixedClock().Add(10 * time.Minute), c.err
}

func TestSyncReusesTokens(t *testing.T) {
	signer := &countingSigner{}
	f, err := NewSyncFactory(1, ExampleDevices(2), signer, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := f.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if signer.calls != 2 {
		t.Errorf("signer called %d times for 2 devices, want 2", signer.calls)
	}

	failing := &countingSigner{err: errors.New("key unavailable")}
	f, err = NewSyncFactory(1, ExampleDevices(1), failing)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Next(); err == nil {
		t.Error("Next with a failing signer: want an error")
	}
}

func TestNewSyncFactoryRejects(t *testing.T) {
	signer := &countingSigner{}
	cases := map[string]func() error{
		"no devices": func() error { _, err := NewSyncFactory(1, nil, signer); return err },
		"no signer":  func() error { _, err := NewSyncFactory(1, ExampleDevices(1), nil); return err },
		"no subject": func() error { _, err := NewSyncFactory(1, []Device{{ID: "d"}}, signer); return err },
		"max events": func() error { _, err := NewSyncFactory(1, ExampleDevices(1), signer, WithMaxEvents(0)); return err },
		"share": func() error {
			_, err := NewSyncFactory(1, ExampleDevices(1), signer, WithEncryptedShare(1.5))
			return err
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			if build() == nil {
				t.Error("want an error")
			}
		})
	}
}
