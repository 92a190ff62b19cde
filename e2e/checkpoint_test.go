package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditVerifyDetectsTailDeletion deletes the newest audit rows of a
// stopped stack. The remaining chain is intact, so only the signed
// checkpoint that the sink wrote at shutdown shows the deletion.
func TestAuditVerifyDetectsTailDeletion(t *testing.T) {
	s := newStack(t, stackOptions{})
	f, _ := webhookFactory(t, 31, 1)
	for range 5 {
		req := f.Next()
		if got := s.sendGenerated(req); got.Status != http.StatusOK {
			t.Fatalf("webhook: status %d", got.Status)
		}
	}
	s.settle()
	s.stop()

	if n := s.count("SELECT count() FROM {db}.audit_checkpoints"); n == 0 {
		t.Fatal("the sink wrote no checkpoints")
	}
	out := s.mustRun("audit", "verify", "--config", s.configPath)
	if !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify before tampering: %s", out)
	}
	if strings.Contains(out, "newest checkpoint none") || !strings.Contains(out, "unanchored rows 0,") {
		t.Errorf("after a clean stop every partition should be anchored to its last row:\n%s", out)
	}

	// An auditor verifies with the public keys only.
	public := filepath.Join(t.TempDir(), "checkpoint-public.json")
	s.mustRun("keys", "export-public", "--file", filepath.Join(s.dir, "keyring.json"), "--out", public)
	if out := s.mustRun("audit", "verify", "--config", s.configPath, "--public-keys", public); !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify with exported public keys: %s", out)
	}

	// Delete the two newest rows of the partition that holds the most.
	var (
		partition int32
		last      int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.ch.QueryRow(ctx, fmt.Sprintf("SELECT kafka_partition, max(kafka_offset) AS o FROM %s.audit_log GROUP BY kafka_partition ORDER BY count() DESC, kafka_partition LIMIT 1", s.database)).
		Scan(&partition, &last)
	if err != nil {
		t.Fatal(err)
	}
	if last < 2 {
		t.Fatalf("partition %d has its newest row at offset %d; the test needs at least 3 rows", partition, last)
	}
	query := fmt.Sprintf("ALTER TABLE %s.audit_log DELETE WHERE kafka_partition = %d AND kafka_offset >= %d", s.database, partition, last-1)
	if err := s.ch.Exec(ctx, query); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the mutation", func() bool {
		return s.count("SELECT count() FROM system.mutations WHERE database = ? AND table = 'audit_log' AND is_done = 0", s.database) == 0
	})

	cmd := exec.Command(binary, "audit", "verify", "--config", s.configPath)
	cmd.Env = childEnv()
	got, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("audit verify passed after the tail rows were deleted:\n%s", got)
	}
	if !strings.Contains(string(got), "checkpoint_row_missing") {
		t.Errorf("audit verify output does not name checkpoint_row_missing:\n%s", got)
	}
	if strings.Contains(string(got), "prev_hash_mismatch") || strings.Contains(string(got), " hash_mismatch") {
		t.Errorf("the remaining chain should be intact; only the checkpoint shows the deletion:\n%s", got)
	}
}

// TestAuditVerifyFailsWithoutCheckpoints deletes every checkpoint, as
// someone hiding a change in ClickHouse would: verify must fail, because a
// chain with rows and no anchor proves nothing.
func TestAuditVerifyFailsWithoutCheckpoints(t *testing.T) {
	s := newStack(t, stackOptions{})
	f, _ := webhookFactory(t, 51, 1)
	req := f.NextText()
	if got := s.sendGenerated(req); got.Status != http.StatusOK {
		t.Fatalf("webhook: status %d", got.Status)
	}
	s.settle()
	s.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.audit_checkpoints DELETE WHERE 1 = 1", s.database)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the checkpoints to be deleted", func() bool {
		return s.count("SELECT count() FROM {db}.audit_checkpoints") == 0
	})

	cmd := exec.Command(binary, "audit", "verify", "--config", s.configPath)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unanchored") {
		t.Errorf("audit verify without checkpoints: err %v, output:\n%s", err, out)
	}
	cmd = exec.Command(binary, "audit", "verify", "--config", s.configPath, "--allow-no-checkpoints")
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("audit verify --allow-no-checkpoints: %v\n%s", err, out)
	}
}

// TestAuditVerifyKafkaWitness deletes the newest audit rows of a
// partition together with every checkpoint that covers them, so that
// ClickHouse alone shows a shorter chain that is intact and anchored. The
// sink group's committed offset in Kafka still shows that rows are
// missing.
func TestAuditVerifyKafkaWitness(t *testing.T) {
	s := newStack(t, stackOptions{Extra: map[string]string{"sink": "checkpoint_interval: 300ms"}})
	f, _ := webhookFactory(t, 61, 1)
	send := func() {
		for range 5 {
			if got := s.sendGenerated(f.Next()); got.Status != http.StatusOK {
				t.Fatalf("webhook: status %d", got.Status)
			}
		}
		s.settle()
	}

	// Ingest keys its audit rows by source address, so every request's
	// row lands in one partition.
	send()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		partition int32
		last      int64
	)
	err := s.ch.QueryRow(ctx, fmt.Sprintf("SELECT kafka_partition, max(kafka_offset) FROM %s.audit_log WHERE stage = 'ingest' GROUP BY kafka_partition", s.database)).
		Scan(&partition, &last)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a checkpoint covering the first requests", func() bool {
		return s.count("SELECT count() FROM {db}.audit_checkpoints WHERE kafka_partition = ? AND kafka_offset >= ?", partition, last) > 0
	})
	var anchored int64
	if err := s.ch.QueryRow(ctx, fmt.Sprintf("SELECT max(kafka_offset) FROM %s.audit_checkpoints WHERE kafka_partition = %d", s.database, partition)).Scan(&anchored); err != nil {
		t.Fatal(err)
	}
	send()
	s.stop()
	if out := s.mustRun("audit", "verify", "--config", s.configPath); !strings.Contains(out, "audit chain intact") || !strings.Contains(out, "kafka: audit_log compared") {
		t.Fatalf("audit verify before tampering: %s", out)
	}

	verify := func(args ...string) (string, error) {
		return s.run(append([]string{"audit", "verify", "--config", s.configPath}, args...)...)
	}

	// A changed event id at the newest row: Kafka holds another event there.
	var newest int64
	if err := s.ch.QueryRow(ctx, fmt.Sprintf("SELECT max(kafka_offset) FROM %s.audit_log WHERE kafka_partition = %d", s.database, partition)).Scan(&newest); err != nil {
		t.Fatal(err)
	}
	if err := s.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.audit_log UPDATE id = 'forged-id' WHERE kafka_partition = %d AND kafka_offset = %d", s.database, partition, newest)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the update", func() bool {
		return s.count("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", s.database) == 0
	})
	if out, err := verify(); err == nil || !strings.Contains(out, "committed_row_changed") {
		t.Errorf("audit verify after the newest row's id changed: err %v, output does not name committed_row_changed:\n%s", err, out)
	}

	for _, table := range []string{"audit_log", "audit_checkpoints"} {
		q := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE kafka_partition = %d AND kafka_offset > %d", s.database, table, partition, anchored)
		if err := s.ch.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the mutations", func() bool {
		return s.count("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", s.database) == 0
	})
	if n := s.count("SELECT count() FROM {db}.audit_log WHERE kafka_partition = ? AND kafka_offset > ?", partition, anchored); n != 0 {
		t.Fatalf("%d rows left after offset %d", n, anchored)
	}

	// ClickHouse alone cannot tell: this is the gap the witness closes.
	if out, err := verify("--kafka=false"); err != nil {
		t.Fatalf("audit verify without Kafka should pass the consistent shorter chain:\n%s", out)
	}
	out, err := verify()
	if err == nil {
		t.Fatalf("audit verify passed after the newest rows and their checkpoints were deleted:\n%s", out)
	}
	if !strings.Contains(out, "committed_row_missing") {
		t.Errorf("audit verify output does not name committed_row_missing:\n%s", out)
	}
}
