package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus collectors of one Server. Every label value
// comes from a fixed set: route constants, outcomes and reason codes.
type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	produceWait   prometheus.Histogram
	produceErrors prometheus.Counter
	auditDropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_ingest_requests_total",
			Help: "HTTP requests handled by ingest, by route, outcome (accepted, rejected, error) and reason code.",
		}, []string{"route", "outcome", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "syncguard_ingest_request_duration_seconds",
			Help:    "Time from reading the request headers to the end of the response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		produceWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncguard_ingest_produce_seconds",
			Help:    "Time from handing a request's raw records to the Kafka client to the last acknowledgement, for requests whose records were all acknowledged.",
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2},
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_ingest_produce_errors_total",
			Help: "Raw records that Kafka did not acknowledge within produce_timeout; their requests got 503.",
		}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_ingest_audit_dropped_total",
			Help: "Audit records that could not be encoded, buffered or delivered to Kafka.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.produceWait, m.produceErrors, m.auditDropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	return m, nil
}
