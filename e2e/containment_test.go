package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/schemas"
)

// TestContainmentBlocksForger sends forged webhooks from one loopback
// address until the detector blocks it. Ingest must then reject valid
// webhooks from that address as blocked and accept them from another, and
// the block must be on the control topic and the audit trail.
func TestContainmentBlocksForger(t *testing.T) {
	const attacker = "127.0.0.3"
	s := newStack(t, stackOptions{Extra: map[string]string{
		"detector": "failure:\n  threshold_signature_source: 5\ncontainment:\n  min_severity: warning\n  block_ttl: 1m",
	}})
	webhooks, _ := webhookFactory(t, time.Now().UnixNano(), 1)
	base := loadgen.Config{Target: s.ingestURL, Webhooks: webhooks, Concurrency: 2, Timeout: 10 * time.Second}

	// Six forged webhooks cross the warning threshold of 5 within one
	// window.
	avoidWindowEdge()
	forged, err := loadgen.ForgedBurst(6, attacker).Run(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	if forged.ByStatus[401] != 6 {
		t.Fatalf("forged burst: statuses %v, want 6 answers of 401", forged.ByStatus)
	}

	fromAttacker := loopbackClient(t, attacker)
	fromOther := loopbackClient(t, "127.0.0.1")

	// Valid webhooks from the attacker's address are accepted until the
	// block reaches ingest.
	var last webhookResponse
	waitFor(t, 15*time.Second, "a valid webhook from "+attacker+" to be rejected as blocked", func() bool {
		last = s.sendWebhook(fromAttacker, webhooks.NextText())
		return last.Status == http.StatusForbidden
	})
	if last.Code != schemas.ReasonBlocked {
		t.Errorf("blocked webhook: problem code %q, want %q (body %s)", last.Code, schemas.ReasonBlocked, last.Body)
	}
	if got := s.sendWebhook(fromOther, webhooks.NextText()); got.Status != http.StatusOK {
		t.Errorf("valid webhook from 127.0.0.1: status %d, want 200 (body %s)", got.Status, got.Body)
	}

	// The control topic holds exactly the detector's block.
	var blocks []schemas.ControlRecord
	for _, rec := range s.readTopic(schemas.TopicControl) {
		var c schemas.ControlRecord
		if err := json.Unmarshal(rec.Value, &c); err != nil {
			t.Fatalf("decode control record: %v", err)
		}
		if want := schemas.ControlKey(c.Kind, c.Value); string(rec.Key) != want {
			t.Errorf("control record key = %q, want %q", rec.Key, want)
		}
		blocks = append(blocks, c)
	}
	if len(blocks) != 1 {
		t.Fatalf("control topic holds %d records %+v, want 1", len(blocks), blocks)
	}
	b := blocks[0]
	if b.Kind != schemas.ControlBlockSource || b.Value != attacker || !b.Active {
		t.Errorf("block = %s %s active %t, want an active block_source of %s", b.Kind, b.Value, b.Active, attacker)
	}
	if b.Actor != "detector:failed_signature_source" {
		t.Errorf("block actor = %q, want detector:failed_signature_source", b.Actor)
	}
	if got := b.ExpiresAt.Sub(b.CreatedAt); got != time.Minute {
		t.Errorf("block lasts %s, want 1m", got)
	}

	// The block is on the audit trail, once.
	s.waitCount(1, 30*time.Second,
		"SELECT count() FROM {db}.audit_log WHERE stage = 'detector' AND action = 'contain'")
	s.waitCount(1, 10*time.Second,
		"SELECT count() FROM {db}.audit_log WHERE stage = 'detector' AND action = 'contain' AND outcome = 'accepted' "+
			"AND reason = 'failed_signature_source' AND source = ? AND detail = 'blocked for 1m0s'", attacker)
	// Ingest audited the blocked request too.
	s.waitCount(1, 30*time.Second,
		"SELECT count() FROM {db}.audit_log WHERE stage = 'ingest' AND reason = 'blocked' AND source = ?", attacker)
}

// webhookResponse is ingest's response to one webhook.
type webhookResponse struct {
	Status int
	Code   string // problem code of an error response
	Body   []byte
}

// loopbackClient returns an HTTP client whose connections come from the
// given loopback address.
func loopbackClient(t *testing.T, source string) *http.Client {
	t.Helper()
	c, err := loadgen.NewClient(loadgen.ClientConfig{SourceAddr: source, Connections: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// sendWebhook sends one generated webhook with client.
func (s *stack) sendWebhook(client *http.Client, req loadgen.Request) webhookResponse {
	s.t.Helper()
	hr, err := http.NewRequest(req.Method, s.ingestURL+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		s.t.Fatal(err)
	}
	hr.Header = req.Header.Clone()
	resp, err := client.Do(hr)
	if err != nil {
		s.t.Fatalf("send webhook: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	out := webhookResponse{Status: resp.StatusCode, Body: body}
	if resp.StatusCode >= 400 {
		var problem struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(body, &problem); err != nil {
			s.t.Fatalf("error response %d is not a problem document: %v: %s", resp.StatusCode, err, body)
		}
		out.Code = problem.Code
	}
	return out
}

// TestRestartAfterContainment restarts a stack whose control topic ends in
// a detector transaction: ingest must read it to its end, become ready and
// still enforce the block, and `syncguard block list` must show it.
func TestRestartAfterContainment(t *testing.T) {
	s := newStack(t, stackOptions{Extra: map[string]string{
		"detector": "failure:\n  threshold_signature_source: 5\ncontainment:\n  min_severity: warning\n  block_ttl: 5m",
	}})
	webhooks, _ := webhookFactory(t, time.Now().UnixNano(), 1)
	base := loadgen.Config{Target: s.ingestURL, Webhooks: webhooks, Concurrency: 2, Timeout: 10 * time.Second}
	if _, err := loadgen.ForgedBurst(6, "127.0.0.3").Run(context.Background(), base); err != nil {
		t.Fatal(err)
	}
	attacker := loopbackClient(t, "127.0.0.3")
	waitFor(t, 15*time.Second, "the forger to be blocked", func() bool {
		return s.sendWebhook(attacker, webhooks.NextText()).Status == http.StatusForbidden
	})

	cmd := exec.Command(binary, "block", "list", "--config", s.configPath, "--timeout", "10s")
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "127.0.0.3") {
		t.Errorf("block list: %v\n%s", err, out)
	}

	s.stop()
	s.start("all", false)
	if got := s.sendWebhook(attacker, webhooks.NextText()); got.Status != http.StatusForbidden {
		t.Errorf("after the restart the forger got %d, want 403", got.Status)
	}
}
