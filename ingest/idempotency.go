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
// Every instance publishes the events it stored on the replay topic and
// learns those of the others, so a replay sent to another instance gets
// the original result once that record arrived, within milliseconds. A
// restarted instance learns the events of the last few minutes only.
//
// NOTE: this sharing is not atomic. These replays are produced again and
// reported as new: one that reaches another instance before the record
// does, one older than a few minutes sent to a restarted instance, and two
// requests with the same event at once. The processors' event_id dedupe,
// which survives restarts, keeps the event from being stored twice.
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

// remember records that Kafka acknowledged the event with key k, the
// keyOf its device and event id, in request requestID: an event this
// instance stored, or one another instance stored, read from the replay
// topic.
func (i *idempotency) remember(k cacheKey, requestID string, now time.Time) {
	i.cache.add(k, acceptedEvent{requestID: requestID}, now)
}
