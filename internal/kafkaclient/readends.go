package kafkaclient

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ReadEnds returns, for each partition of topic that has records (only
// those in partitions, when given), the offset where a read_committed
// reader that reads the topic to its end stops: the last stable offset,
// because such a reader cannot pass an open transaction. Partitions whose
// log start offset has reached it are left out, since there is nothing to
// read in them.
func ReadEnds(ctx context.Context, adm *kadm.Client, topic string, partitions ...int32) (map[int32]int64, error) {
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
		return nil, fmt.Errorf("list last stable offsets of %s: topic not found; syncguard run creates the topics once Kafka is reachable", topic)
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
