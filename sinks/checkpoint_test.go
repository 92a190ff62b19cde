package sinks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
)

// TestCheckpointMessageGolden pins the canonical checkpoint encoding. The
// expected length and SHA-256 were computed by an independent Python
// implementation of the encoding that checkpointMessage documents:
//
//	f = lambda b: struct.pack('>I', len(b)) + b
//	u = lambda v: f(struct.pack('>Q', v))
//	f(b"syncguard.audit_checkpoint.v1") + f(b"syncguard") + u(2) + u(12345) + f(b"ab"*32) + u(1700000000)
func TestCheckpointMessageGolden(t *testing.T) {
	msg := checkpointMessage("syncguard", 2, 12345, strings.Repeat("ab", 32), 1700000000)
	if len(msg) != 150 {
		t.Errorf("len = %d, want 150", len(msg))
	}
	sum := sha256.Sum256(msg)
	const want = "656e59bab086fad2d0e9afe80a5deecd6a4d2d3957a22d277e058f7c03c60d66"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("sha256 = %s, want %s", got, want)
	}
}

func TestCheckpointMessageCoversEveryField(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	base := checkpointMessage("syncguard", 2, 12345, hash, 1700000000)
	cases := []struct {
		name string
		msg  []byte
	}{
		{"database", checkpointMessage("syncguard2", 2, 12345, hash, 1700000000)},
		{"partition", checkpointMessage("syncguard", 3, 12345, hash, 1700000000)},
		{"offset", checkpointMessage("syncguard", 2, 12346, hash, 1700000000)},
		{"hash", checkpointMessage("syncguard", 2, 12345, strings.Repeat("ac", 32), 1700000000)},
		{"signed_at", checkpointMessage("syncguard", 2, 12345, hash, 1700000001)},
		{"field boundary", checkpointMessage("syncguar", 2, 12345, "d"+hash, 1700000000)},
		{"negative partition", checkpointMessage("syncguard", -2, 12345, hash, 1700000000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.msg) == string(base) {
				t.Errorf("changing %s left the encoding unchanged", tc.name)
			}
		})
	}
}

func TestCheckpointSignatureBindsDatabase(t *testing.T) {
	ring := keys.Generate()
	cp, err := signCheckpoint(ring, "db_a", 1, 7, strings.Repeat("0f", 32), time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !cp.validSignature(ring, "db_a") {
		t.Fatal("signature does not verify for its own database")
	}
	if cp.validSignature(ring, "db_b") {
		t.Error("checkpoint of db_a verifies for db_b")
	}
	if cp.validSignature(keys.Generate(), "db_a") {
		t.Error("checkpoint verifies with another keyring")
	}
	moved := cp
	moved.Offset = 8
	if moved.validSignature(ring, "db_a") {
		t.Error("checkpoint moved to another offset still verifies")
	}
	cp.Signature = "not hex"
	if cp.validSignature(ring, "db_a") {
		t.Error("undecodable signature verifies")
	}
}

func TestChainVerifierUnanchoredRows(t *testing.T) {
	ring := keys.Generate()
	rows := buildChain(6) // partition 1, offsets 10, 12, ..., 20
	sign := func(offset int64, hash string) checkpoint {
		t.Helper()
		cp, err := signCheckpoint(ring, "db", 1, offset, hash, time.Unix(1700000000, 0))
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	at := func(i int) checkpoint { return sign(rows[i].Offset, rows[i].Hash) }
	cases := []struct {
		name           string
		checkpoints    []checkpoint
		wantValid      uint64
		wantUnanchored uint64
		wantNewest     int64
		wantProblems   []string
	}{
		{"none", nil, 0, 6, -1, nil},
		{"at the fourth row", []checkpoint{at(3)}, 1, 2, rows[3].Offset, nil},
		{"at the tip", []checkpoint{at(3), at(5)}, 2, 0, rows[5].Offset, nil},
		{"twice at one offset", []checkpoint{at(5), at(5)}, 2, 0, rows[5].Offset, nil},
		{"wrong hash", []checkpoint{at(2), sign(rows[4].Offset, rows[3].Hash)}, 1, 3, rows[4].Offset, []string{ProblemCheckpointHash}},
		{"between rows", []checkpoint{sign(rows[4].Offset+1, rows[4].Hash)}, 0, 6, rows[4].Offset + 1, []string{ProblemCheckpointRow}},
		{"past the tip", []checkpoint{sign(99, rows[5].Hash)}, 0, 6, 99, []string{ProblemCheckpointRow}},
		{
			"forged",
			[]checkpoint{{Partition: 1, Offset: rows[5].Offset, Hash: rows[5].Hash, SignedAt: 1, Signature: "00", KeyID: "c1"}},
			0, 6, -1,
			[]string{ProblemCheckpointSignature},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newChainVerifier(1, "db", ring)
			for _, cp := range tc.checkpoints {
				v.addCheckpoint(cp)
			}
			for i := range rows {
				v.check(&rows[i])
			}
			v.endPage()
			if v.pc.ValidCheckpoints != tc.wantValid {
				t.Errorf("ValidCheckpoints = %d, want %d", v.pc.ValidCheckpoints, tc.wantValid)
			}
			if v.pc.UnanchoredRows != tc.wantUnanchored {
				t.Errorf("UnanchoredRows = %d, want %d", v.pc.UnanchoredRows, tc.wantUnanchored)
			}
			if v.pc.NewestCheckpoint != tc.wantNewest {
				t.Errorf("NewestCheckpoint = %d, want %d", v.pc.NewestCheckpoint, tc.wantNewest)
			}
			var got []string
			for _, p := range v.problems {
				got = append(got, p.Problem)
			}
			if !slices.Equal(got, tc.wantProblems) {
				t.Errorf("problems = %v, want %v", got, tc.wantProblems)
			}
			if v.pc.CheckpointProblems != uint64(len(tc.wantProblems)) {
				t.Errorf("CheckpointProblems = %d, want %d", v.pc.CheckpointProblems, len(tc.wantProblems))
			}
		})
	}
}

// checkpointedStore runs a Writer with ring over 40 audit records on two
// partitions, stops it cleanly, and returns the database. Both partitions
// hold at least 4 rows.
func checkpointedStore(t *testing.T, ring *keys.Keyring) (driver.Conn, string) {
	t.Helper()
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	produce(t, kcfg, auditRecords(0, 40)...)
	w := startWriter(t, ch, kcfg, "g-"+randomName(t), func(w *Writer) { w.signer = ring })
	waitFor(t, 20*time.Second, "40 audit rows", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+ch.Database+".audit_log") == 40
	})
	w.stop(t)
	for p := range int32(2) {
		if n := countRows(t, conn, "SELECT count() FROM "+ch.Database+".audit_log WHERE kafka_partition = ?", p); n < 4 {
			t.Fatalf("partition %d has %d rows, want at least 4", p, n)
		}
	}
	return conn, ch.Database
}

// mutate runs an ALTER TABLE ... DELETE or UPDATE and waits until
// system.mutations reports it done, because mutations run in the
// background on ClickHouse 18.16.
func mutate(t *testing.T, conn driver.Conn, database, table, query string) {
	t.Helper()
	exec(t, conn, query)
	waitFor(t, 30*time.Second, "the mutation on "+table, func() bool {
		return countRows(t, conn, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0", database, table) == 0
	})
}

func maxOffset(t *testing.T, conn driver.Conn, database string, partition int32) int64 {
	t.Helper()
	var offset int64
	if err := conn.QueryRow(context.Background(), "SELECT max(kafka_offset) FROM "+database+".audit_log WHERE kafka_partition = ?", partition).
		Scan(&offset); err != nil {
		t.Fatal(err)
	}
	return offset
}

func verifyAudit(t *testing.T, conn driver.Conn, database string, opts VerifyOptions) ChainReport {
	t.Helper()
	report, err := VerifyAudit(context.Background(), conn, database, opts)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	return report
}

// wantProblem fails unless report lists problem for partition at offset
// (-1 for a partition problem).
func wantProblem(t *testing.T, report ChainReport, partition int32, offset int64, problem string) {
	t.Helper()
	if report.OK() {
		t.Errorf("report OK, want %s at partition %d offset %d", problem, partition, offset)
	}
	for _, p := range report.Problems {
		if p.Partition == partition && p.Offset == offset && p.Problem == problem {
			return
		}
	}
	t.Errorf("problems %v lack %s at partition %d offset %d", report.Problems, problem, partition, offset)
}

func TestWriterCheckpointsVerify(t *testing.T) {
	ring := keys.Generate()
	conn, ch := migratedClickHouse(t)
	db := ch.Database
	kcfg := testKafka(t)
	w := startWriter(t, ch, kcfg, "g-"+randomName(t), func(w *Writer) {
		w.signer = ring
		w.cfg.CheckpointInterval = 1500 * time.Millisecond
	})

	// While the Writer runs, the newest row of each partition gets
	// checkpointed. The second batch comes within the interval of the
	// first checkpoint, so its checkpoint is written when the interval
	// ends, while no record arrives.
	anchored := func() bool {
		return countRows(t, conn, "SELECT count() FROM (SELECT kafka_partition, max(kafka_offset) AS o FROM "+db+".audit_log GROUP BY kafka_partition) "+
			"ANY LEFT JOIN (SELECT kafka_partition, max(kafka_offset) AS c FROM "+db+".audit_checkpoints GROUP BY kafka_partition) USING kafka_partition WHERE c != o") == 0
	}
	for i, first := range []int{0, 20} {
		produce(t, kcfg, auditRecords(first, 20)...)
		waitFor(t, 20*time.Second, "the audit rows", func() bool {
			return countRows(t, conn, "SELECT count() FROM "+db+".audit_log") == uint64(first+20)
		})
		waitFor(t, 10*time.Second, "checkpoints at every partition's newest row while running", anchored)
		if got := w.metric(t, "syncguard_sink_checkpoints_written_total"); got < float64(i+1) {
			t.Errorf("checkpoints written = %v after batch %d", got, i+1)
		}
	}
	w.stop(t)

	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring, ExpectPartitions: 2})
	if !report.OK() {
		t.Fatalf("clean run does not verify: first broken %v, problems %v", report.FirstBroken, report.Problems)
	}
	if !report.SignaturesVerified || report.Rows != 40 || len(report.Partitions) != 2 {
		t.Errorf("report: signatures verified %v, rows %d, partitions %d; want true, 40, 2", report.SignaturesVerified, report.Rows, len(report.Partitions))
	}
	for _, p := range report.Partitions {
		if p.ValidCheckpoints < 2 || p.NewestCheckpoint != p.LastOffset || p.UnanchoredRows != 0 {
			t.Errorf("partition %d: %d valid checkpoints, newest at %d of last offset %d, %d unanchored rows; want at least 2, at the last offset, 0",
				p.Partition, p.ValidCheckpoints, p.NewestCheckpoint, p.LastOffset, p.UnanchoredRows)
		}
	}

	// An auditor with only the exported public keys gets the same result.
	pub, err := ring.CheckpointPublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "public.json")
	if err := pub.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := keys.LoadPublicKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if r := verifyAudit(t, conn, db, VerifyOptions{Verifier: loaded}); !r.OK() || r.Checkpoints != report.Checkpoints {
		t.Errorf("with exported public keys: ok %v, %d checkpoints, problems %v; want ok, %d", r.OK(), r.Checkpoints, r.Problems, report.Checkpoints)
	}
	// A keyring of another deployment accepts none of them.
	if r := verifyAudit(t, conn, db, VerifyOptions{Verifier: keys.Generate()}); r.OK() {
		t.Error("checkpoints verify with a keyring that did not sign them")
	}
}

func TestWriterWithoutKeyringWritesNoCheckpoints(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	produce(t, kcfg, auditRecords(0, 10)...)
	w := startWriter(t, ch, kcfg, "g-"+randomName(t), nil)
	waitFor(t, 20*time.Second, "10 audit rows", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+ch.Database+".audit_log") == 10
	})
	w.stop(t)
	if n := countRows(t, conn, "SELECT count() FROM "+ch.Database+".audit_checkpoints"); n != 0 {
		t.Errorf("%d checkpoints without a keyring, want 0", n)
	}
	report := verifyAudit(t, conn, ch.Database, VerifyOptions{})
	for _, p := range report.Partitions {
		if p.UnanchoredRows != p.Rows {
			t.Errorf("partition %d: %d unanchored of %d rows, want all", p.Partition, p.UnanchoredRows, p.Rows)
		}
	}
}

// TestCheckpointsDetectTailDeletion deletes the last rows of a partition.
// The chain of the remaining rows is intact, so only the checkpoint shows
// the deletion.
func TestCheckpointsDetectTailDeletion(t *testing.T) {
	ring := keys.Generate()
	conn, db := checkpointedStore(t, ring)
	last := maxOffset(t, conn, db, 0)
	mutate(t, conn, db, "audit_log", "ALTER TABLE "+db+".audit_log DELETE WHERE kafka_partition = 0 AND kafka_offset > "+itoa(last-3))

	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring})
	if report.FirstBroken != nil {
		t.Errorf("the hash chain alone reports %v; the test needs an intact chain", report.FirstBroken)
	}
	wantProblem(t, report, 0, last, ProblemCheckpointRow)
	if p := report.Partitions[1]; p.CheckpointProblems != 0 {
		t.Errorf("partition 1 has %d problems, want 0", p.CheckpointProblems)
	}
}

// TestCheckpointsDetectRecomputedRewrite changes a row near the tail and
// recomputes every later hash, so the chain verifies on its own.
func TestCheckpointsDetectRecomputedRewrite(t *testing.T) {
	ring := keys.Generate()
	conn, db := checkpointedStore(t, ring)
	last := maxOffset(t, conn, db, 0)

	rows := readPartition(t, conn, db, 0)
	k := len(rows) - 3
	rows[k].Detail = "rewritten"
	tip := rows[k].PrevHash
	tr := &tableRows{table: auditTable}
	for i := k; i < len(rows); i++ {
		rows[i].link(tip)
		tip = rows[i].Hash
		tr.rows = append(tr.rows, row{partition: 0, offset: rows[i].Offset, values: rows[i].values()})
	}
	mutate(t, conn, db, "audit_log", "ALTER TABLE "+db+".audit_log DELETE WHERE kafka_partition = 0 AND kafka_offset >= "+itoa(rows[k].Offset))
	if err := insertRows(context.Background(), conn, db, tr); err != nil {
		t.Fatal(err)
	}

	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring})
	if report.FirstBroken != nil {
		t.Errorf("the hash chain alone reports %v; the rewrite should keep it intact", report.FirstBroken)
	}
	wantProblem(t, report, 0, last, ProblemCheckpointHash)
}

func TestCheckpointsDetectDeletedPartition(t *testing.T) {
	ring := keys.Generate()
	conn, db := checkpointedStore(t, ring)
	mutate(t, conn, db, "audit_log", "ALTER TABLE "+db+".audit_log DELETE WHERE kafka_partition = 1")

	// The partition's checkpoints remain.
	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring})
	wantProblem(t, report, 1, -1, ProblemPartitionMissing)
	wantProblem(t, report, 1, maxCheckpoint(t, conn, db, 1), ProblemCheckpointRow)

	// Its checkpoints are deleted too: only the expected partition count
	// shows that partition 1 existed.
	mutate(t, conn, db, "audit_checkpoints", "ALTER TABLE "+db+".audit_checkpoints DELETE WHERE kafka_partition = 1")
	report = verifyAudit(t, conn, db, VerifyOptions{Verifier: ring, ExpectPartitions: 2})
	wantProblem(t, report, 1, -1, ProblemPartitionMissing)
	if p := report.Partitions[0]; p.CheckpointProblems != 0 {
		t.Errorf("partition 0 has %d problems, want 0", p.CheckpointProblems)
	}
}

func TestCheckpointsDetectDeletedCheckpoints(t *testing.T) {
	ring := keys.Generate()
	conn, db := checkpointedStore(t, ring)
	mutate(t, conn, db, "audit_checkpoints", "ALTER TABLE "+db+".audit_checkpoints DELETE WHERE kafka_partition = 0")
	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring})
	wantProblem(t, report, 0, -1, ProblemCheckpointMissing)
}

func TestCheckpointsDetectForgedSignature(t *testing.T) {
	ring := keys.Generate()
	conn, db := checkpointedStore(t, ring)
	rows := readPartition(t, conn, db, 0)
	tipRow := rows[len(rows)-1]

	// A checkpoint with the real hash, signed by another keyring that
	// also calls its key c1, and one whose signature bytes were changed.
	forged, err := signCheckpoint(keys.Generate(), db, 0, tipRow.Offset, tipRow.Hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	changed, err := signCheckpoint(ring, db, 0, rows[1].Offset, rows[1].Hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	changed.Signature = strings.Repeat("00", 64)
	if err := insertCheckpoints(context.Background(), conn, db, []checkpoint{forged, changed}); err != nil {
		t.Fatal(err)
	}

	report := verifyAudit(t, conn, db, VerifyOptions{Verifier: ring})
	wantProblem(t, report, 0, tipRow.Offset, ProblemCheckpointSignature)
	wantProblem(t, report, 0, rows[1].Offset, ProblemCheckpointSignature)
	if report.FirstBroken != nil {
		t.Errorf("rows reported broken: %v", report.FirstBroken)
	}
}

func readPartition(t *testing.T, conn driver.Conn, database string, partition int32) []auditRow {
	t.Helper()
	rs, err := conn.Query(context.Background(), "SELECT "+auditSelectColumns+" FROM "+database+".audit_log WHERE kafka_partition = ? ORDER BY kafka_offset", partition)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []auditRow
	for rs.Next() {
		var r auditRow
		if err := scanAuditRow(rs, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func maxCheckpoint(t *testing.T, conn driver.Conn, database string, partition int32) int64 {
	t.Helper()
	var offset int64
	if err := conn.QueryRow(context.Background(), "SELECT max(kafka_offset) FROM "+database+".audit_checkpoints WHERE kafka_partition = ?", partition).
		Scan(&offset); err != nil {
		t.Fatal(err)
	}
	return offset
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestNewCheckpointMode(t *testing.T) {
	oldPath := filepath.Join(t.TempDir(), "keyring.json")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	old := `{"master_keys":[{"id":"m1","key":"` + key + `","created_at":"2025-10-09T08:53:20Z"}],"active_master":"m1",` +
		`"pseudonym_key":"` + key + `","envelope_key":"` + key + `"}`
	if err := os.WriteFile(oldPath, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	oldRing, err := keys.Load(oldPath)
	if err != nil {
		t.Fatalf("load a keyring without a checkpoint key: %v", err)
	}

	cases := []struct {
		name       string
		ring       *keys.Keyring
		wantSigner bool
		wantErr    error
	}{
		{"keyring", keys.Generate(), true, nil},
		{"no keyring", nil, false, errNoKeyring},
		{"keyring without checkpoint key", oldRing, false, keys.ErrNoCheckpointKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(Options{Config: DefaultConfig(), Kafka: kafkaclient.Defaults(), Keyring: tc.ring})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if (w.signer != nil) != tc.wantSigner {
				t.Errorf("signer set = %v, want %v", w.signer != nil, tc.wantSigner)
			}
			if !errors.Is(w.checkpointOff, tc.wantErr) {
				t.Errorf("checkpoints off because of %v, want %v", w.checkpointOff, tc.wantErr)
			}
		})
	}
}
