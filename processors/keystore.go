package processors

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/schemas"
)

// keyIDPrefix starts the id of every data key a processor creates.
const keyIDPrefix = "dk_"

// dataKey is a subject's data key in plain form. It never leaves the
// process unwrapped.
type dataKey struct {
	subject   string
	id        string
	dek       []byte
	createdAt time.Time
}

// newDataKey returns a fresh data key for subject with a random id.
func newDataKey(subject string, now time.Time) *dataKey {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read returns no error since Go 1.24
	return &dataKey{
		subject:   subject,
		id:        keyIDPrefix + hex.EncodeToString(id[:]),
		dek:       keys.NewDataKey(),
		createdAt: now,
	}
}

// keyStore holds the current data key of each subject, bounded in size. It
// is filled from the keys topic at start, kept current by following that
// topic, and extended with the keys that committed transactions created.
type keyStore struct {
	ring *keys.Keyring

	mu      sync.Mutex
	current *boundedMap[string, *dataKey]
	// skipped counts key records that could not be used: not unwrappable
	// with this keyring, malformed, or keyed differently from their value.
	skipped int
}

func newKeyStore(ring *keys.Keyring, maxEntries int) *keyStore {
	return &keyStore{ring: ring, current: newBoundedMap[string, *dataKey](maxEntries)}
}

// get returns the current key of subject, or nil.
func (s *keyStore) get(subject string) *dataKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, _ := s.current.get(subject)
	return k
}

// add makes k the current key of its subject unless the subject already
// has a key created later.
func (s *keyStore) add(k *dataKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.current.get(k.subject); ok && old.createdAt.After(k.createdAt) {
		return
	}
	s.current.put(k.subject, k)
}

// remove deletes the current key of subject if its id is keyID. Erasing a
// subject writes a tombstone per key, after which the subject gets a new key.
func (s *keyStore) remove(subject, keyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.current.get(subject); ok && old.id == keyID {
		s.current.delete(subject)
	}
}

func (s *keyStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.len()
}

func (s *keyStore) skippedRecords() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// applyRecord applies one record of the keys topic. Records it cannot use
// are counted, not returned as errors, so that one bad record does not stop
// the processor.
func (s *keyStore) applyRecord(r *kgo.Record) error {
	subject, keyID, ok := strings.Cut(string(r.Key), "/")
	if !ok || subject == "" || keyID == "" {
		s.skip()
		return nil
	}
	if r.Value == nil {
		s.remove(subject, keyID)
		return nil
	}

	var w schemas.WrappedKey
	if err := json.Unmarshal(r.Value, &w); err != nil || w.Subject != subject || w.KeyID != keyID {
		s.skip()
		return nil
	}
	dek, err := s.ring.UnwrapKey(w)
	if err != nil {
		s.skip()
		return nil
	}
	s.add(&dataKey{subject: subject, id: keyID, dek: dek, createdAt: w.CreatedAt})
	return nil
}

func (s *keyStore) skip() {
	s.mu.Lock()
	s.skipped++
	s.mu.Unlock()
}

// keyRecordKey returns the record key of a data key in the keys topic.
func keyRecordKey(subject, keyID string) string { return subject + "/" + keyID }
