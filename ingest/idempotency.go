package ingest

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// idempotency remembers the sync events that Kafka acknowledged, by
// device and event_id. A replayed event gets its original result
// ("accepted", marked replayed) and is not produced again.
//
// NOTE: the cache lives in this process and is lost on restart. A replay
// sent to another instance, or after a restart, is produced again and
// reported as new, without replayed. The processors' event_id dedupe,
// which survives restarts, keeps it from being stored twice. When two
// requests with the same event run at once, both produce it and the
// processors drop one.
type idempotency struct {
	cache *ttlCache[acceptedEvent]
}

// acceptedEvent is the original result of an event.
type acceptedEvent struct {
	// requestID is the request that stored the event.
	requestID string
}

// newIdempotency remembers events for sync_max_event_age, at most 24h:
// an event older than sync_max_event_age is rejected as out of its window
// anyway.
func newIdempotency(cfg Config, reg prometheus.Registerer) (*idempotency, error) {
	ttl := min(cfg.SyncMaxEventAge, maxIdempotencyTTL)
	i := &idempotency{cache: newTTLCache[acceptedEvent](ttl, cfg.SyncIdempotencyMaxEntries, true)}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "syncguard_ingest_sync_idempotency_cache_entries",
		Help: "Accepted sync events remembered to report replays; at most ingest.sync_idempotency_max_entries.",
	}, func() float64 { return float64(i.cache.len()) })
	if err := reg.Register(gauge); err != nil {
		return nil, fmt.Errorf("register ingest idempotency metrics: %w", err)
	}
	return i, nil
}

// lookup returns the original result of device's event id.
func (i *idempotency) lookup(device, id string, now time.Time) (acceptedEvent, bool) {
	return i.cache.get(keyOf(device, id), now)
}

// remember records that Kafka acknowledged device's event id in request
// requestID.
func (i *idempotency) remember(device, id, requestID string, now time.Time) {
	i.cache.add(keyOf(device, id), acceptedEvent{requestID: requestID}, now)
}
