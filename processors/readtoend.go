package processors

import (
	"context"
	"fmt"

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
