package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceResult is the outcome of one raw record.
type produceResult struct {
	index int
	err   error
}

// produceAll hands recs to Kafka and waits until each is acknowledged or
// failed, or until produce_timeout passes. It returns one error per record,
// nil for acknowledged records.
//
// It does not use kgo's ProduceSync, because an idempotent producer cannot
// fail a record whose produce request is already on the wire (franz-go
// v1.22.3, Client.Produce documentation), so ProduceSync would wait for
// that request however long the broker takes. Here the request gets its
// 503 in time. A record that Kafka acknowledges after that is a duplicate
// of the one the client sends again, which processors drop.
func (s *Server) produceAll(parent context.Context, recs []*kgo.Record) []error {
	ctx, cancel := context.WithTimeout(parent, s.cfg.ProduceTimeout)
	defer cancel()

	start := time.Now()
	errs := make([]error, len(recs))
	received := make([]bool, len(recs))
	// The channel has room for every record, so that promises arriving
	// after this function returned never block kgo's promise goroutine.
	done := make(chan produceResult, len(recs))
	for i, rec := range recs {
		// TryProduce fails at once with kgo.ErrMaxBuffered while the
		// client's buffer is full, instead of waiting for space.
		s.client.TryProduce(ctx, rec, func(_ *kgo.Record, err error) {
			done <- produceResult{index: i, err: err}
		})
	}

	pending := len(recs)
wait:
	for pending > 0 {
		select {
		case res := <-done:
			errs[res.index] = res.err
			received[res.index] = true
			pending--
		case <-ctx.Done():
			break wait
		}
	}
	if pending > 0 {
		for i := range errs {
			if !received[i] {
				errs[i] = ctx.Err()
			}
		}
	}

	failed, tooLarge := 0, 0
	var firstErr error
	for i, err := range errs {
		if errors.Is(err, kerr.MessageTooLarge) {
			// The record itself is at fault, not Kafka: the request gets
			// 413, and readiness is not touched. kgo reports a record over
			// its own batch limit with the same error as the broker does.
			// NOTE: the broker judges whole batches, so under a topic
			// max.message.bytes below kgo's batch limit (1,000,012 bytes),
			// records batched with an oversized one are reported too large.
			errs[i] = fmt.Errorf("%w: %w", errRecordTooLarge, err)
			tooLarge++
			continue
		}
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			s.metrics.produceErrors.Inc()
		}
	}
	if failed > 0 {
		s.produceLog.Do(func() {
			s.log.Warn("kafka did not acknowledge raw records; the request got 503", "records", failed, "err", firstErr)
		})
	}
	switch {
	case failed > 0:
		// Only failures that are not the client's own cancellation count
		// against readiness.
		if parent.Err() == nil {
			s.lastKafkaFailure.Store(time.Now().UnixNano())
		}
	case tooLarge == 0:
		now := time.Now()
		s.metrics.produceWait.Observe(now.Sub(start).Seconds())
		s.lastKafkaOK.Store(now.UnixNano())
	}
	return errs
}
