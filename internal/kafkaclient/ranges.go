package kafkaclient

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Range is the offsets [From, To) of one partition.
type Range struct {
	From, To int64
}

// ReadRanges reads the committed records of topic in ranges, keyed by
// partition, and calls each for every record that is not a transaction
// marker. It returns when every range has been read, when each returns an
// error, or when ctx ends. Markers are read too, so that a range ending
// with a commit marker is known to be done.
func (c Config) ReadRanges(ctx context.Context, topic string, ranges map[int32]Range, each func(*kgo.Record) error) error {
	offsets := make(map[int32]kgo.Offset, len(ranges))
	pending := make(map[int32]int64, len(ranges))
	for p, r := range ranges {
		if r.From < r.To {
			offsets[p] = kgo.NewOffset().At(r.From)
			pending[p] = r.To
		}
	}
	if len(pending) == 0 {
		return nil
	}
	cl, err := c.NewClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	for len(pending) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		if err := fetches.Err0(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		var stop error
		fetches.EachRecord(func(r *kgo.Record) {
			to, ok := pending[r.Partition]
			if stop != nil || !ok {
				return
			}
			if r.Offset >= to-1 {
				delete(pending, r.Partition)
			}
			if r.Offset >= to || r.Attrs.IsControl() {
				return
			}
			stop = each(r)
		})
		if stop != nil {
			return stop
		}
	}
	return nil
}
