package sinks

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rowsWritten        *prometheus.CounterVec
	insertDuration     *prometheus.HistogramVec
	insertErrors       *prometheus.CounterVec
	recordsSkipped     *prometheus.CounterVec
	recordsUndecodable *prometheus.CounterVec
	commitErrors       prometheus.Counter
	checkpoints        prometheus.Counter
	checkpointErrors   prometheus.Counter
	lag                *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_sink_rows_written_total",
			Help: "Rows inserted into ClickHouse, by table.",
		}, []string{"table"}),
		insertDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "syncguard_sink_insert_duration_seconds",
			Help:    "Duration of successful ClickHouse INSERTs, by table.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"table"}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_sink_insert_errors_total",
			Help: "Failed ClickHouse INSERT attempts, by table; each is retried.",
		}, []string{"table"}),
		recordsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_sink_records_skipped_total",
			Help: "Kafka records skipped because their table already stored them, by table.",
		}, []string{"table"}),
		recordsUndecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_sink_records_undecodable_total",
			Help: "Kafka records whose value could not be decoded, by table. audit_log stores a parse_error row for each; other tables store nothing.",
		}, []string{"table"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_sink_commit_errors_total",
			Help: "Failed Kafka offset commits after successful inserts.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_sink_checkpoints_written_total",
			Help: "Signed audit chain checkpoints inserted into audit_checkpoints.",
		}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_sink_checkpoint_errors_total",
			Help: "Failed checkpoint inserts; the checkpoint is tried again after the next flush.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncguard_sink_lag_records",
			Help: "Records between the last fetched record and the high watermark, summed over the partitions this writer consumes, by topic suffix.",
		}, []string{"topic"}),
	}
	for _, c := range []prometheus.Collector{
		m.rowsWritten, m.insertDuration, m.insertErrors, m.recordsSkipped, m.recordsUndecodable,
		m.commitErrors, m.checkpoints, m.checkpointErrors, m.lag,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register sink metrics: %w", err)
		}
	}
	return m, nil
}
