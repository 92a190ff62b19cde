package sinks

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// topicPartition names one Kafka partition.
type topicPartition struct {
	topic     string
	partition int32
}

// tableRows are the pending rows of one table, in the order the records
// were fetched, so in offset order per partition.
type tableRows struct {
	table *table
	rows  []row
	// attempted is set once an INSERT of these rows was tried. Later
	// attempts first drop the rows that reached the table anyway, because
	// a failed INSERT may still have been applied.
	attempted bool
}

// pendingBatch collects the rows of the records handled since the last
// flush, and the last handled record per partition, which the flush
// commits after every insert succeeded.
type pendingBatch struct {
	tables []*tableRows // in first-use order
	rows   int
	// commit holds the last handled record per partition, written or
	// skipped because it was already stored.
	commit map[topicPartition]*kgo.Record
	// since is when the first record of the batch was handled.
	since time.Time
}

func newPendingBatch() *pendingBatch {
	return &pendingBatch{commit: make(map[topicPartition]*kgo.Record)}
}

// empty reports whether the batch has neither rows nor offsets to commit.
func (b *pendingBatch) empty() bool { return b.rows == 0 && len(b.commit) == 0 }

// handled records that rec needs no row or got the row r (when r is not
// nil), and starts the batch's flush timer if it has not started yet.
func (b *pendingBatch) handled(rec *kgo.Record, t *table, r *row, now time.Time) {
	if b.empty() {
		b.since = now
	}
	b.commit[topicPartition{rec.Topic, rec.Partition}] = rec
	if r == nil {
		return
	}
	b.rows++
	for _, tr := range b.tables {
		if tr.table == t {
			tr.rows = append(tr.rows, *r)
			return
		}
	}
	b.tables = append(b.tables, &tableRows{table: t, rows: []row{*r}})
}

// due reports whether the batch must be flushed now: it holds maxRows rows
// or its first record waited flushInterval.
func (b *pendingBatch) due(now time.Time, maxRows int, flushInterval time.Duration) bool {
	if b.empty() {
		return false
	}
	return b.rows >= maxRows || now.Sub(b.since) >= flushInterval
}

// deadline returns when the batch becomes due by time.
func (b *pendingBatch) deadline(flushInterval time.Duration) time.Time {
	return b.since.Add(flushInterval)
}

// records returns the records to commit.
func (b *pendingBatch) records() []*kgo.Record {
	out := make([]*kgo.Record, 0, len(b.commit))
	for _, rec := range b.commit {
		out = append(out, rec)
	}
	return out
}

func (b *pendingBatch) reset() {
	b.tables = b.tables[:0]
	b.rows = 0
	clear(b.commit)
	b.since = time.Time{}
}

// dropStored removes the rows whose offsets stored reports, per partition,
// and returns how many it removed.
func (tr *tableRows) dropStored(stored map[topicPartition]map[int64]bool) int {
	remaining := tr.rows[:0]
	for _, r := range tr.rows {
		if stored[topicPartition{r.topic, r.partition}][r.offset] {
			continue
		}
		remaining = append(remaining, r)
	}
	dropped := len(tr.rows) - len(remaining)
	clear(tr.rows[len(remaining):])
	tr.rows = remaining
	return dropped
}

// offsetRanges returns the lowest and highest pending offset per
// partition.
func (tr *tableRows) offsetRanges() map[topicPartition][2]int64 {
	out := make(map[topicPartition][2]int64)
	for _, r := range tr.rows {
		tp := topicPartition{r.topic, r.partition}
		rng, ok := out[tp]
		if !ok {
			rng = [2]int64{r.offset, r.offset}
		}
		rng[0] = min(rng[0], r.offset)
		rng[1] = max(rng[1], r.offset)
		out[tp] = rng
	}
	return out
}
