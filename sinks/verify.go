package sinks

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Problems that VerifyChain reports for a broken row.
const (
	// ProblemPrevHash means the row's prev_hash is not the hash of the row
	// before it: a row was deleted, inserted or moved.
	ProblemPrevHash = "prev_hash_mismatch"
	// ProblemHash means the row's stored hash differs from the hash of its
	// columns: the row was modified.
	ProblemHash = "hash_mismatch"
	// ProblemDuplicateOffset means two rows share one Kafka offset.
	ProblemDuplicateOffset = "duplicate_offset"
)

// verifyPageOffsets is the width of the offset range that VerifyChain
// reads per query. It bounds the rows per query, and so its memory, because
// a partition holds at most one row per offset unless rows were duplicated.
const verifyPageOffsets = 50000

// ChainReport is the result of VerifyChain.
type ChainReport struct {
	Rows       uint64
	Partitions []PartitionChain
	// FirstBroken is the first broken row of the lowest broken partition,
	// or nil when every chain verifies.
	FirstBroken *BrokenRow
}

// OK reports whether every partition's chain verified.
func (r ChainReport) OK() bool { return r.FirstBroken == nil }

// PartitionChain is the verification result of one partition's chain.
type PartitionChain struct {
	Partition   int32
	Rows        uint64
	FirstOffset int64
	LastOffset  int64
	// LastHash is the stored hash of the row at LastOffset.
	LastHash string
	// BrokenRows counts the rows that failed a check. After a broken row
	// the verification continues from that row's stored hash, so one
	// tampered row usually counts once or twice, not for the rest of the
	// chain.
	BrokenRows  uint64
	FirstBroken *BrokenRow
}

// BrokenRow is an audit row that failed verification.
type BrokenRow struct {
	Partition int32
	Offset    int64
	ID        string
	Problem   string // ProblemPrevHash, ProblemHash or ProblemDuplicateOffset
	Expected  string // the hash the row should carry; empty for a duplicate
	Stored    string // the hash the row carries
}

func (b BrokenRow) String() string {
	return fmt.Sprintf("partition %d offset %d (id %q): %s, expected %s, stored %s",
		b.Partition, b.Offset, b.ID, b.Problem, b.Expected, b.Stored)
}

// VerifyChain recomputes the hash chain of every partition of
// database.audit_log in offset order and reports the first broken row of
// each. The first row of a partition must have GenesisHash as prev_hash.
//
// NOTE: the chain proves only that rows were not changed, removed or added
// after they were written. Someone with write access who recomputes every
// later hash goes unnoticed until signed checkpoints are compared.
func VerifyChain(ctx context.Context, conn driver.Conn, database string) (ChainReport, error) {
	var report ChainReport
	if err := checkDatabaseName(database); err != nil {
		return report, err
	}
	partitions, err := auditPartitions(ctx, conn, database)
	if err != nil {
		return report, err
	}
	for _, p := range partitions {
		pc, err := verifyPartition(ctx, conn, database, p, verifyPageOffsets)
		if err != nil {
			return report, err
		}
		report.Rows += pc.Rows
		report.Partitions = append(report.Partitions, pc)
		if report.FirstBroken == nil && pc.FirstBroken != nil {
			report.FirstBroken = pc.FirstBroken
		}
	}
	return report, nil
}

func auditPartitions(ctx context.Context, conn driver.Conn, database string) ([]int32, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT kafka_partition FROM "+database+".audit_log ORDER BY kafka_partition")
	if err != nil {
		return nil, fmt.Errorf("list audit partitions: %w", err)
	}
	defer rows.Close()
	var out []int32
	for rows.Next() {
		var p int32
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list audit partitions: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit partitions: %w", err)
	}
	return out, nil
}

// chainVerifier checks rows of one partition fed in offset order.
type chainVerifier struct {
	pc      PartitionChain
	tip     string // stored hash of the previous row
	started bool
}

func newChainVerifier(partition int32) *chainVerifier {
	return &chainVerifier{pc: PartitionChain{Partition: partition}, tip: GenesisHash}
}

func (v *chainVerifier) check(r *auditRow) {
	v.pc.Rows++
	if !v.started {
		v.pc.FirstOffset = r.Offset
		v.started = true
	}

	switch want := chainHash(r.PrevHash, r); {
	case v.pc.Rows > 1 && r.Offset == v.pc.LastOffset:
		v.broken(r, ProblemDuplicateOffset, "", r.Hash)
	case r.PrevHash != v.tip:
		v.broken(r, ProblemPrevHash, v.tip, r.PrevHash)
	case r.Hash != want:
		v.broken(r, ProblemHash, want, r.Hash)
	}

	// Continue from what is stored, so that one bad row does not fail
	// every row after it.
	v.tip = r.Hash
	v.pc.LastOffset = r.Offset
	v.pc.LastHash = r.Hash
}

func (v *chainVerifier) broken(r *auditRow, problem, expected, stored string) {
	v.pc.BrokenRows++
	if v.pc.FirstBroken == nil {
		v.pc.FirstBroken = &BrokenRow{
			Partition: r.Partition,
			Offset:    r.Offset,
			ID:        r.ID,
			Problem:   problem,
			Expected:  expected,
			Stored:    stored,
		}
	}
}

// auditSelectColumns lists the columns that scanAuditRow reads, in order.
const auditSelectColumns = "time, time_ns, id, stage, action, route, outcome, reason, source, account, subject, device, " +
	"message_id, request_id, status, bytes_in, bytes_out, latency_seconds, detail, kafka_partition, kafka_offset, prev_hash, hash"

func scanAuditRow(rows driver.Rows, r *auditRow) error {
	var t time.Time
	if err := rows.Scan(&t, &r.TimeNS, &r.ID, &r.Stage, &r.Action, &r.Route, &r.Outcome, &r.Reason,
		&r.Source, &r.Account, &r.Subject, &r.Device, &r.MessageID, &r.RequestID, &r.Status,
		&r.BytesIn, &r.BytesOut, &r.LatencySeconds, &r.Detail, &r.Partition, &r.Offset,
		&r.PrevHash, &r.Hash); err != nil {
		return err
	}
	r.Time = uint32(t.Unix())
	return nil
}

// verifyPartition reads the partition in pages of pageOffsets offsets
// each, so that every query reads one bounded range of the primary
// key (kafka_partition, kafka_offset) and sorts few rows.
func verifyPartition(ctx context.Context, conn driver.Conn, database string, partition int32, pageOffsets int64) (PartitionChain, error) {
	v := newChainVerifier(partition)
	table := database + ".audit_log"

	var first, last int64
	err := conn.QueryRow(ctx, "SELECT min(kafka_offset), max(kafka_offset) FROM "+table+" WHERE kafka_partition = ?", partition).
		Scan(&first, &last)
	if err != nil {
		return v.pc, fmt.Errorf("read offset range of audit partition %d: %w", partition, err)
	}

	query := "SELECT " + auditSelectColumns + " FROM " + table +
		" WHERE kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ? ORDER BY kafka_offset"
	for from := first; from <= last; from += pageOffsets {
		if err := verifyPage(ctx, conn, v, query, partition, from, from+pageOffsets); err != nil {
			return v.pc, fmt.Errorf("read audit partition %d from offset %d: %w", partition, from, err)
		}
	}
	return v.pc, nil
}

func verifyPage(ctx context.Context, conn driver.Conn, v *chainVerifier, query string, partition int32, from, to int64) error {
	rows, err := conn.Query(ctx, query, partition, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r auditRow
	for rows.Next() {
		if err := scanAuditRow(rows, &r); err != nil {
			return err
		}
		v.check(&r)
	}
	return rows.Err()
}
