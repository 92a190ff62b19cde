package sinks

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/syncguard/syncguard/internal/kafkaclient"
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

// Problems that VerifyAudit reports for checkpoints and partitions.
const (
	// ProblemCheckpointSignature means a checkpoint's signature does not
	// verify with any known public key: it was forged or changed, or it
	// was signed for another database.
	ProblemCheckpointSignature = "checkpoint_signature_invalid"
	// ProblemCheckpointRow means audit_log has no row at a checkpoint's
	// offset: rows were deleted, for example the tail of the partition.
	ProblemCheckpointRow = "checkpoint_row_missing"
	// ProblemCheckpointHash means the row at a checkpoint's offset carries
	// another hash than the one signed: the chain up to it was rewritten.
	ProblemCheckpointHash = "checkpoint_hash_mismatch"
	// ProblemPartitionMissing means a partition has checkpoints but no
	// rows, or, with VerifyOptions.ExpectPartitions, an expected partition
	// has neither rows nor checkpoints while other partitions have
	// checkpoints.
	ProblemPartitionMissing = "partition_missing"
	// ProblemCheckpointMissing means a partition has rows but no
	// checkpoints while other partitions have valid checkpoints: its
	// checkpoints may have been deleted.
	ProblemCheckpointMissing = "checkpoint_missing"
)

// maxListedProblems bounds ChainReport.Problems; every problem is still
// counted in PartitionChain.CheckpointProblems.
const maxListedProblems = 1000

// verifyPageOffsets is the width of the offset range that VerifyChain
// reads per query. It bounds the rows per query, and so its memory, because
// a partition holds at most one row per offset unless rows were duplicated.
const verifyPageOffsets = 50000

// ChainReport is the result of VerifyChain and VerifyAudit.
type ChainReport struct {
	Rows       uint64
	Partitions []PartitionChain
	// FirstBroken is the first broken row of the lowest broken partition,
	// or nil when every chain verifies.
	FirstBroken *BrokenRow
	// Checkpoints counts the rows of audit_checkpoints that were read.
	Checkpoints uint64
	// SignaturesVerified is set when a CheckpointVerifier checked every
	// checkpoint signature. Without it checkpoints are compared with the
	// rows but could be forged.
	SignaturesVerified bool
	// Problems lists checkpoint and partition problems in partition order,
	// then the problems VerifyKafkaWitness found, at most maxListedProblems
	// of them.
	Problems []Problem
	// KafkaChecked is set when the rows were compared with the audit topic.
	KafkaChecked bool
}

// OK reports whether every partition's chain verified and no checkpoint
// or partition problem was found.
func (r ChainReport) OK() bool {
	if r.FirstBroken != nil || len(r.Problems) > 0 {
		return false
	}
	for _, p := range r.Partitions {
		if p.CheckpointProblems > 0 {
			return false
		}
	}
	return true
}

// Problem is a checkpoint or partition problem.
type Problem struct {
	Partition int32
	// Offset is the checkpoint's offset, or -1 for a partition problem.
	Offset  int64
	KeyID   string
	Problem string // one of the Problem* constants of checkpoints and partitions
	Detail  string
}

func (p Problem) String() string {
	if p.Offset < 0 {
		return fmt.Sprintf("partition %d: %s: %s", p.Partition, p.Problem, p.Detail)
	}
	return fmt.Sprintf("partition %d checkpoint at offset %d (key %q): %s: %s", p.Partition, p.Offset, p.KeyID, p.Problem, p.Detail)
}

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

	// Checkpoints counts the partition's checkpoints; ValidCheckpoints
	// those that passed every check.
	Checkpoints      uint64
	ValidCheckpoints uint64
	// NewestCheckpoint is the highest offset of a checkpoint with a valid
	// signature, or -1 when there is none; NewestCheckpointAt is when it
	// was signed.
	NewestCheckpoint   int64
	NewestCheckpointAt time.Time
	// UnanchoredRows counts the rows after the last row that a valid
	// checkpoint matched: all rows when none did. Someone with write
	// access could remove or rewrite these rows without a trace.
	UnanchoredRows uint64
	// CheckpointProblems counts the checkpoint and partition problems.
	CheckpointProblems uint64
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

// VerifyChain is VerifyAudit without a CheckpointVerifier and without an
// expected partition count: checkpoints are compared with the rows, but
// their signatures are not checked.
func VerifyChain(ctx context.Context, conn driver.Conn, database string) (ChainReport, error) {
	return VerifyAudit(ctx, conn, database, VerifyOptions{})
}

// VerifyOptions are the optional checks of VerifyAudit.
type VerifyOptions struct {
	// Verifier checks checkpoint signatures. When it is nil signatures are
	// not checked and ChainReport.SignaturesVerified stays false.
	Verifier CheckpointVerifier
	// ExpectPartitions, when positive, is the partition count of the audit
	// topic. Partitions 0 to ExpectPartitions-1 that have neither rows nor
	// checkpoints are then reported missing when any partition has
	// checkpoints, because a partition deleted together with its
	// checkpoints leaves no trace in either table.
	ExpectPartitions int
	// Kafka, when set, also compares audit_log with the audit topic of
	// this cluster as read by the sink group SinkGroup; see
	// VerifyKafkaWitness.
	Kafka     *kafkaclient.Config
	SinkGroup string
}

// VerifyAudit recomputes the hash chain of every partition of
// database.audit_log in offset order and reports the first broken row of
// each. The first row of a partition must have GenesisHash as prev_hash.
//
// It then checks the partition's signed checkpoints: each signature must
// verify, and the row at each checkpoint's offset must exist and carry the
// signed hash. So rows removed or rewritten up to the newest checkpoint
// are detected even when every later hash was recomputed. Rows after the
// newest checkpoint are only counted, as PartitionChain.UnanchoredRows.
func VerifyAudit(ctx context.Context, conn driver.Conn, database string, opts VerifyOptions) (ChainReport, error) {
	report := ChainReport{SignaturesVerified: opts.Verifier != nil}
	if err := checkDatabaseName(database); err != nil {
		return report, err
	}
	partitions, err := auditPartitions(ctx, conn, database, opts.ExpectPartitions)
	if err != nil {
		return report, err
	}
	for _, p := range partitions {
		pc, problems, err := verifyPartition(ctx, conn, database, p, verifyPageOffsets, opts.Verifier)
		if err != nil {
			return report, err
		}
		report.Rows += pc.Rows
		report.Checkpoints += pc.Checkpoints
		report.Partitions = append(report.Partitions, pc)
		report.addProblems(problems)
		if report.FirstBroken == nil && pc.FirstBroken != nil {
			report.FirstBroken = pc.FirstBroken
		}
	}
	report.checkPartitions()
	if opts.Kafka != nil {
		problems, err := VerifyKafkaWitness(ctx, conn, database, *opts.Kafka, opts.SinkGroup)
		if err != nil {
			return report, fmt.Errorf("compare with Kafka (pass --kafka=false to skip): %w", err)
		}
		report.KafkaChecked = true
		report.addProblems(problems)
	}
	return report, nil
}

func (r *ChainReport) addProblems(problems []Problem) {
	for _, p := range problems {
		if len(r.Problems) >= maxListedProblems {
			return
		}
		r.Problems = append(r.Problems, p)
	}
}

// checkPartitions reports partitions that have checkpoints but no rows,
// and, once any partition has a valid checkpoint, partitions that have no
// checkpoints.
func (r *ChainReport) checkPartitions() {
	anchored := false
	for _, pc := range r.Partitions {
		if pc.ValidCheckpoints > 0 {
			anchored = true
		}
	}
	for i := range r.Partitions {
		pc := &r.Partitions[i]
		var problem, detail string
		switch {
		case pc.Rows == 0 && pc.Checkpoints > 0:
			problem = ProblemPartitionMissing
			detail = fmt.Sprintf("%d checkpoints but no audit rows", pc.Checkpoints)
		case pc.Rows == 0 && anchored:
			problem = ProblemPartitionMissing
			detail = "an expected partition has neither audit rows nor checkpoints, while other partitions have checkpoints"
		case pc.Checkpoints == 0 && anchored:
			problem = ProblemCheckpointMissing
			detail = fmt.Sprintf("%d audit rows but no checkpoints, while other partitions have valid checkpoints", pc.Rows)
		default:
			continue
		}
		pc.CheckpointProblems++
		r.addProblems([]Problem{{Partition: pc.Partition, Offset: -1, Problem: problem, Detail: detail}})
	}
}

// auditPartitions returns, in order, the partitions that audit_log or
// audit_checkpoints name and partitions 0 to expect-1.
func auditPartitions(ctx context.Context, conn driver.Conn, database string, expect int) ([]int32, error) {
	seen := make(map[int32]bool)
	for p := range int32(max(expect, 0)) {
		seen[p] = true
	}
	for _, table := range []string{"audit_log", "audit_checkpoints"} {
		if err := distinctPartitions(ctx, conn, database+"."+table, seen); err != nil {
			return nil, err
		}
	}
	out := make([]int32, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

func distinctPartitions(ctx context.Context, conn driver.Conn, table string, seen map[int32]bool) error {
	rows, err := conn.Query(ctx, "SELECT DISTINCT kafka_partition FROM "+table)
	if err != nil {
		return fmt.Errorf("list partitions of %s: %w", table, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var p int32
		if err := rows.Scan(&p); err != nil {
			return fmt.Errorf("list partitions of %s: %w", table, err)
		}
		seen[p] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list partitions of %s: %w", table, err)
	}
	return nil
}

// chainVerifier checks rows of one partition fed in offset order, and the
// partition's checkpoints page by page beside them.
type chainVerifier struct {
	pc       PartitionChain
	tip      string // stored hash of the previous row
	started  bool
	database string
	verifier CheckpointVerifier // nil skips signature checks
	problems []Problem
	// owed holds the checkpoints of the current page, by offset, whose
	// signature verified and whose row has not been read yet.
	owed map[int64][]checkpoint
	// sinceAnchor counts the rows after the last row that a checkpoint
	// matched.
	sinceAnchor uint64
}

func newChainVerifier(partition int32, database string, verifier CheckpointVerifier) *chainVerifier {
	return &chainVerifier{
		pc:       PartitionChain{Partition: partition, NewestCheckpoint: -1},
		tip:      GenesisHash,
		database: database,
		verifier: verifier,
		owed:     make(map[int64][]checkpoint),
	}
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

	v.sinceAnchor++
	v.pc.UnanchoredRows = v.sinceAnchor
	cps, ok := v.owed[r.Offset]
	if !ok {
		return
	}
	delete(v.owed, r.Offset)
	for _, cp := range cps {
		if cp.Hash != r.Hash {
			v.problem(cp, ProblemCheckpointHash, fmt.Sprintf("signed hash %s, row stores %s", cp.Hash, r.Hash))
			continue
		}
		v.pc.ValidCheckpoints++
		v.sinceAnchor = 0
		v.pc.UnanchoredRows = 0
	}
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

// addCheckpoint checks the signature of a checkpoint of the current page
// and, when it verifies, owes it a comparison with the row at its offset.
func (v *chainVerifier) addCheckpoint(cp checkpoint) {
	v.pc.Checkpoints++
	if v.verifier != nil && !cp.validSignature(v.verifier, v.database) {
		v.problem(cp, ProblemCheckpointSignature, "the signature does not verify with any known public key")
		return
	}
	if cp.Offset > v.pc.NewestCheckpoint {
		v.pc.NewestCheckpoint = cp.Offset
		v.pc.NewestCheckpointAt = time.Unix(int64(cp.SignedAt), 0).UTC()
	}
	v.owed[cp.Offset] = append(v.owed[cp.Offset], cp)
}

// endPage reports the checkpoints of the page whose row was never read.
func (v *chainVerifier) endPage() {
	offsets := make([]int64, 0, len(v.owed))
	for offset := range v.owed {
		offsets = append(offsets, offset)
	}
	slices.Sort(offsets)
	for _, offset := range offsets {
		for _, cp := range v.owed[offset] {
			v.problem(cp, ProblemCheckpointRow, "audit_log has no row at the checkpoint's offset")
		}
	}
	clear(v.owed)
}

func (v *chainVerifier) problem(cp checkpoint, problem, detail string) {
	v.pc.CheckpointProblems++
	if len(v.problems) < maxListedProblems {
		v.problems = append(v.problems, Problem{Partition: cp.Partition, Offset: cp.Offset, KeyID: cp.KeyID, Problem: problem, Detail: detail})
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

// verifyPartition reads the partition's rows and checkpoints in pages of
// pageOffsets offsets each, so that every query reads one bounded range of
// the primary key (kafka_partition, kafka_offset) and sorts few rows.
// Ranges without rows or checkpoints are skipped, so a far-off forged
// offset costs one page, not every page up to it.
func verifyPartition(ctx context.Context, conn driver.Conn, database string, partition int32, pageOffsets int64,
	verifier CheckpointVerifier,
) (PartitionChain, []Problem, error) {
	v := newChainVerifier(partition, database, verifier)
	rowQuery := "SELECT " + auditSelectColumns + " FROM " + database + ".audit_log" +
		" WHERE kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ? ORDER BY kafka_offset"
	checkpointQuery := "SELECT " + checkpointColumns + " FROM " + database + ".audit_checkpoints" +
		" WHERE kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ? ORDER BY kafka_offset"

	from := int64(math.MinInt64)
	for {
		next, ok, err := nextStoredOffset(ctx, conn, database, partition, from)
		if err != nil {
			return v.pc, v.problems, err
		}
		if !ok {
			break
		}
		from = next
		to := from + pageOffsets
		if to < from { // overflow at the top of the offset range
			to = math.MaxInt64
		}
		if err := loadCheckpoints(ctx, conn, v, checkpointQuery, partition, from, to); err != nil {
			return v.pc, v.problems, fmt.Errorf("read checkpoints of audit partition %d from offset %d: %w", partition, from, err)
		}
		if err := verifyPage(ctx, conn, v, rowQuery, partition, from, to); err != nil {
			return v.pc, v.problems, fmt.Errorf("read audit partition %d from offset %d: %w", partition, from, err)
		}
		v.endPage()
		if to == math.MaxInt64 {
			break
		}
		from = to
	}
	return v.pc, v.problems, nil
}

// nextStoredOffset returns the lowest offset at or after from that
// audit_log or audit_checkpoints holds for the partition, or false when
// neither holds one.
func nextStoredOffset(ctx context.Context, conn driver.Conn, database string, partition int32, from int64) (int64, bool, error) {
	next, found := int64(0), false
	for _, table := range []string{"audit_log", "audit_checkpoints"} {
		var (
			count  uint64
			offset int64
		)
		q := "SELECT count(), min(kafka_offset) FROM " + database + "." + table + " WHERE kafka_partition = ? AND kafka_offset >= ?"
		if err := conn.QueryRow(ctx, q, partition, from).Scan(&count, &offset); err != nil {
			return 0, false, fmt.Errorf("read offsets of %s partition %d: %w", table, partition, err)
		}
		if count > 0 && (!found || offset < next) {
			next, found = offset, true
		}
	}
	return next, found, nil
}

func loadCheckpoints(ctx context.Context, conn driver.Conn, v *chainVerifier, query string, partition int32, from, to int64) error {
	rows, err := conn.Query(ctx, query, partition, from, to)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var cp checkpoint
		if err := scanCheckpoint(rows, &cp); err != nil {
			return err
		}
		v.addCheckpoint(cp)
	}
	return rows.Err()
}

func verifyPage(ctx context.Context, conn driver.Conn, v *chainVerifier, query string, partition int32, from, to int64) error {
	rows, err := conn.Query(ctx, query, partition, from, to)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	var r auditRow
	for rows.Next() {
		if err := scanAuditRow(rows, &r); err != nil {
			return err
		}
		v.check(&r)
	}
	return rows.Err()
}
