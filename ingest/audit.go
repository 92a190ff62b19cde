package ingest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/syncguard/syncguard/schemas"
)

// auditLogInterval is the minimum time between two log lines about lost
// audit records.
const auditLogInterval = 10 * time.Second

// auditWriter produces audit events without waiting for Kafka, so that a
// response is never delayed by its audit record. Lost records are counted
// and logged at most once per auditLogInterval.
type auditWriter struct {
	s       *Server
	topic   string
	dropped atomic.Int64 // since the last log line
	logEach rate.Sometimes
}

// audit encodes ev and hands it to the Kafka client.
func (s *Server) audit(ev *schemas.AuditEvent) {
	a := &s.auditor
	value, err := json.Marshal(ev)
	if err != nil {
		a.drop(err)
		return
	}
	rec := &kgo.Record{Topic: a.topic, Key: []byte(ev.Source), Value: value}
	// TryProduce fails at once instead of blocking when the client's buffer
	// is full, which happens when Kafka is unreachable or far behind.
	s.auditClient.TryProduce(context.Background(), rec, a.promise)
}

func (a *auditWriter) promise(_ *kgo.Record, err error) {
	if err != nil {
		a.drop(err)
	}
}

func (a *auditWriter) drop(err error) {
	a.s.metrics.auditDropped.Inc()
	a.dropped.Add(1)
	a.logEach.Do(func() {
		a.s.log.Warn("audit records lost", "count", a.dropped.Swap(0), "err", err)
	})
}
