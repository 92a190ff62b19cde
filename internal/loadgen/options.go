package loadgen

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// Option changes how a factory generates requests.
type Option func(*options)

type options struct {
	now            func() time.Time
	maxEvents      int
	encryptedShare float64
}

func defaultOptions() options {
	return options{
		now:            time.Now,
		maxEvents:      defaultMaxEvents,
		encryptedShare: defaultEncryptedShare,
	}
}

const (
	defaultMaxEvents      = 20
	defaultEncryptedShare = 0.3
)

// WithClock sets the clock that timestamps come from (default time.Now).
// With a fixed clock, a factory's bodies are identical byte for byte for
// the same seed and the same sequence of calls. Bearer tokens are not,
// because the TokenSigner mints them.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithMaxEvents sets the largest number of events in one sync batch
// (default 20). Batch sizes are skewed towards small batches.
func WithMaxEvents(n int) Option {
	return func(o *options) { o.maxEvents = n }
}

// WithEncryptedShare sets the share of sync events, from 0 to 1, whose
// content the client encrypts end to end (default 0.3).
func WithEncryptedShare(share float64) Option {
	return func(o *options) { o.encryptedShare = share }
}

// newSeededRand returns a ChaCha8 generator whose stream depends on the
// seed and on a domain string, so that factories sharing one seed do not
// share a stream.
func newSeededRand(seed int64, domain string) (*rand.Rand, *rand.ChaCha8) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h := sha256.New()
	h.Write([]byte("syncguard-loadgen/" + domain + "/"))
	h.Write(b[:])
	var key [32]byte
	copy(key[:], h.Sum(nil))
	src := rand.NewChaCha8(key)
	return rand.New(src), src
}
