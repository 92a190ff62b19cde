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
