package processors

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The processor rebuilds state from compacted topics (data keys, dedupe
// markers) by reading them from the start up to their last stable offset
// (LSO) with read_committed. The readers keep control records, because every
// transaction on these topics ends with a commit or abort marker. Without the
// markers, the reader would never receive the last offset before the LSO and
// could not tell that it reached the end.

// readerOpts returns the options of a client that reads committed records of
// compacted topics, control records included.
func readerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}
}

// listReadEnds returns, for each partition of topic that has records, the
// offset where reading to the end stops: the last stable offset. Partitions
// whose log start offset has reached the LSO are left out, because there is
// nothing to read in them.
func listReadEnds(ctx context.Context, adm *kadm.Client, topic string, partitions ...int32) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list last stable offsets of %s: %w", topic, err)
	}
	if len(ends[topic]) == 0 {
		return nil, fmt.Errorf("list last stable offsets of %s: topic not found: syncguard run creates the topics once Kafka answers", topic)
	}

	out := make(map[int32]int64)
	for p, end := range ends[topic] {
		if len(partitions) > 0 && !slices.Contains(partitions, p) {
			continue
		}
		start, ok := starts.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("list start offsets of %s: partition %d missing from the response", topic, p)
		}
		if end.Offset > start.Offset {
			out[p] = end.Offset
		}
	}
	return out, nil
}

// consumeToEnd polls cl, which consumes topic, and passes every data record
// to apply until each partition in ends has been read up to its end offset.
// Control records only advance the position. Records past the end that the
// same poll returned are applied too.
//
// NOTE: the end is detected by seeing the record at offset end-1. That
// record is always there: the log cleaner leaves the active segment and
// everything from the LSO on alone. A broker that breaks this rule would
// keep this function polling until ctx ends.
func consumeToEnd(ctx context.Context, cl *kgo.Client, topic string, ends map[int32]int64, apply func(*kgo.Record) error) error {
	remaining := make(map[int32]int64, len(ends))
	for p, end := range ends {
		remaining[p] = end
	}
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s to its end: %w", topic, err)
		}
		for _, fe := range fetches.Errors() {
			return fmt.Errorf("read %s partition %d to its end: %w", fe.Topic, fe.Partition, fe.Err)
		}

		var applyErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if applyErr != nil {
				return
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			applyErr = apply(r)
		})
		if applyErr != nil {
			return applyErr
		}
	}
	return nil
}
