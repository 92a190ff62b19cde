package detectors

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

// rule is one counting rule: which audit events it counts, under which key,
// and how the count of a window becomes a verdict.
type rule struct {
	name    string
	noun    string // noun for a key in summaries, such as "account"
	counted string // plural noun for the counted events in summaries
	// match returns the key that ev counts under, or false when the rule
	// does not count ev.
	match func(ev *schemas.AuditEvent) (string, bool)
	// judge returns the verdict on a window's count, given the key's
	// baseline and the number of closed windows behind it.
	judge func(count int64, baseline float64, history int) verdict

	table      *table
	events     prometheus.Counter
	suppressed prometheus.Counter
	alerts     [severityCritical + 1]prometheus.Counter
}

// RulesOptions configures NewRules.
type RulesOptions struct {
	Config Config
	// Registry receives the detector metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
	// Now is the wall clock, used for RaisedAt and to bound how far ahead
	// of it event times may move the watermark. Nil means time.Now.
	Now func() time.Time
}

// Rules runs every detector rule over audit events, independently of Kafka.
// Its methods are safe for concurrent use.
//
// NOTE: all state (windows, baselines, cooldowns) is in memory only. A
// restart, or a Reset after an aborted transaction, starts every window
// from the next record read. An alert for a window in progress at that
// moment can therefore be missed. A key alerted shortly before can be
// alerted again, with the same ID when the window and severity match.
type Rules struct {
	mu        sync.Mutex
	cfg       Config
	now       func() time.Time
	rules     []*rule
	watermark watermark
	// nextClose is the end of the window that contains the watermark: the
	// watermark must reach it before any further window can close.
	nextClose int64
	metrics   *metrics
}

// NewRules returns Rules with empty state.
func NewRules(opts RulesOptions) (*Rules, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return newRules(opts.Config, m, opts.Now), nil
}

func newRules(cfg Config, m *metrics, now func() time.Time) *Rules {
	if now == nil {
		now = time.Now
	}
	r := &Rules{
		cfg:       cfg,
		now:       now,
		rules:     append(volumeRules(cfg.Volume), failureRules(cfg.Failure)...),
		watermark: newWatermark(cfg.AllowedLateness),
		nextClose: math.MinInt64,
		metrics:   m,
	}
	for _, rl := range r.rules {
		rl.table = newTable(cfg.Window, cfg.Volume.BaselineAlpha, cfg.MaxKeys,
			m.keys.WithLabelValues(rl.name), m.evictions.WithLabelValues(rl.name))
		rl.events = m.events.WithLabelValues(rl.name)
		rl.suppressed = m.suppressed.WithLabelValues(rl.name)
		rl.alerts[severityWarning] = m.alerts.WithLabelValues(rl.name, schemas.SeverityWarning)
		rl.alerts[severityCritical] = m.alerts.WithLabelValues(rl.name, schemas.SeverityCritical)
		m.capacity.WithLabelValues(rl.name).Set(float64(cfg.MaxKeys))
	}
	return r
}

// Observe counts ev as if it came from a single partition and returns the
// alerts it raises. Tests and scripted scenarios use it; the Kafka loop uses
// ObservePartition.
func (r *Rules) Observe(ev schemas.AuditEvent) []schemas.Alert {
	return r.ObservePartition(0, ev)
}

// ObservePartition counts ev, read from the given partition of the audit
// topic, under every rule that matches it, and returns the alerts it
// raises. Closing a window only folds its count into the key's baseline:
// the rules judge a window each time an event is counted in it, so the
// event that crosses a threshold raises the alert.
func (r *Rules) ObservePartition(partition int32, ev schemas.AuditEvent) []schemas.Alert {
	// The detector's own events, such as its containment actions, come
	// back through the audit topic. No rule counts them, and their times
	// are wall-clock raise times, so they must not move the watermark
	// either: in a replay of older traffic they would make every later
	// event late.
	if ev.Stage == schemas.StageDetector {
		return nil
	}
	if ev.Time.IsZero() {
		r.metrics.invalid.Inc()
		return nil
	}

	r.mu.Lock()
	defer r.mu.Unlock()

	// Advance the watermark first, so that this event's own time can
	// close windows.
	now := r.now()
	at := ev.Time.UnixNano()
	r.watermark.observe(partition, at, now.UnixNano())
	r.closeWindows()

	size := int64(r.cfg.Window)
	start := windowStart(at, size)
	closed := start+size <= r.watermark.current
	late := false
	var alerts []schemas.Alert
	for _, rl := range r.rules {
		key, ok := rl.match(&ev)
		if !ok {
			continue
		}
		if closed {
			late = true
			continue
		}
		e := rl.table.touch(boundKey(key))
		w := rl.table.window(e, start)
		if w == nil {
			late = true
			continue
		}
		w.add(at)
		rl.events.Inc()
		if a, ok := r.evaluate(rl, e, w, at, now); ok {
			alerts = append(alerts, a)
		}
	}
	if late {
		r.metrics.late.Inc()
	}
	return alerts
}

// closeWindows closes the windows that the watermark has passed, once per
// window boundary it crosses.
func (r *Rules) closeWindows() {
	wm := r.watermark.current
	if wm == math.MinInt64 || wm < r.nextClose {
		return
	}
	for _, rl := range r.rules {
		rl.table.closeUpTo(wm)
	}
	size := int64(r.cfg.Window)
	r.nextClose = windowStart(wm, size) + size
}

// TrackPartitions registers newly assigned partitions, so that each holds
// the watermark back until it has delivered or gone idle.
func (r *Rules) TrackPartitions(partitions []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UnixNano()
	for _, p := range partitions {
		r.watermark.track(p, now)
	}
}

// ForgetPartitions stops partitions that were revoked from holding the
// watermark back.
func (r *Rules) ForgetPartitions(partitions []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range partitions {
		r.watermark.forget(p)
	}
}

// Reset discards every window, baseline and cooldown and the watermark, as
// a restart would. The Kafka loop calls it when a transaction aborts,
// because the records of that transaction are read again and must not be
// counted twice.
func (r *Rules) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range r.rules {
		rl.table.reset()
	}
	r.watermark.reset(r.now().UnixNano())
	r.nextClose = math.MinInt64
	r.metrics.resets.Inc()
}

// Watermark returns the current watermark, or the zero time before the
// first event.
func (r *Rules) Watermark() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watermark.current == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, r.watermark.current).UTC()
}

// Keys returns the number of keys the named rule tracks.
func (r *Rules) Keys(rule string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range r.rules {
		if rl.name == rule {
			return len(rl.table.entries), nil
		}
	}
	return 0, fmt.Errorf("unknown detector rule %q", rule)
}
