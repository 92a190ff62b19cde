package detectors

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

// base is the start of a window for every window size the tests use.
var base = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// testNow is the fixed wall clock of the tests: a day after base, so that no
// event time is clamped as clock skew.
var testNow = base.Add(24 * time.Hour)

func newTestRules(t *testing.T, mutate func(*Config)) (*Rules, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	r, err := NewRules(RulesOptions{Config: cfg, Registry: reg, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("NewRules: %v", err)
	}
	return r, reg
}

func routed(account, subject string, at time.Time) schemas.AuditEvent {
	return schemas.AuditEvent{
		ID: fmt.Sprintf("route-%s-%s-%d", account, subject, at.UnixNano()), Time: at,
		Stage: schemas.StageProcessor, Action: schemas.ActionRoute, Outcome: schemas.OutcomeAccepted,
		Reason: schemas.ReasonOK, Account: account, Subject: subject,
	}
}

func rejected(reason, source, device string, at time.Time) schemas.AuditEvent {
	return schemas.AuditEvent{
		ID: fmt.Sprintf("reject-%s-%s-%d", source, device, at.UnixNano()), Time: at,
		Stage: schemas.StageIngest, Action: schemas.ActionHTTPRequest, Outcome: schemas.OutcomeRejected,
		Reason: reason, Source: source, Device: device, Status: 401,
	}
}

func forged(account, device string, at time.Time) schemas.AuditEvent {
	return schemas.AuditEvent{
		ID: fmt.Sprintf("verify-%s-%s-%d", account, device, at.UnixNano()), Time: at,
		Stage: schemas.StageProcessor, Action: schemas.ActionVerify, Outcome: schemas.OutcomeRejected,
		Reason: schemas.ReasonVerifyFailed, Account: account, Device: device,
	}
}

// spread returns n events made by mk, evenly spaced over [from, from+within).
func spread(n int, from time.Time, within time.Duration, mk func(i int, at time.Time) schemas.AuditEvent) []schemas.AuditEvent {
	evs := make([]schemas.AuditEvent, n)
	step := within / time.Duration(n)
	for i := range n {
		evs[i] = mk(i, from.Add(time.Duration(i)*step))
	}
	return evs
}

// steady returns perWindow events made by mk in each of the first windows
// minutes after from.
func steady(windows, perWindow int, from time.Time, mk func(i int, at time.Time) schemas.AuditEvent) []schemas.AuditEvent {
	var evs []schemas.AuditEvent
	for w := range windows {
		evs = append(evs, spread(perWindow, from.Add(time.Duration(w)*time.Minute), time.Minute, mk)...)
	}
	return evs
}

func observeAll(r *Rules, evs ...[]schemas.AuditEvent) []schemas.Alert {
	var alerts []schemas.Alert
	for _, list := range evs {
		for _, ev := range list {
			alerts = append(alerts, r.Observe(ev)...)
		}
	}
	return alerts
}

// brief is the part of an alert that names it.
type brief struct {
	Rule, Key, Severity string
	Count               int64
}

func briefs(alerts []schemas.Alert) []brief {
	out := make([]brief, len(alerts))
	for i, a := range alerts {
		out[i] = brief{a.Rule, a.Key, a.Severity, a.Count}
	}
	return out
}

func assertBriefs(t *testing.T, got []schemas.Alert, want []brief) {
	t.Helper()
	g := briefs(got)
	if len(g) != len(want) {
		t.Fatalf("got %d alerts %+v, want %d %+v", len(g), g, len(want), want)
	}
	for i := range want {
		if g[i] != want[i] {
			t.Errorf("alert %d = %+v, want %+v", i, g[i], want[i])
		}
	}
}

func entryOf(t *testing.T, r *Rules, ruleName, key string) *entry {
	t.Helper()
	for _, rl := range r.rules {
		if rl.name == ruleName {
			e, ok := rl.table.entries[key]
			if !ok {
				t.Fatalf("rule %s tracks no key %q", ruleName, key)
			}
			return e
		}
	}
	t.Fatalf("no rule %s", ruleName)
	return nil
}

func TestRulesThresholds(t *testing.T) {
	w1 := base.Add(time.Minute)
	// Each account event gets its own subject, so that volume_subject
	// stays quiet unless a case wants it.
	byAccount := func(account string) func(int, time.Time) schemas.AuditEvent {
		return func(i int, at time.Time) schemas.AuditEvent {
			return routed(account, fmt.Sprintf("subject-%d", i), at)
		}
	}
	bySubject := func(subject string) func(int, time.Time) schemas.AuditEvent {
		return func(i int, at time.Time) schemas.AuditEvent {
			return routed(fmt.Sprintf("account-%d", i%3), subject, at)
		}
	}
	reject := func(reason, source string, device func(i int) string) func(int, time.Time) schemas.AuditEvent {
		return func(i int, at time.Time) schemas.AuditEvent {
			return rejected(reason, source, device(i), at)
		}
	}
	noDevice := func(int) string { return "" }
	eachSource := func(reason, device string) func(int, time.Time) schemas.AuditEvent {
		return func(i int, at time.Time) schemas.AuditEvent {
			return rejected(reason, fmt.Sprintf("192.0.2.%d", i), device, at)
		}
	}
	forgedFor := func(account, device string) func(int, time.Time) schemas.AuditEvent {
		return func(_ int, at time.Time) schemas.AuditEvent { return forged(account, device, at) }
	}

	tests := []struct {
		name   string
		n      int
		mk     func(int, time.Time) schemas.AuditEvent
		want   []brief
		thresh float64
	}{
		{"account below threshold", 499, byAccount("acct-1"), nil, 0},
		{
			"account at threshold", 500, byAccount("acct-1"),
			[]brief{{RuleVolumeAccount, "acct-1", "warning", 500}},
			500,
		},
		{
			"account escalates", 1000, byAccount("acct-1"),
			[]brief{{RuleVolumeAccount, "acct-1", "warning", 500}, {RuleVolumeAccount, "acct-1", "critical", 1000}},
			500,
		},
		{"subject below threshold", 199, bySubject("subj-1"), nil, 0},
		{
			"subject at threshold", 200, bySubject("subj-1"),
			[]brief{{RuleVolumeSubject, "subj-1", "warning", 200}},
			200,
		},
		{"signature below threshold", 19, reject(schemas.ReasonInvalidSignature, "203.0.113.7", noDevice), nil, 0},
		{
			"invalid signature at threshold", 20, reject(schemas.ReasonInvalidSignature, "203.0.113.7", noDevice),
			[]brief{{RuleFailedSignatureSource, "203.0.113.7", "warning", 20}},
			20,
		},
		{
			"missing signature at threshold", 20, reject(schemas.ReasonMissingSignature, "203.0.113.7", noDevice),
			[]brief{{RuleFailedSignatureSource, "203.0.113.7", "warning", 20}},
			20,
		},
		{
			"signature escalates", 100, reject(schemas.ReasonInvalidSignature, "203.0.113.7", noDevice),
			[]brief{{RuleFailedSignatureSource, "203.0.113.7", "warning", 20}, {RuleFailedSignatureSource, "203.0.113.7", "critical", 100}},
			20,
		},
		{"auth below threshold", 9, reject(schemas.ReasonInvalidToken, "203.0.113.8", noDevice), nil, 0},
		{
			"invalid token at threshold", 10, reject(schemas.ReasonInvalidToken, "203.0.113.8", noDevice),
			[]brief{{RuleFailedAuthSource, "203.0.113.8", "warning", 10}},
			10,
		},
		{
			"insufficient scope at threshold", 10, reject(schemas.ReasonInsufficientScope, "203.0.113.8", noDevice),
			[]brief{{RuleFailedAuthSource, "203.0.113.8", "warning", 10}},
			10,
		},
		{
			"device mismatch from one source and device", 10,
			reject(schemas.ReasonDeviceMismatch, "203.0.113.8", func(int) string { return "dev-1" }),
			[]brief{{RuleFailedAuthSource, "203.0.113.8", "warning", 10}, {RuleFailedAuthDevice, "dev-1", "warning", 10}},
			10,
		},
		{
			"device from many sources", 10, eachSource(schemas.ReasonInvalidToken, "dev-2"),
			[]brief{{RuleFailedAuthDevice, "dev-2", "warning", 10}},
			10,
		},
		{
			"auth escalates", 50, reject(schemas.ReasonInvalidToken, "203.0.113.8", noDevice),
			[]brief{{RuleFailedAuthSource, "203.0.113.8", "warning", 10}, {RuleFailedAuthSource, "203.0.113.8", "critical", 50}},
			10,
		},
		{"signature reasons do not count as auth", 10, eachSource(schemas.ReasonInvalidSignature, "dev-3"), nil, 0},
		{"other reasons do not count", 100, reject(schemas.ReasonRateLimited, "203.0.113.9", noDevice), nil, 0},
		{
			"one forged record", 1, forgedFor("acct-9", ""),
			[]brief{{RuleForgedRawRecord, "acct-9", "warning", 1}},
			1,
		},
		{
			"forged records escalate", 5, forgedFor("acct-9", ""),
			[]brief{{RuleForgedRawRecord, "acct-9", "warning", 1}, {RuleForgedRawRecord, "acct-9", "critical", 5}},
			1,
		},
		{
			"forged sync record keyed by device", 1, forgedFor("", "dev-7"),
			[]brief{{RuleForgedRawRecord, "dev-7", "warning", 1}},
			1,
		},
		{
			"forged record without account or device", 1, forgedFor("", ""),
			[]brief{{RuleForgedRawRecord, "unknown", "warning", 1}},
			1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRules(t, nil)
			evs := spread(tc.n, w1, 50*time.Second, tc.mk)
			alerts := observeAll(r, evs)
			assertBriefs(t, alerts, tc.want)
			if len(alerts) == 0 {
				return
			}

			// The first alert is raised by the event that crossed the
			// threshold, so its last seen time is that event's time.
			a := alerts[0]
			crossing := evs[a.Count-1].Time
			if a.Threshold != tc.thresh {
				t.Errorf("threshold = %g, want %g", a.Threshold, tc.thresh)
			}
			if !a.WindowStart.Equal(w1) {
				t.Errorf("window start = %s, want %s", a.WindowStart, w1)
			}
			if a.Window != time.Minute {
				t.Errorf("window = %s, want 1m", a.Window)
			}
			if !a.FirstSeen.Equal(evs[0].Time) {
				t.Errorf("first seen = %s, want %s", a.FirstSeen, evs[0].Time)
			}
			if !a.LastSeen.Equal(crossing) {
				t.Errorf("last seen = %s, want %s", a.LastSeen, crossing)
			}
			if !a.RaisedAt.Equal(testNow) {
				t.Errorf("raised at = %s, want %s", a.RaisedAt, testNow)
			}
			if want := alertID(a.Rule, a.Key, w1.UnixNano(), severityWarning); a.ID != want {
				t.Errorf("id = %s, want %s", a.ID, want)
			}
			if !strings.Contains(a.Summary, a.Key) || !strings.Contains(a.Summary, fmt.Sprint(a.Count)) {
				t.Errorf("summary %q names neither key %q nor count %d", a.Summary, a.Key, a.Count)
			}
		})
	}
}

func TestRulesIgnoreOtherEvents(t *testing.T) {
	r, _ := newTestRules(t, func(c *Config) { c.Failure.ThresholdForgedRaw = 1 })
	mk := []func(at time.Time) schemas.AuditEvent{
		func(at time.Time) schemas.AuditEvent {
			ev := routed("acct-1", "subj-1", at)
			ev.Outcome = schemas.OutcomeRejected
			return ev
		},
		func(at time.Time) schemas.AuditEvent {
			ev := routed("acct-1", "subj-1", at)
			ev.Action = schemas.ActionEncrypt
			return ev
		},
		func(at time.Time) schemas.AuditEvent {
			ev := rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", at)
			ev.Outcome = schemas.OutcomeAccepted
			return ev
		},
		func(at time.Time) schemas.AuditEvent {
			ev := forged("acct-1", "", at)
			ev.Outcome = schemas.OutcomeAccepted
			return ev
		},
		func(at time.Time) schemas.AuditEvent {
			ev := rejected(schemas.ReasonInvalidSignature, "", "", at)
			return ev
		},
	}
	var alerts []schemas.Alert
	for i, f := range mk {
		for j := range 1000 {
			alerts = append(alerts, r.Observe(f(base.Add(time.Duration(i*1000+j)*time.Millisecond)))...)
		}
	}
	assertBriefs(t, alerts, nil)
	for _, rl := range r.rules {
		if n := len(rl.table.entries); n != 0 {
			t.Errorf("rule %s tracks %d keys, want 0", rl.name, n)
		}
	}
}

func TestCooldown(t *testing.T) {
	source := "203.0.113.7"
	burst := func(minute, n int) []schemas.AuditEvent {
		return spread(n, base.Add(time.Duration(minute)*time.Minute), 30*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
			return rejected(schemas.ReasonInvalidSignature, source, "", at)
		})
	}
	tests := []struct {
		name           string
		cooldown       time.Duration
		bursts         [][2]int // minute, count
		want           []brief
		wantSuppressed float64
	}{
		{
			"bigger count within cooldown", 5 * time.Minute,
			[][2]int{{0, 20}, {1, 60}},
			[]brief{{RuleFailedSignatureSource, source, "warning", 20}},
			1,
		},
		{
			"after cooldown", 5 * time.Minute,
			[][2]int{{0, 20}, {2, 20}, {6, 20}},
			[]brief{{RuleFailedSignatureSource, source, "warning", 20}, {RuleFailedSignatureSource, source, "warning", 20}},
			1,
		},
		{
			"escalation within cooldown", 5 * time.Minute,
			[][2]int{{0, 20}, {1, 100}},
			[]brief{{RuleFailedSignatureSource, source, "warning", 20}, {RuleFailedSignatureSource, source, "critical", 100}},
			1,
		},
		{
			"no warning after critical", 5 * time.Minute,
			[][2]int{{0, 100}, {1, 20}, {2, 100}},
			// Minute 1 suppresses a warning; minute 2 a warning, then a critical.
			[]brief{{RuleFailedSignatureSource, source, "warning", 20}, {RuleFailedSignatureSource, source, "critical", 100}},
			3,
		},
		{
			"zero cooldown", 0,
			[][2]int{{0, 20}, {1, 20}},
			[]brief{{RuleFailedSignatureSource, source, "warning", 20}, {RuleFailedSignatureSource, source, "warning", 20}},
			0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRules(t, func(c *Config) { c.Cooldown = tc.cooldown })
			var alerts []schemas.Alert
			for _, b := range tc.bursts {
				alerts = append(alerts, observeAll(r, burst(b[0], b[1]))...)
			}
			assertBriefs(t, alerts, tc.want)
			suppressed := metricValue(t, r.metrics.suppressed.WithLabelValues(RuleFailedSignatureSource))
			if suppressed != tc.wantSuppressed {
				t.Errorf("suppressed = %g, want %g", suppressed, tc.wantSuppressed)
			}
		})
	}
}

func TestEscalationHasOwnID(t *testing.T) {
	r, _ := newTestRules(t, nil)
	alerts := observeAll(r, spread(100, base, 30*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", at)
	}))
	if len(alerts) != 2 {
		t.Fatalf("got %d alerts, want 2", len(alerts))
	}
	if alerts[0].ID == alerts[1].ID {
		t.Errorf("warning and critical share id %s", alerts[0].ID)
	}
	if !alerts[0].WindowStart.Equal(alerts[1].WindowStart) {
		t.Errorf("window starts differ: %s, %s", alerts[0].WindowStart, alerts[1].WindowStart)
	}
	if got := metricValue(t, r.metrics.alerts.WithLabelValues(RuleFailedSignatureSource, "critical")); got != 1 {
		t.Errorf("critical alerts metric = %g, want 1", got)
	}
}

func TestBaseline(t *testing.T) {
	account := func(_ int, at time.Time) schemas.AuditEvent { return routed("acct-1", "", at) }
	tests := []struct {
		name    string
		windows int // steady windows of 10 events before the last one
		last    int // events in the last window
		want    []brief
		score   float64
	}{
		{"steady then spike", 6, 80, []brief{{RuleVolumeAccount, "acct-1", "warning", 50}}, 5},
		{"steady", 6, 10, nil, 0},
		{"too little history", 3, 80, nil, 0},
		{"spike to critical", 6, 100, []brief{
			{RuleVolumeAccount, "acct-1", "warning", 50},
			{RuleVolumeAccount, "acct-1", "critical", 100},
		}, 5},
		{"below min count", 6, 45, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRules(t, nil)
			history := steady(tc.windows, 10, base, account)
			if got := observeAll(r, history); len(got) != 0 {
				t.Fatalf("steady traffic raised %+v", briefs(got))
			}
			last := spread(tc.last, base.Add(time.Duration(tc.windows)*time.Minute), time.Minute, account)
			alerts := observeAll(r, last)
			assertBriefs(t, alerts, tc.want)
			if len(alerts) == 0 {
				return
			}
			a := alerts[0]
			if math.Abs(a.Baseline-10) > 1e-9 {
				t.Errorf("baseline = %g, want 10", a.Baseline)
			}
			if math.Abs(a.Score-tc.score) > 1e-9 {
				t.Errorf("score = %g, want %g", a.Score, tc.score)
			}
		})
	}
}

func TestVolumeAccountIgnoresSyncUsers(t *testing.T) {
	r, _ := newTestRules(t, func(c *Config) {
		c.Volume.ThresholdAccount = 5
		c.Volume.ThresholdSubject = 1000
	})
	var alerts []schemas.Alert
	for i := range 10 {
		ev := routed("p_syncuser", "p_syncuser", base.Add(time.Duration(i)*time.Second))
		ev.Route = schemas.TopicSync
		alerts = append(alerts, r.Observe(ev)...)
	}
	if len(alerts) != 0 {
		t.Fatalf("sync events raised %d account alerts, want none: %+v", len(alerts), alerts)
	}
	for i := range 5 {
		ev := routed("200000000000002", "p_customer", base.Add(time.Duration(20+i)*time.Second))
		ev.Route = schemas.TopicMessages
		alerts = append(alerts, r.Observe(ev)...)
	}
	if len(alerts) != 1 || alerts[0].Rule != RuleVolumeAccount {
		t.Fatalf("WhatsApp events raised %+v, want one volume_account alert", alerts)
	}
}

func TestFailedDPoPCountsPerSourceOnly(t *testing.T) {
	r, _ := newTestRules(t, func(c *Config) {
		c.Failure.ThresholdAuthSource = 3
		c.Failure.ThresholdAuthDevice = 3
	})
	var alerts []schemas.Alert
	for i := range 3 {
		alerts = append(alerts, r.Observe(rejected(schemas.ReasonInvalidDPoPProof, "203.0.113.9", "dev-owner", base.Add(time.Duration(i)*time.Second)))...)
	}
	if len(alerts) != 1 || alerts[0].Rule != RuleFailedAuthSource || alerts[0].Key != "203.0.113.9" {
		t.Fatalf("alerts = %+v, want one failed_auth_source alert for the address and none for the device", alerts)
	}
}

func TestIPv6SourcesCountPerSlash64(t *testing.T) {
	r, _ := newTestRules(t, func(c *Config) { c.Failure.ThresholdSignatureSource = 3 })
	var alerts []schemas.Alert
	for i, src := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		alerts = append(alerts, r.Observe(rejected(schemas.ReasonInvalidSignature, src, "", base.Add(time.Duration(i)*time.Second)))...)
	}
	if len(alerts) != 1 || alerts[0].Key != "2001:db8:1:2::/64" {
		t.Fatalf("alerts = %+v, want one alert keyed by the /64", alerts)
	}
	// Another /64 is another key.
	if got := r.Observe(rejected(schemas.ReasonInvalidSignature, "2001:db8:1:3::1", "", base.Add(4*time.Second))); len(got) != 0 {
		t.Errorf("a source in another /64 raised %+v", got)
	}
}
