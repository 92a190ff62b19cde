package detectors

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

// metrics are labelled only by rule name, severity, transaction result,
// control record kind and skip reason, which are all fixed sets: keys never
// become label values.
type metrics struct {
	events       *prometheus.CounterVec
	alerts       *prometheus.CounterVec
	suppressed   *prometheus.CounterVec
	keys         *prometheus.GaugeVec
	capacity     *prometheus.GaugeVec
	evictions    *prometheus.CounterVec
	late         prometheus.Counter
	invalid      prometheus.Counter
	resets       prometheus.Counter
	transactions *prometheus.CounterVec

	containActions   *prometheus.CounterVec
	containSkipped   *prometheus.CounterVec
	containBlocks    prometheus.Gauge
	containCapacity  prometheus.Gauge
	containEvictions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_events_total",
			Help: "Audit events counted by each rule.",
		}, []string{"rule"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_alerts_total",
			Help: "Alerts raised, by rule and severity. An aborted transaction can raise the same alert again.",
		}, []string{"rule", "severity"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_alerts_suppressed_total",
			Help: "Alerts not raised because the key raised one of the same or a higher severity within the cooldown.",
		}, []string{"rule"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncguard_detector_keys",
			Help: "Keys tracked by each rule.",
		}, []string{"rule"}),
		capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncguard_detector_keys_capacity",
			Help: "Maximum number of keys each rule tracks (detector.max_keys).",
		}, []string{"rule"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_evictions_total",
			Help: "Keys evicted, with their windows and baselines, because the rule was at capacity.",
		}, []string{"rule"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_detector_late_events_total",
			Help: "Audit events dropped because their window had already closed.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_detector_invalid_events_total",
			Help: "Audit records dropped because they were not valid JSON or had no event time.",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_detector_state_resets_total",
			Help: "Times the in-memory window state was discarded after an aborted transaction.",
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_transactions_total",
			Help: "Consume-produce transactions, by result (committed or aborted).",
		}, []string{"result"}),
		containActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_containment_actions_total",
			Help: "Blocks published to the control topic in a committed transaction, by control record kind.",
		}, []string{"kind"}),
		containSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_detector_containment_skipped_total",
			Help: "Alerts at or above detector.containment.min_severity that published no block, by reason (allowlisted, active, invalid_key).",
		}, []string{"reason"}),
		containBlocks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncguard_detector_containment_blocks",
			Help: "Published blocks held in memory until they expire, so that a key is not blocked twice.",
		}),
		containCapacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncguard_detector_containment_blocks_capacity",
			Help: "Maximum number of published blocks held in memory (detector.max_keys).",
		}),
		containEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_detector_containment_evictions_total",
			Help: "Published blocks forgotten before they expired because the table was full.",
		}),
	}
	for _, kind := range []string{schemas.ControlBlockSource, schemas.ControlBlockDevice} {
		m.containActions.WithLabelValues(kind)
	}
	for _, reason := range []string{skipAllowlisted, skipActive, skipInvalidKey} {
		m.containSkipped.WithLabelValues(reason)
	}
	collectors := []prometheus.Collector{
		m.events, m.alerts, m.suppressed, m.keys, m.capacity,
		m.evictions, m.late, m.invalid, m.resets, m.transactions,
		m.containActions, m.containSkipped, m.containBlocks, m.containCapacity, m.containEvictions,
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register detector metrics: %w", err)
		}
	}
	return m, nil
}
