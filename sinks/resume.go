package sinks

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// maxListedOffsets bounds how many stored offsets a resume loads one by
// one. Normally at most one flush of rows is stored but not committed, so
// the bound only matters when a new consumer group meets a full table.
const maxListedOffsets = 100000

// partitionState is the resume and hash chain state of one assigned
// partition. The Writer loads it from the partition's table on the first
// fetch after an assignment.
type partitionState struct {
	// stored holds the offsets at or after the first fetched offset that
	// the table already has. For audit_log the value is the row's stored
	// hash, else it is empty.
	stored map[int64]string
	// storedThrough is set when too many rows were stored to list them:
	// every offset up to and including it counts as stored. -1 otherwise.
	storedThrough int64
	// tip is the hash of the last audit row of the partition, stored or
	// pending; audit partitions only.
	tip string
	// tipOffset is the offset of the row whose hash is tip, or -1 when
	// the partition has no audit row yet.
	tipOffset int64
}

// alreadyStored reports whether the table holds the record at offset, and
// moves the audit chain tip past a stored row.
func (s *partitionState) alreadyStored(offset int64) bool {
	if offset <= s.storedThrough {
		return true
	}
	hash, ok := s.stored[offset]
	if !ok {
		return false
	}
	delete(s.stored, offset)
	if hash != "" {
		s.tip = hash
		s.tipOffset = offset
	}
	return true
}

// loadPartitionState reads what t stores for one partition from offset
// from, the partition's first fetched offset, onwards.
//
// Rows at or after from are normally those of a flush whose offset commit
// did not happen. They are listed one by one, not just their maximum,
// because an INSERT that spans several ClickHouse partitions (months) is
// not atomic and may leave a gap after a crash.
func loadPartitionState(ctx context.Context, conn driver.Conn, database string, t *table, tp topicPartition, from int64) (*partitionState, error) {
	st := &partitionState{storedThrough: -1, tipOffset: -1}
	where, args := partitionFilter(t, tp)
	args = append(args, from)
	where += " AND kafka_offset >= ?"

	// Count first, so that an unexpectedly large tail is not listed.
	var (
		count     uint64
		maxOffset int64
	)
	q := "SELECT count(), max(kafka_offset) FROM " + database + "." + t.name + " WHERE " + where
	if err := conn.QueryRow(ctx, q, args...).Scan(&count, &maxOffset); err != nil {
		return nil, fmt.Errorf("read stored offsets of %s partition %d: %w", tp.topic, tp.partition, err)
	}

	switch {
	case count == 0:
	case count <= maxListedOffsets:
		stored, err := listStored(ctx, conn, database, t, where, args)
		if err != nil {
			return nil, fmt.Errorf("read stored offsets of %s partition %d: %w", tp.topic, tp.partition, err)
		}
		st.stored = stored
	default:
		// NOTE: this assumes the stored rows up to maxOffset have no gap,
		// which holds unless a crash split a multi-month INSERT.
		st.storedThrough = maxOffset
	}

	if t != auditTable {
		return st, nil
	}
	tip, tipOffset, err := chainTip(ctx, conn, database, tp.partition, from, st.storedThrough)
	if err != nil {
		return nil, err
	}
	st.tip, st.tipOffset = tip, tipOffset
	return st, nil
}

func partitionFilter(t *table, tp topicPartition) (string, []any) {
	if t.hasTopic {
		return "kafka_topic = ? AND kafka_partition = ?", []any{tp.topic, tp.partition}
	}
	return "kafka_partition = ?", []any{tp.partition}
}

func listStored(ctx context.Context, conn driver.Conn, database string, t *table, where string, args []any) (map[int64]string, error) {
	hashColumn := "''"
	if t == auditTable {
		hashColumn = "hash"
	}
	rows, err := conn.Query(ctx, "SELECT kafka_offset, "+hashColumn+" FROM "+database+"."+t.name+" WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	stored := make(map[int64]string)
	for rows.Next() {
		var (
			offset int64
			hash   string
		)
		if err := rows.Scan(&offset, &hash); err != nil {
			return nil, err
		}
		stored[offset] = hash
	}
	return stored, rows.Err()
}

// chainTip returns the hash that the next audit row of the partition links
// to, and the offset of the row that carries it. That row is the stored row
// at storedThrough when that is set, else the last stored row before offset
// from. Without such a row it returns GenesisHash and offset -1.
func chainTip(ctx context.Context, conn driver.Conn, database string, partition int32, from, storedThrough int64) (string, int64, error) {
	q := "SELECT hash, kafka_offset FROM " + database + ".audit_log WHERE kafka_partition = ? AND kafka_offset < ? ORDER BY kafka_offset DESC LIMIT 1"
	before := from
	if storedThrough >= 0 {
		before = storedThrough + 1
	}
	rows, err := conn.Query(ctx, q, partition, before)
	if err != nil {
		return "", 0, fmt.Errorf("read audit chain tip of partition %d: %w", partition, err)
	}
	defer func() { _ = rows.Close() }()
	tip, offset := GenesisHash, int64(-1)
	if rows.Next() {
		if err := rows.Scan(&tip, &offset); err != nil {
			return "", 0, fmt.Errorf("read audit chain tip of partition %d: %w", partition, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", 0, fmt.Errorf("read audit chain tip of partition %d: %w", partition, err)
	}
	return tip, offset, nil
}

// storedOffsets returns, per partition, which pending offsets of tr the
// table already holds. The Writer calls it before it retries an INSERT.
func storedOffsets(ctx context.Context, conn driver.Conn, database string, tr *tableRows) (map[topicPartition]map[int64]bool, error) {
	out := make(map[topicPartition]map[int64]bool)
	for tp, rng := range tr.offsetRanges() {
		where, args := partitionFilter(tr.table, tp)
		args = append(args, rng[0], rng[1])
		q := "SELECT kafka_offset FROM " + database + "." + tr.table.name + " WHERE " + where + " AND kafka_offset >= ? AND kafka_offset <= ?"
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read stored offsets of %s partition %d: %w", tp.topic, tp.partition, err)
		}
		set := make(map[int64]bool)
		for rows.Next() {
			var offset int64
			if err := rows.Scan(&offset); err != nil {
				_ = rows.Close()
				return nil, fmt.Errorf("read stored offsets of %s partition %d: %w", tp.topic, tp.partition, err)
			}
			set[offset] = true
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read stored offsets of %s partition %d: %w", tp.topic, tp.partition, err)
		}
		out[tp] = set
	}
	return out, nil
}
