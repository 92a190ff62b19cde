package metricnames

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestInExpr(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"bare name", `up`, []string{"up"}},
		{"matchers and range", `rate(a_total{job="x", reason=~"a|b"}[5m])`, []string{"a_total"}},
		{"grouping before body", `sum by (le, route) (rate(h_bucket[$__rate_interval]))`, []string{"h_bucket"}},
		{"grouping after body", `sum(rate(a_total[5m])) without (instance)`, []string{"a_total"}},
		{"binary with matching", `a / on (rule) group_left (x) b > 0.9`, []string{"a", "b"}},
		{"keywords and numbers", `a > bool 1e3 and b offset 1h30m unless c`, []string{"a", "b", "c"}},
		{"strings hide names", `label_replace(a, "dst", "not_a_metric", "src", "(.*)")`, []string{"a"}},
		{"duplicates once", `a + a * b`, []string{"a", "b"}},
		{"nameless selector", `{__name__=~"x.*"}`, []string{}},
		{"colon names", `job:requests:rate5m`, []string{"job:requests:rate5m"}},
		{"nested parentheses", `histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="}"}[1m])))`, []string{"x_bucket"}},
		{"comment", "a # b\n+ c", []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InExpr(tt.expr)
			if err != nil {
				t.Fatalf("InExpr(%q): %v", tt.expr, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("InExpr(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestInExprInvalid(t *testing.T) {
	for _, expr := range []string{`rate(a[5m)`, `a{job="x}`, `sum by (le (a)`} {
		if got, err := InExpr(expr); err == nil {
			t.Errorf("InExpr(%q) = %q, want an error", expr, got)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRegistered(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a", "metrics.go"), `package a

import prom "github.com/prometheus/client_golang/prometheus"

var (
	c = prom.NewCounterVec(prom.CounterOpts{Name: "x_requests_total", Help: "h"}, []string{"l"})
	h = prom.NewHistogram(prom.HistogramOpts{Name: "x_duration_seconds", Help: "h"})
	s = prom.NewSummary(prom.SummaryOpts{Name: "x_size_bytes", Help: "h"})
	g = prom.NewGauge(prom.GaugeOpts{Name: "x_keys"})
)
`)
	// Ignored: test files, testdata, hidden folders and other packages'
	// Opts types.
	writeFile(t, filepath.Join(root, "a", "metrics_test.go"), `package a

import "github.com/prometheus/client_golang/prometheus"

var _ = prometheus.CounterOpts{Name: "test_only_total"}
`)
	writeFile(t, filepath.Join(root, "a", "testdata", "x.go"), `package x

import "github.com/prometheus/client_golang/prometheus"

var _ = prometheus.CounterOpts{Name: "testdata_total"}
`)
	writeFile(t, filepath.Join(root, ".hidden", "x.go"), `package x

import "github.com/prometheus/client_golang/prometheus"

var _ = prometheus.CounterOpts{Name: "hidden_total"}
`)
	writeFile(t, filepath.Join(root, "b", "other.go"), `package b

import "example.com/prometheus"

var _ = prometheus.CounterOpts{Name: "other_total"}
`)

	got, err := Registered(root)
	if err != nil {
		t.Fatalf("Registered: %v", err)
	}
	want := map[string]Kind{
		"x_requests_total":   Counter,
		"x_duration_seconds": Histogram,
		"x_size_bytes":       Summary,
		"x_keys":             Gauge,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Registered = %v, want %v", got, want)
	}

	series := Series(got)
	for _, name := range []string{
		"x_requests_total", "x_keys",
		"x_duration_seconds_bucket", "x_duration_seconds_sum", "x_duration_seconds_count",
		"x_size_bytes", "x_size_bytes_sum", "x_size_bytes_count",
	} {
		if !series[name] {
			t.Errorf("Series lacks %s", name)
		}
	}
	if series["x_duration_seconds"] {
		t.Error("Series contains the bare histogram name x_duration_seconds, which Prometheus never stores")
	}
}

func TestRegisteredRejectsNonLiteralName(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "m.go"), `package m

import "github.com/prometheus/client_golang/prometheus"

const name = "x_total"

var _ = prometheus.CounterOpts{Name: name}
`)
	if got, err := Registered(root); err == nil {
		t.Errorf("Registered = %v, want an error for a name that is not a literal", got)
	}
}

func TestRegisteredRepository(t *testing.T) {
	got, err := Registered(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("Registered: %v", err)
	}
	// Metrics that the dashboards and alert rules rely on.
	for name, kind := range map[string]Kind{
		"syncguard_ingest_requests_total":           Counter,
		"syncguard_ingest_request_duration_seconds": Histogram,
		"syncguard_detector_keys_capacity":          Gauge,
	} {
		if got[name] != kind {
			t.Errorf("Registered[%s] = %v, want %v", name, got[name], kind)
		}
	}
}
