package processors

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a raw record, the values of the outcome label.
const (
	outcomeAccepted  = "accepted"  // at least one item routed, or nothing to route
	outcomeRejected  = "rejected"  // dead-lettered as a whole
	outcomeDuplicate = "duplicate" // every item was a duplicate
)

type metrics struct {
	records        *prometheus.CounterVec
	batchDuration  prometheus.Histogram
	dedupeEntries  prometheus.Gauge
	transactions   *prometheus.CounterVec
	rebuildSeconds prometheus.Histogram
	dataKeys       prometheus.Gauge
	// sessionRestarts counts consumer sessions replaced after a failure.
	sessionRestarts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_processor_records_total",
			Help: "Raw records processed in committed transactions, by outcome (accepted, rejected, duplicate).",
		}, []string{"outcome"}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncguard_processor_batch_duration_seconds",
			Help:    "Time from receiving a polled batch to the end of its transaction, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		dedupeEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncguard_processor_dedupe_entries",
			Help: "Message ids held in the dedupe sets of the raw partitions this instance owns.",
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_processor_transactions_total",
			Help: "Transactions ended, by result (committed, aborted).",
		}, []string{"result"}),
		rebuildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncguard_processor_dedupe_rebuild_duration_seconds",
			Help:    "Time to rebuild the dedupe set of one raw partition from the dedupe topic, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		dataKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncguard_processor_data_keys",
			Help: "Subjects whose current data key is cached in memory.",
		}),
		sessionRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_processor_session_restarts_total",
			Help: "Kafka sessions replaced after a failure, such as Kafka being unreachable when a transaction ended.",
		}),
	}
	for _, outcome := range []string{outcomeAccepted, outcomeRejected, outcomeDuplicate} {
		m.records.WithLabelValues(outcome)
	}
	for _, result := range []string{"committed", "aborted"} {
		m.transactions.WithLabelValues(result)
	}

	for _, c := range []prometheus.Collector{
		m.records, m.batchDuration, m.dedupeEntries, m.transactions, m.rebuildSeconds, m.dataKeys, m.sessionRestarts,
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("register processor metrics: %w: give each processor its own registry", err)
			}
			return nil, fmt.Errorf("register processor metrics: %w", err)
		}
	}
	return m, nil
}
