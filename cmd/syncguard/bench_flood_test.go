package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/internal/loadgen"
)

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    uint64
		wantErr string
	}{
		{
			name:   "typical status",
			status: "Name:\tsyncguard\nVmPeak:\t 2000000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 100000 kB\n",
			want:   123456 * 1024,
		},
		{name: "zero", status: "VmRSS:\t0 kB\n", want: 0},
		{name: "no VmRSS line", status: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantErr: "no VmRSS line"},
		{name: "similar field name only", status: "VmRSSx:\t12 kB\n", wantErr: "no VmRSS line"},
		{name: "missing unit", status: "VmRSS:\t12\n", wantErr: "expected"},
		{name: "other unit", status: "VmRSS:\t12 MB\n", wantErr: "expected"},
		{name: "not a number", status: "VmRSS:\tmany kB\n", wantErr: "invalid number"},
		{name: "overflows bytes", status: "VmRSS:\t18446744073709551615 kB\n", wantErr: "invalid number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVMRSS(strings.NewReader(tt.status))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseVMRSS error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseVMRSS: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseVMRSS = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReadRSSOfThisProcess(t *testing.T) {
	rss, err := readRSS()
	if err != nil {
		t.Skipf("no /proc/self/status on this system: %v", err)
	}
	// A running Go test binary holds at least its runtime and text pages.
	if rss < 1<<20 {
		t.Errorf("readRSS = %d bytes, want at least 1 MiB", rss)
	}
}

func TestLegitSourceAddrs(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		limit   ingest.RateLimit
		want    []string
		wantErr bool
	}{
		{name: "limiter off", rate: 5000, limit: ingest.RateLimit{}, want: []string{"127.0.0.1"}},
		{name: "half the limit fits one", rate: 100, limit: ingest.RateLimit{Rate: 200, Burst: 400}, want: []string{"127.0.0.1"}},
		{
			name: "default rate and limit", rate: 500, limit: ingest.RateLimit{Rate: 200, Burst: 400},
			want: []string{"127.0.0.1", "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"},
		},
		{name: "just above half", rate: 101, limit: ingest.RateLimit{Rate: 200, Burst: 400}, want: []string{"127.0.0.1", "127.0.1.1"}},
		{name: "too many addresses", rate: 1_000_000, limit: ingest.RateLimit{Rate: 200, Burst: 400}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := legitSourceAddrs(tt.rate, tt.limit)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("legitSourceAddrs = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("legitSourceAddrs: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("legitSourceAddrs = %v, want %v", got, tt.want)
			}
			if slices.Contains(got, floodSourceAddr) {
				t.Errorf("legitSourceAddrs = %v, includes the flood's address %s", got, floodSourceAddr)
			}
		})
	}
}

// gauge returns a gauge series with the given label pairs ("k", "v", ...).
func gauge(t *testing.T, value float64, labels ...string) *dto.Metric {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("gauge: odd number of label strings %v", labels)
	}
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(value)}}
	for i := 0; i < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return m
}

func family(name string, metrics ...*dto.Metric) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Metric: metrics}
}

func TestCapacityUses(t *testing.T) {
	families := []*dto.MetricFamily{
		family("syncguard_ingest_ratelimit_keys",
			gauge(t, 3, "limiter", "source"),
			gauge(t, 150, "limiter", "account"),
			gauge(t, 2, "limiter", "device")),
		family("syncguard_ingest_ratelimit_keys_capacity",
			gauge(t, 100, "limiter", "account"),
			gauge(t, 100, "limiter", "source")),
		family("syncguard_detector_keys", gauge(t, 1, "rule", "volume_account")),
	}
	got := capacityUses(families, "syncguard_ingest_ratelimit_keys")
	if len(got) != 3 {
		t.Fatalf("capacityUses returned %d series, want 3: %+v", len(got), got)
	}
	byLabels := map[string]capacityUse{}
	for _, c := range got {
		byLabels[c.labels] = c
	}
	if c := byLabels["limiter=source"]; c.keys != 3 || c.capacity != 100 || !c.within() {
		t.Errorf("source = %+v, want 3 keys of 100, within", c)
	}
	if c := byLabels["limiter=account"]; c.keys != 150 || c.capacity != 100 || c.within() {
		t.Errorf("account = %+v, want 150 keys of 100, not within", c)
	}
	if c := byLabels["limiter=device"]; !math.IsNaN(c.capacity) || c.within() {
		t.Errorf("device = %+v, want no capacity and not within", c)
	}
	if got[0].labels != "limiter=account" {
		t.Errorf("first series = %q, want sorted by labels with limiter=account first", got[0].labels)
	}
	if missing := capacityUses(families, "syncguard_absent_keys"); len(missing) != 0 {
		t.Errorf("capacityUses of an absent metric = %+v, want none", missing)
	}
}

func TestMetricSum(t *testing.T) {
	counter := &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(4)}}
	families := []*dto.MetricFamily{
		family("syncguard_ingest_audit_dropped_total", counter, &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(6)}}),
		family("syncguard_ingest_blocks", gauge(t, 2, "kind", "source"), gauge(t, 5, "kind", "device")),
	}
	if got := metricSum(families, "syncguard_ingest_audit_dropped_total"); got != 10 {
		t.Errorf("counter sum = %v, want 10", got)
	}
	if got := metricSum(families, "syncguard_ingest_blocks"); got != 7 {
		t.Errorf("gauge sum = %v, want 7", got)
	}
	if got := metricSum(families, "syncguard_absent_total"); got != 0 {
		t.Errorf("absent sum = %v, want 0", got)
	}
}

// phaseRow returns a row whose legitimate p99 is p99 and whose limiter
// holds keys of capacity 100.
func phaseRow(t *testing.T, p99 time.Duration, sent, ok int64, keys float64) floodRow {
	t.Helper()
	return floodRow{
		legit:    legitResult{sent: sent, ok: ok, latency: loadgen.LatencySummary{P99: p99}},
		limiters: []capacityUse{{labels: "limiter=source", keys: keys, capacity: 100}},
	}
}

func TestFloodVerdict(t *testing.T) {
	base := phaseRow(t, 10*time.Millisecond, 100, 100, 1)
	control := phaseRow(t, 50*time.Millisecond, 100, 100, 1)
	control.control = true
	tests := []struct {
		name string
		row  floodRow
		base *floodRow
		want string
	}{
		{name: "baseline", row: base, base: nil, want: "baseline; memory within caps"},
		{name: "exactly twice", row: phaseRow(t, 20*time.Millisecond, 100, 100, 2), base: &base, want: "met"},
		{name: "above twice", row: phaseRow(t, 21*time.Millisecond, 100, 100, 2), base: &base, want: "not met: p99 2.10x"},
		{name: "legit rejected", row: phaseRow(t, 10*time.Millisecond, 100, 97, 2), base: &base, want: "not met: 3 legit non-2xx"},
		{
			name: "keys over capacity", row: phaseRow(t, 10*time.Millisecond, 100, 100, 101), base: &base,
			want: "not met: limiter=source 101 keys over capacity 100",
		},
		{name: "control is not judged", row: control, base: &base, want: "control, not judged"},
		{name: "zero baseline p99", row: phaseRow(t, time.Millisecond, 100, 100, 2), base: &floodRow{}, want: "not met: p99 +Infx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := floodVerdict(tt.row, tt.base); got != tt.want {
				t.Errorf("floodVerdict = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFormatStatuses(t *testing.T) {
	tests := []struct {
		name       string
		byStatus   map[int]int64
		noResponse int64
		want       string
	}{
		{name: "ascending codes", byStatus: map[int]int64{429: 3400, 401: 12}, want: "401: 12, 429: 3400"},
		{name: "with errors", byStatus: map[int]int64{401: 5}, noResponse: 2, want: "401: 5, no response: 2"},
		{name: "nothing", byStatus: nil, want: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatStatuses(tt.byStatus, tt.noResponse); got != tt.want {
				t.Errorf("formatStatuses = %q, want %q", got, tt.want)
			}
		})
	}
}
