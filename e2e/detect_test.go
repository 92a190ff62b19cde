package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/loadgen"
)

// TestDetectorScenario runs a scripted attack through the whole pipeline
// and expects exactly the alerts it should raise: one for the address
// that sent forged signatures and one for the account that got a spike.
func TestDetectorScenario(t *testing.T) {
	s := newStack(t, stackOptions{Extra: map[string]string{
		"detector": "volume:\n  threshold_account: 100\n  threshold_subject: 200\nfailure:\n  threshold_signature_source: 20",
	}})
	webhooks, accounts := webhookFactory(t, time.Now().UnixNano(), 3)
	base := loadgen.Config{Target: s.ingestURL, Webhooks: webhooks, Concurrency: 4, Timeout: 10 * time.Second}
	ctx := context.Background()

	// Background traffic below every threshold: 30 messages over the three
	// accounts.
	calm := base
	calm.Rate, calm.Requests, calm.Mix = 20, 30, loadgen.Mix{Text: 1}
	if _, err := loadgen.Run(ctx, calm); err != nil {
		t.Fatal(err)
	}
	// 25 forged webhooks from one address: warning at 20, critical only
	// from 100.
	avoidWindowEdge()
	forged, err := loadgen.ForgedBurst(25, "127.0.0.2").Run(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if forged.ByStatus[401] != 25 {
		t.Fatalf("forged burst: statuses %v, want 25 answers of 401", forged.ByStatus)
	}
	// 120 messages to one account: warning at 100, critical from 200.
	spiked := accounts[2]
	avoidWindowEdge()
	spike, err := loadgen.VolumeSpike(spiked, 120).Run(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if spike.ByStatus[200] != 120 {
		t.Fatalf("volume spike: statuses %v, want 120 answers of 200", spike.ByStatus)
	}

	s.waitCount(2, 60*time.Second, "SELECT count() FROM {db}.alerts")
	s.settle()

	want := []string{
		"failed_signature_source 127.0.0.2 warning",
		"volume_account " + spiked.PhoneNumberID + " warning",
	}
	got := s.alerts()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The alert's count and window fields describe the crossing.
	if n := s.count("SELECT count() FROM {db}.alerts WHERE rule = 'failed_signature_source' AND count >= 20 AND threshold = 20 AND window_seconds = 60 AND first_seen <= last_seen"); n != 1 {
		t.Errorf("failed_signature_source alert fields do not describe the crossing (%d rows match)", n)
	}
}

// avoidWindowEdge waits for the next minute when less than 15 seconds of
// the current one remain, so that a burst of a few seconds falls into one
// one-minute detector window instead of being split across two.
func avoidWindowEdge() {
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < 15*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
}

// alerts returns "rule key severity" of every stored alert, sorted.
func (s *stack) alerts() []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.ch.Query(ctx, "SELECT rule, key, severity FROM "+s.database+".alerts")
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var rule, key, severity string
		if err := rows.Scan(&rule, &key, &severity); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s", rule, key, severity))
	}
	sort.Strings(out)
	return out
}
