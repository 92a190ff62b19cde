package detectors

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

const (
	// warmUpTimeout bounds the warm-up of one assignment. It stays well
	// inside the group's rebalance timeout (franz-go's default is 60 s),
	// because the warm-up runs in the assignment callback.
	warmUpTimeout = 20 * time.Second
	// warmUpMaxRecords bounds the records one warm-up reads.
	warmUpMaxRecords = 2_000_000
)

// warmUp rebuilds the window state of newly assigned partitions. Window
// state lives in memory, so a restarted detector, or one that took over a
// partition, would otherwise start the open windows from zero and miss an
// alert whose events straddle the restart. It reads each partition from
// the records of the last two windows plus allowed_lateness up to the
// committed offset. It counts them without raising alerts, because those
// records were processed before, and any alert they raised was committed
// in the same transaction as their offsets.
//
// A warm-up that fails or runs out of time is logged and skipped, because
// losing window state is better than not consuming at all.
func (e *Engine) warmUp(ctx context.Context, partitions []int32) {
	if len(partitions) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	start := time.Now()
	read, err := e.replayUncounted(ctx, partitions)
	if err != nil {
		e.log.Warn("detector warm-up incomplete; windows in progress may miss events from before the assignment",
			"partitions", partitions, "records", read, "error", err)
		return
	}
	if read > 0 {
		e.log.Info("detector window state rebuilt", "partitions", partitions, "records", read,
			"took", time.Since(start).Round(time.Millisecond).String())
	}
}

// replayUncounted counts the recent records before the committed offsets of
// partitions into the rules, dropping the alerts, and returns how many it
// read.
func (e *Engine) replayUncounted(ctx context.Context, partitions []int32) (int, error) {
	topic := e.kafka.Topic(schemas.TopicAudit)
	cl, err := e.kafka.NewClient()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	committed, err := adm.FetchOffsets(ctx, e.cfg.Group)
	if err != nil {
		return 0, fmt.Errorf("fetch committed offsets of group %s: %w", e.cfg.Group, err)
	}
	lookback := 2*e.cfg.Window + e.cfg.AllowedLateness
	since, err := adm.ListOffsetsAfterMilli(ctx, e.rules.now().Add(-lookback).UnixMilli(), topic)
	if err == nil {
		err = since.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("list audit offsets of the last %s: %w", lookback, err)
	}

	// ranges holds [from, to) per partition with something to read.
	ranges := make(map[int32]kafkaclient.Range)
	for _, p := range partitions {
		c, ok := committed.Lookup(topic, p)
		s, listed := since.Lookup(topic, p)
		if !ok || c.Err != nil || c.At <= 0 || !listed || s.Offset < 0 || s.Offset >= c.At {
			continue
		}
		ranges[p] = kafkaclient.Range{From: s.Offset, To: c.At}
	}

	read := 0
	err = e.kafka.ReadRanges(ctx, topic, ranges, func(r *kgo.Record) error {
		if read >= warmUpMaxRecords {
			return fmt.Errorf("stopped after %d records, the warm-up limit", read)
		}
		var ev schemas.AuditEvent
		if json.Unmarshal(r.Value, &ev) != nil {
			return nil
		}
		read++
		e.rules.ObservePartition(r.Partition, ev)
		return nil
	})
	return read, err
}
