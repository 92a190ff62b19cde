package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/syncguard/syncguard/internal/testenv"
)

// TestBenchShortRun runs `syncguard bench` for a few seconds against the
// real Kafka and ClickHouse. It checks the plumbing that the figures on the
// benchmark page rely on: load from child processes, every round measured,
// and every sampled acknowledgement found as a ClickHouse row. It checks
// no speed, which a timed test could not judge fairly.
func TestBenchShortRun(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	chAddr := testenv.ClickHouseAddr(t)
	s := &stack{t: t}
	out := s.mustRun("bench",
		"--brokers", strings.Join(brokers, ","), "--clickhouse", chAddr,
		"--warmup", "1s", "--duration", "2s", "--rounds", "2", "--concurrency", "16",
		"--dir", t.TempDir())

	rounds := regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| (\d+) \| ([0-9.]+) \| (\d+) of (\d+) \|`).FindAllStringSubmatch(out, -1)
	if len(rounds) != 2 {
		t.Fatalf("want 2 round rows, got %d in:\n%s", len(rounds), out)
	}
	for _, r := range rounds {
		noop, _ := strconv.Atoi(r[2])
		ingest, _ := strconv.Atoi(r[3])
		failed, _ := strconv.Atoi(r[5])
		if noop == 0 || ingest == 0 {
			t.Errorf("round %s: do-nothing %d/s, ingest %d/s; want both above zero", r[1], noop, ingest)
		}
		if failed != 0 {
			t.Errorf("round %s: %d non-2xx answers at full load, want 0", r[1], failed)
		}
	}
	if !strings.Contains(out, "| SyncGuard / do-nothing, median round |") {
		t.Errorf("no median ratio in:\n%s", out)
	}
	samples := regexp.MustCompile(`end-to-end samples \(missing\) \| (\d+) \((\d+)\)`).FindStringSubmatch(out)
	if samples == nil {
		t.Fatalf("no end-to-end sample row in:\n%s", out)
	}
	if n, _ := strconv.Atoi(samples[1]); n == 0 {
		t.Errorf("no end-to-end samples: the half-load acknowledgements did not reach the watcher\n%s", out)
	}
	if samples[2] != "0" {
		t.Errorf("%s sampled acknowledgements never appeared in ClickHouse\n%s", samples[2], out)
	}
	wait := regexp.MustCompile(`Kafka acknowledgement wait, p99 at most \| ([^|]+) \|`).FindStringSubmatch(out)
	if wait == nil {
		t.Fatalf("no Kafka acknowledgement wait row in:\n%s", out)
	}
	if wait[1] == "0s" {
		t.Errorf("the produce-wait histogram saw nothing during the half-load phase\n%s", out)
	}
}
