package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/loadgen"
)

// startSecondIngest runs another `syncguard run --target=ingest` of the
// stack's deployment on its own ports and instance id, and returns its
// base URL.
func (s *stack) startSecondIngest(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.configPath)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	text := string(b)
	text = strings.Replace(text, strings.TrimPrefix(s.ingestURL, "http://"), addrs[0], 1)
	text = strings.Replace(text, strings.TrimPrefix(s.opsURL, "http://"), addrs[1], 1)
	text = strings.Replace(text, "instance_id: "+s.name, "instance_id: "+s.name+"-second", 1)
	path := filepath.Join(s.dir, "second.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(s.dir, "second.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--target=ingest", "--config", path)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	waitFor(t, 60*time.Second, "the second ingest to become ready", func() bool {
		resp, err := http.Get("http://" + addrs[1] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return "http://" + addrs[0]
}

// TestRedeliveryAcrossIngestInstances sends the same webhook to two ingest
// processes of one deployment, at once and again later, as Meta's retries
// could reach different instances behind a load balancer: every copy gets
// 200 and the message is stored once.
func TestRedeliveryAcrossIngestInstances(t *testing.T) {
	s := newStack(t, stackOptions{})
	second := s.startSecondIngest(t)
	f, _ := webhookFactory(t, 41, 1)
	req := f.NextText()
	id := req.MessageIDs()[0]

	send := func(base string) int {
		hreq, err := req.NewHTTPRequest(t.Context(), base)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i, base := range []string{s.ingestURL, second, s.ingestURL, second} {
		wg.Add(1)
		go func() { defer wg.Done(); statuses[i] = send(base) }()
	}
	wg.Wait()
	s.oneMessage(t, id)
	statuses = append(statuses, send(second), send(s.ingestURL))
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("copy %d: status %d, want 200", i, st)
		}
	}
	s.settle()
	if n := s.count("SELECT count() FROM {db}.messages WHERE message_id = ?", id); n != 1 {
		t.Errorf("%d rows for a message delivered 6 times through two instances, want 1", n)
	}
	if n := s.count("SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND outcome = 'duplicate' AND message_id = ?", id); n != 5 {
		t.Errorf("%d duplicate audit rows, want 5", n)
	}
}

// TestAppSecretRotation configures an expired, a current and a future
// secret for one app: only a signature under the current one is accepted,
// and the audit row names the secret that matched.
func TestAppSecretRotation(t *testing.T) {
	now := time.Now().UTC()
	apps := "    - name: main\n      verify_token: " + verifyToken + "\n      secrets:\n" +
		"        - {id: old, secret: old_secret_0123456789, not_after: " + now.Add(-time.Hour).Format(time.RFC3339) + "}\n" +
		"        - {id: current, secret: current_secret_0123456789, not_before: " + now.Add(-time.Hour).Format(time.RFC3339) + "}\n" +
		"        - {id: next, secret: next_secret_0123456789, not_before: " + now.Add(time.Hour).Format(time.RFC3339) + "}\n"
	s := newStack(t, stackOptions{Apps: apps})

	for _, c := range []struct {
		secret string
		want   int
	}{
		{"old_secret_0123456789", http.StatusUnauthorized},
		{"next_secret_0123456789", http.StatusUnauthorized},
		{"current_secret_0123456789", http.StatusOK},
	} {
		f, err := loadgen.NewWebhookFactory(time.Now().UnixNano(), loadgen.ExampleAccounts(secretOf(c.secret), 1))
		if err != nil {
			t.Fatal(err)
		}
		req := f.NextText()
		if got := s.sendGenerated(req); got.Status != c.want {
			t.Errorf("signed with %s: status %d, want %d", c.secret, got.Status, c.want)
		}
	}
	s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.audit_log WHERE stage = 'ingest' AND status = 200 AND position(detail, 'secret=current') > 0")
	s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.messages")
}
