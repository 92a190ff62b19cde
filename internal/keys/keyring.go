// Package keys holds SyncGuard's key material and the cryptography built on
// it: keyed pseudonyms of personal identifiers, per-subject data keys wrapped
// by rotating master keys, AES-256-GCM sealing of content, and the envelope
// key that ingest and the processors share to authenticate raw records. It
// also holds the Ed25519 key that signs audit chain checkpoints.
//
// A Keyring never prints its key material: fmt, slog and JSON see only the
// master key ids.
package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// KeySize is the size in bytes of every key: master keys, data keys, the
// pseudonym key and the envelope key are all 256-bit.
const KeySize = 32

// pseudonymBytes is how many bytes of the HMAC a pseudonym keeps (128 bits).
const pseudonymBytes = 16

// PseudonymPrefix starts every pseudonym, so that a pseudonym is never
// mistaken for a raw identifier.
const PseudonymPrefix = "p_"

type masterKey struct {
	id        string
	key       []byte
	createdAt time.Time
}

// Keyring is the set of long-lived keys of a deployment. It is safe for
// concurrent use.
type Keyring struct {
	mu           sync.RWMutex
	masters      []masterKey // in creation order
	active       string      // id of the master key that wraps new data keys
	pseudonymKey []byte
	envelopeKey  []byte
	// checkpoint signs audit chain checkpoints; nil in a keyring file
	// written before checkpoints existed.
	checkpoint        *checkpointKey
	retiredCheckpoint []checkpointKey // public halves only, oldest first
}

// Generate returns a new keyring with one active master key "m1", fresh
// pseudonym and envelope keys, and the Ed25519 checkpoint key "c1".
func Generate() *Keyring {
	c := newCheckpointKey("c1")
	return &Keyring{
		masters:      []masterKey{{id: "m1", key: randomKey(), createdAt: time.Now().UTC()}},
		active:       "m1",
		pseudonymKey: randomKey(),
		envelopeKey:  randomKey(),
		checkpoint:   &c,
	}
}

// Rotate adds a new master key, makes it the active one and returns its id.
// Older master keys stay in the keyring so that data keys they wrapped can
// still be unwrapped. Rotate also replaces the checkpoint signing key, or
// adds one to a keyring that lacks it. Of the replaced checkpoint key only
// the public half stays, to verify the checkpoints it signed.
func (k *Keyring) Rotate() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rotateCheckpointLocked()

	id := ""
	for n := len(k.masters) + 1; ; n++ {
		id = "m" + strconv.Itoa(n)
		if k.masterLocked(id) == nil {
			break
		}
	}
	k.masters = append(k.masters, masterKey{id: id, key: randomKey(), createdAt: time.Now().UTC()})
	k.active = id
	return id
}

// ActiveMaster returns the id of the master key that wraps new data keys.
func (k *Keyring) ActiveMaster() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active
}

// MasterIDs returns the ids of all master keys in creation order.
func (k *Keyring) MasterIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.masters))
	for i, m := range k.masters {
		ids[i] = m.id
	}
	return ids
}

// EnvelopeKey returns a copy of the key of the envelope MAC that ingest
// adds to sync records (see schemas.EnvelopeMAC).
func (k *Keyring) EnvelopeKey() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Clone(k.envelopeKey)
}

// Pseudonym returns the keyed pseudonym of value: "p_" followed by the hex
// of the first 16 bytes of HMAC-SHA256(pseudonym key, value). The same value
// always gives the same pseudonym under the same keyring, across restarts
// and processes.
func (k *Keyring) Pseudonym(value string) string {
	k.mu.RLock()
	m := hmac.New(sha256.New, k.pseudonymKey)
	k.mu.RUnlock()
	m.Write([]byte(value))
	return PseudonymPrefix + hex.EncodeToString(m.Sum(nil)[:pseudonymBytes])
}

// masterLocked returns the master key with the given id, or nil. The caller
// holds k.mu.
func (k *Keyring) masterLocked(id string) *masterKey {
	for i := range k.masters {
		if k.masters[i].id == id {
			return &k.masters[i]
		}
	}
	return nil
}

// String implements fmt.Stringer without revealing key material.
func (k *Keyring) String() string {
	if k == nil {
		return "keys.Keyring(nil)"
	}
	return fmt.Sprintf("keys.Keyring{active_master:%s master_keys:%v key_material:[redacted]}", k.ActiveMaster(), k.MasterIDs())
}

// GoString implements fmt.GoStringer, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// LogValue implements slog.LogValuer without revealing key material.
func (k *Keyring) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("nil")
	}
	return slog.GroupValue(
		slog.String("active_master", k.ActiveMaster()),
		slog.Any("master_keys", k.MasterIDs()),
	)
}

// MarshalJSON implements json.Marshaler without revealing key material. Save
// writes the real file format.
func (k *Keyring) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ActiveMaster string   `json:"active_master"`
		MasterKeys   []string `json:"master_keys"`
		KeyMaterial  string   `json:"key_material"`
	}{k.ActiveMaster(), k.MasterIDs(), "[redacted]"})
}

func randomKey() []byte {
	b := make([]byte, KeySize)
	// crypto/rand.Read never returns an error: it crashes the program when
	// the system has no randomness to give.
	_, _ = rand.Read(b)
	return b
}
