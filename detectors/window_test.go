package detectors

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

func TestWindowStart(t *testing.T) {
	f := func(t0, size, want int64) {
		t.Helper()
		if got := windowStart(t0, size); got != want {
			t.Errorf("windowStart(%d, %d) = %d, want %d", t0, size, got, want)
		}
	}
	f(0, 10, 0)
	f(9, 10, 0)
	f(10, 10, 10)
	f(15, 10, 10)
	f(-1, 10, -10)
	f(-10, 10, -10)
	f(-11, 10, -20)
	f(base.Add(59*time.Second).UnixNano(), int64(time.Minute), base.UnixNano())
}

func TestWatermarkClosesWindow(t *testing.T) {
	r, _ := newTestRules(t, nil)
	source := func(s string, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, s, "", at)
	}
	observe := func(ev schemas.AuditEvent) {
		t.Helper()
		if alerts := r.Observe(ev); len(alerts) != 0 {
			t.Fatalf("unexpected alerts %+v", briefs(alerts))
		}
	}
	late := func() float64 { return metricValue(t, r.metrics.late) }

	for i := range 5 {
		observe(source("a", base.Add(time.Duration(10+i*10)*time.Second)))
	}
	// 1m09s minus 10s of lateness leaves the watermark before the end of
	// the first window, so a late event still counts.
	observe(source("b", base.Add(69*time.Second)))
	observe(source("a", base.Add(55*time.Second)))
	if got := late(); got != 0 {
		t.Fatalf("late events = %g before the window closed, want 0", got)
	}
	a := entryOf(t, r, RuleFailedSignatureSource, "a")
	if len(a.windows) != 1 || a.windows[0].count != 6 {
		t.Fatalf("open windows of a = %+v, want one with 6 events", a.windows)
	}

	// 1m10s puts the watermark at 1m00s, the end of the first window.
	observe(source("b", base.Add(70*time.Second)))
	if wm := r.Watermark(); !wm.Equal(base.Add(time.Minute)) {
		t.Fatalf("watermark = %s, want %s", wm, base.Add(time.Minute))
	}
	if len(a.windows) != 0 {
		t.Errorf("a still has open windows %+v after the watermark passed", a.windows)
	}
	if a.history != 1 || a.baseline != 6 {
		t.Errorf("a: history %d baseline %g, want 1 and 6", a.history, a.baseline)
	}

	observe(source("a", base.Add(58*time.Second)))
	if got := late(); got != 1 {
		t.Errorf("late events = %g after the window closed, want 1", got)
	}
	if a.baseline != 6 || len(a.windows) != 0 {
		t.Errorf("late event changed a: baseline %g, windows %+v", a.baseline, a.windows)
	}
	if got := metricValue(t, r.metrics.events.WithLabelValues(RuleFailedSignatureSource)); got != 8 {
		t.Errorf("counted events = %g, want 8", got)
	}
}

func TestLateEventsDropped(t *testing.T) {
	r, _ := newTestRules(t, func(c *Config) { c.Failure.ThresholdSignatureSource = 3 })
	ev := func(at time.Duration) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", base.Add(at))
	}
	// The watermark reaches 5m; two events for the first window follow.
	// Counted, they would raise an alert at the threshold of 3.
	alerts := observeAll(r, []schemas.AuditEvent{ev(0), ev(5*time.Minute + 10*time.Second), ev(time.Second), ev(2 * time.Second)})
	assertBriefs(t, alerts, nil)
	if got := metricValue(t, r.metrics.late); got != 2 {
		t.Errorf("late events = %g, want 2", got)
	}
}

func TestSlowPartitionHoldsWatermark(t *testing.T) {
	r, _ := newTestRules(t, nil)
	ev := func(source string, at time.Duration) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, source, "", base.Add(at))
	}
	r.TrackPartitions([]int32{0, 1})

	// Partition 0 runs ten minutes ahead; partition 1 has not delivered.
	r.ObservePartition(0, ev("fast", 10*time.Minute))
	if wm := r.Watermark(); !wm.IsZero() {
		t.Fatalf("watermark = %s while partition 1 has not delivered, want zero", wm)
	}
	r.ObservePartition(1, ev("slow", 5*time.Second))
	r.ObservePartition(1, ev("slow", 30*time.Second))
	if got := metricValue(t, r.metrics.late); got != 0 {
		t.Errorf("late events = %g, want 0: the slow partition holds the watermark", got)
	}
	if want := base.Add(20 * time.Second); !r.Watermark().Equal(want) {
		t.Errorf("watermark = %s, want %s", r.Watermark(), want)
	}
	if got := entryOf(t, r, RuleFailedSignatureSource, "slow").windows[0].count; got != 2 {
		t.Errorf("slow source count = %d, want 2", got)
	}

	// Once partition 1 is revoked, partition 0 alone moves the watermark.
	r.ForgetPartitions([]int32{1})
	r.ObservePartition(0, ev("fast", 10*time.Minute+time.Second))
	if want := base.Add(10*time.Minute - 9*time.Second); !r.Watermark().Equal(want) {
		t.Errorf("watermark = %s after forgetting partition 1, want %s", r.Watermark(), want)
	}
}

func TestIdlePartitionReleasesWatermark(t *testing.T) {
	now := base
	cfg := DefaultConfig()
	r, err := NewRules(RulesOptions{Config: cfg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("NewRules: %v", err)
	}
	ev := rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", base.Add(-time.Minute))
	r.TrackPartitions([]int32{0, 1})
	r.ObservePartition(0, ev)
	if wm := r.Watermark(); !wm.IsZero() {
		t.Fatalf("watermark = %s while partition 1 is assigned and fresh, want zero", wm)
	}
	now = now.Add(cfg.AllowedLateness + time.Second)
	r.ObservePartition(0, ev)
	if want := ev.Time.Add(-cfg.AllowedLateness); !r.Watermark().Equal(want) {
		t.Errorf("watermark = %s after partition 1 went idle, want %s", r.Watermark(), want)
	}
}

func TestFutureEventBoundedBySkew(t *testing.T) {
	r, _ := newTestRules(t, nil)
	r.Observe(rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", testNow.Add(time.Hour)))
	want := testNow.Add(maxClockSkew - DefaultConfig().AllowedLateness)
	if !r.Watermark().Equal(want) {
		t.Errorf("watermark = %s, want %s", r.Watermark(), want)
	}
}

func TestTooManyOpenWindows(t *testing.T) {
	r, _ := newTestRules(t, nil)
	ev := func(minute int) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", base.Add(time.Duration(minute)*time.Minute))
	}
	// Partition 1 stays at the first minute, so no window closes by
	// watermark and the key opens windows until the oldest is forced out.
	r.TrackPartitions([]int32{0, 1})
	r.ObservePartition(1, ev(0))
	for minute := range maxOpenWindows + 1 {
		r.ObservePartition(0, ev(minute))
	}
	e := entryOf(t, r, RuleFailedSignatureSource, "203.0.113.7")
	if len(e.windows) != maxOpenWindows {
		t.Fatalf("open windows = %d, want %d", len(e.windows), maxOpenWindows)
	}
	if e.history != 1 || e.baseline != 2 {
		t.Errorf("history %d baseline %g, want the first window (2 events) folded", e.history, e.baseline)
	}
	r.ObservePartition(1, ev(0))
	if got := metricValue(t, r.metrics.late); got != 1 {
		t.Errorf("late events = %g for a force-closed window, want 1", got)
	}
}

func TestFoldCountsEmptyWindows(t *testing.T) {
	size := int64(time.Minute)
	tab := newTable(time.Minute, 0.3, 10, prometheus.NewGauge(prometheus.GaugeOpts{Name: "keys"}), prometheus.NewCounter(prometheus.CounterOpts{Name: "evictions"}))
	e := tab.touch("k")
	tab.fold(e, window{start: 0, count: 10})
	tab.fold(e, window{start: 3 * size, count: 10})
	// Two empty windows decay 10 to 10*0.7^2 = 4.9, then 0.3*10 + 0.7*4.9.
	want := 0.3*10 + 0.7*4.9
	if math.Abs(e.baseline-want) > 1e-9 {
		t.Errorf("baseline = %g, want %g", e.baseline, want)
	}
	if e.history != 4 {
		t.Errorf("history = %d, want 4", e.history)
	}
}

func TestEvictionFlood(t *testing.T) {
	const keys, capacity = 1_000_000, 1000
	r, _ := newTestRules(t, func(c *Config) { c.MaxKeys = capacity })
	hot := "198.51.100.1"
	for i := range keys {
		at := base.Add(time.Duration(i) * time.Microsecond)
		source := fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
		if alerts := r.Observe(rejected(schemas.ReasonInvalidSignature, source, "", at)); len(alerts) != 0 {
			t.Fatalf("flood of distinct keys raised %+v", briefs(alerts))
		}
		if i%100 == 0 {
			r.Observe(rejected(schemas.ReasonInvalidToken, hot, "", at))
			r.Observe(rejected(schemas.ReasonInvalidSignature, hot, "", at))
		}
	}

	n, err := r.Keys(RuleFailedSignatureSource)
	if err != nil {
		t.Fatal(err)
	}
	if n > capacity {
		t.Fatalf("keys = %d, want at most %d", n, capacity)
	}
	if n != capacity {
		t.Errorf("keys = %d, want the table full at %d", n, capacity)
	}
	evicted := metricValue(t, r.metrics.evictions.WithLabelValues(RuleFailedSignatureSource))
	if want := float64(keys + 1 - capacity); evicted != want {
		t.Errorf("evictions = %g, want %g", evicted, want)
	}
	if got := metricValue(t, r.metrics.keys.WithLabelValues(RuleFailedSignatureSource)); got != capacity {
		t.Errorf("keys gauge = %g, want %d", got, capacity)
	}
	if got := metricValue(t, r.metrics.capacity.WithLabelValues(RuleFailedSignatureSource)); got != capacity {
		t.Errorf("capacity gauge = %g, want %d", got, capacity)
	}

	// The key updated every 100 events survives; the first flood key does
	// not; the list and the map agree.
	tab := r.rules[2].table
	if _, ok := tab.entries[hot]; !ok {
		t.Errorf("recently updated key %s was evicted", hot)
	}
	if _, ok := tab.entries["10.0.0.0"]; ok {
		t.Errorf("least recently updated key 10.0.0.0 survived")
	}
	listed := 0
	for e := tab.lru.next; e != &tab.lru; e = e.next {
		listed++
	}
	if listed != len(tab.entries) {
		t.Errorf("lru list has %d entries, map %d", listed, len(tab.entries))
	}
	if other, _ := r.Keys(RuleFailedAuthSource); other != 1 {
		t.Errorf("failed_auth_source keys = %d, want 1: rules have separate caps", other)
	}
}

func TestBoundKey(t *testing.T) {
	short := "198.51.100.7"
	if got := boundKey(short); got != short {
		t.Errorf("boundKey(%q) = %q, want it unchanged", short, got)
	}
	long1 := strings.Repeat("é", 200) + "1"
	long2 := strings.Repeat("é", 200) + "2"
	b1, b2 := boundKey(long1), boundKey(long2)
	if len(b1) > maxKeyBytes {
		t.Errorf("bound key has %d bytes, want at most %d", len(b1), maxKeyBytes)
	}
	if !utf8.ValidString(b1) {
		t.Errorf("bound key %q is not valid UTF-8", b1)
	}
	if b1 == b2 {
		t.Errorf("two long keys share bound key %q", b1)
	}
}

func TestAlertIDDeterministic(t *testing.T) {
	evs := spread(30, base, 30*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", at)
	})
	first, _ := newTestRules(t, nil)
	second, _ := newTestRules(t, nil)
	a1, a2 := observeAll(first, evs), observeAll(second, evs)
	if len(a1) != 1 || len(a2) != 1 {
		t.Fatalf("got %d and %d alerts, want 1 each", len(a1), len(a2))
	}
	if a1[0] != a2[0] {
		t.Errorf("replayed alert differs:\n%+v\n%+v", a1[0], a2[0])
	}

	id := alertID(RuleFailedSignatureSource, "203.0.113.7", base.UnixNano(), severityWarning)
	if a1[0].ID != id {
		t.Errorf("id = %s, want %s", a1[0].ID, id)
	}
	others := []string{
		alertID(RuleFailedAuthSource, "203.0.113.7", base.UnixNano(), severityWarning),
		alertID(RuleFailedSignatureSource, "203.0.113.8", base.UnixNano(), severityWarning),
		alertID(RuleFailedSignatureSource, "203.0.113.7", base.Add(time.Minute).UnixNano(), severityWarning),
		alertID(RuleFailedSignatureSource, "203.0.113.7", base.UnixNano(), severityCritical),
	}
	for _, other := range others {
		if other == id {
			t.Errorf("id %s does not depend on every input", id)
		}
	}
}

func TestResetDiscardsState(t *testing.T) {
	r, _ := newTestRules(t, nil)
	evs := spread(20, base, 30*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", at)
	})
	if got := observeAll(r, evs); len(got) != 1 {
		t.Fatalf("got %d alerts before reset, want 1", len(got))
	}
	r.Reset()
	if n, _ := r.Keys(RuleFailedSignatureSource); n != 0 {
		t.Errorf("keys after reset = %d, want 0", n)
	}
	if wm := r.Watermark(); !wm.IsZero() {
		t.Errorf("watermark after reset = %s, want zero", wm)
	}
	// The replayed events raise the same alert again: the cooldown was
	// discarded with the rest of the state.
	again := observeAll(r, evs)
	if len(again) != 1 {
		t.Fatalf("got %d alerts after reset, want 1", len(again))
	}
}

func TestInvalidEventCounted(t *testing.T) {
	r, _ := newTestRules(t, nil)
	if alerts := r.Observe(schemas.AuditEvent{Stage: schemas.StageProcessor, Action: schemas.ActionVerify, Outcome: schemas.OutcomeRejected}); len(alerts) != 0 {
		t.Errorf("event without time raised %+v", briefs(alerts))
	}
	if got := metricValue(t, r.metrics.invalid); got != 1 {
		t.Errorf("invalid events = %g, want 1", got)
	}
}
