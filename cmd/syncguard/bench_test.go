package main

import (
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/internal/loadgen"
)

func TestQuantileSinceCountsOnlyNewObservations(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "x_seconds", Buckets: []float64{.001, .01, .1, 1},
	}, []string{"route"})
	reg.MustRegister(h)
	// Slow observations before the snapshot must not count.
	for range 1000 {
		h.WithLabelValues("a").Observe(0.5)
	}
	before, err := snapshotHistogram(reg, "x_seconds")
	if err != nil {
		t.Fatal(err)
	}
	// 98 fast and 2 medium observations over two series: the 99th
	// percentile falls in the 10 ms bucket.
	for range 49 {
		h.WithLabelValues("a").Observe(0.0005)
		h.WithLabelValues("b").Observe(0.0005)
	}
	h.WithLabelValues("a").Observe(0.005)
	h.WithLabelValues("b").Observe(0.005)
	after, err := snapshotHistogram(reg, "x_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if got, n := after.quantileSince(before, 0.99); got != 10*time.Millisecond || n != 100 {
		t.Errorf("p99 = %s over %d, want 10ms over 100", got, n)
	}
	if got, _ := after.quantileSince(before, 0.5); got != time.Millisecond {
		t.Errorf("p50 = %s, want 1ms", got)
	}

	// One observation above the last bucket is the 99th percentile of 100.
	h.WithLabelValues("a").Observe(5)
	for range 99 {
		h.WithLabelValues("a").Observe(0.0005)
	}
	last, err := snapshotHistogram(reg, "x_seconds")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := last.quantileSince(after, 1)
	if got <= time.Second {
		t.Errorf("max = %s, want above the last bucket", got)
	}
	if text := formatBucketBound(got); text != "above the last bucket" {
		t.Errorf("formatBucketBound(max) = %q, want %q", text, "above the last bucket")
	}
	if got, n := last.quantileSince(last, 0.99); got != 0 || n != 0 {
		t.Errorf("no observations: got %s over %d, want 0 over 0", got, n)
	}
}

func TestSnapshotHistogramMissingFamily(t *testing.T) {
	s, err := snapshotHistogram(prometheus.NewRegistry(), "absent_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if got, n := s.quantileSince(histogramSnapshot{}, 0.99); got != 0 || n != 0 {
		t.Errorf("got %s over %d, want 0 over 0", got, n)
	}
}

func TestMedianRound(t *testing.T) {
	round := func(noop, full int64) benchRound {
		return benchRound{
			noop: loadgen.Report{ByStatus: map[int]int64{200: noop}, Elapsed: time.Second},
			full: loadgen.Report{ByStatus: map[int]int64{200: full, 503: 7}, Elapsed: time.Second},
		}
	}
	rounds := []benchRound{round(100, 40), round(100, 20), round(200, 60)}
	if got := medianRound(rounds).ratio(); got != 0.3 {
		t.Errorf("median ratio = %v, want 0.3", got)
	}
	// The lower middle of an even count.
	if got := medianRound(rounds[:2]).ratio(); got != 0.2 {
		t.Errorf("median ratio of two = %v, want 0.2", got)
	}
	if got := rounds[0].fullRate(); got != 40 {
		t.Errorf("full rate counts only 2xx: got %v, want 40", got)
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 4, 20, 0, 0, 123456789, time.UTC)
	in := loadgen.Report{
		Sent: 10, Missed: 1, Errors: 2, Elapsed: 1500 * time.Millisecond, Rate: 6.5,
		ByStatus: map[int]int64{200: 7, 429: 1},
		Latency:  loadgen.LatencySummary{Count: 8, P50: 3 * time.Millisecond, P99: 40 * time.Millisecond, Max: time.Second},
		Acks: []loadgen.Ack{
			{Kind: loadgen.KindWebhook, ID: "wamid.A", At: at},
			{Kind: loadgen.KindWebhook, ID: "wamid.B", Status: "read", At: at.Add(time.Millisecond)},
		},
		AcksDropped: 3,
		Dials:       5,
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := writeReportJSON(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := readReportJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Sent != in.Sent || out.Missed != in.Missed || out.Errors != in.Errors || out.Elapsed != in.Elapsed ||
		out.ByStatus[429] != 1 || out.Latency != in.Latency || out.AcksDropped != 3 || out.Dials != 5 {
		t.Errorf("report changed: got %+v", out)
	}
	if len(out.Acks) != 2 || out.Acks[1].Status != "read" || !out.Acks[0].At.Equal(at) || out.Acks[1].ID != "wamid.B" {
		t.Errorf("acks changed: got %+v", out.Acks)
	}
}

func TestFlagSetSeesOnlyGivenFlags(t *testing.T) {
	fset := flag.NewFlagSet("x", flag.ContinueOnError)
	fset.Int("concurrency", 256, "")
	fset.Bool("flood", false, "")
	if err := fset.Parse([]string{"--flood"}); err != nil {
		t.Fatal(err)
	}
	if !flagSet(fset, "flood") {
		t.Error("flagSet(flood) = false for a given flag")
	}
	if flagSet(fset, "concurrency") {
		t.Error("flagSet(concurrency) = true for a flag left at its default")
	}
}
