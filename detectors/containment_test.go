package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// newTestContainment returns a containment with the default configuration
// changed by mutate, and the metrics it counts into.
func newTestContainment(t *testing.T, mutate func(*Config)) (*containment, *metrics) {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newContainment(cfg.Containment, cfg.MaxKeys, m)
	if err != nil {
		t.Fatalf("newContainment: %v", err)
	}
	return c, m
}

// testAlert returns an alert of rule for key at severity, raised at at.
func testAlert(rule, key, level string, at time.Time) schemas.Alert {
	s, _ := parseSeverity(level)
	return schemas.Alert{
		ID:       alertID(rule, key, base.UnixNano(), s),
		Rule:     rule,
		Key:      key,
		Severity: level,
		Window:   time.Minute,
		RaisedAt: at,
		Summary:  "source " + key + ": 100 requests with an invalid or missing signature",
	}
}

func TestContainmentCriticalSourceAlert(t *testing.T) {
	c, m := newTestContainment(t, nil)
	a := testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityCritical, testNow)

	act, ok := c.plan(a)
	if !ok {
		t.Fatalf("critical %s alert planned no block", a.Rule)
	}
	c.commit()

	if want := "block_source/203.0.113.7"; act.key != want {
		t.Errorf("record key = %q, want %q", act.key, want)
	}
	wantControl := schemas.ControlRecord{
		Kind:      schemas.ControlBlockSource,
		Value:     "203.0.113.7",
		Active:    true,
		Reason:    a.Summary,
		Actor:     "detector:failed_signature_source",
		CreatedAt: testNow,
		ExpiresAt: testNow.Add(15 * time.Minute),
	}
	if act.control != wantControl {
		t.Errorf("control record = %+v, want %+v", act.control, wantControl)
	}
	wantAudit := schemas.AuditEvent{
		ID:      "detector/contain/" + a.ID,
		Time:    testNow,
		Stage:   schemas.StageDetector,
		Action:  schemas.ActionContain,
		Outcome: schemas.OutcomeAccepted,
		Reason:  RuleFailedSignatureSource,
		Source:  "203.0.113.7",
		Detail:  "blocked for 15m0s",
	}
	if act.audit != wantAudit {
		t.Errorf("audit event = %+v, want %+v", act.audit, wantAudit)
	}
	if got := metricValue(t, m.containActions.WithLabelValues(schemas.ControlBlockSource)); got != 1 {
		t.Errorf("block_source actions = %g, want 1", got)
	}
	if got := metricValue(t, m.containBlocks); got != 1 {
		t.Errorf("tracked blocks = %g, want 1", got)
	}
}

func TestContainmentDeviceAlert(t *testing.T) {
	c, _ := newTestContainment(t, nil)
	act, ok := c.plan(testAlert(RuleFailedAuthDevice, "dev-7", schemas.SeverityCritical, testNow))
	if !ok {
		t.Fatal("critical failed_auth_device alert planned no block")
	}
	if act.key != "block_device/dev-7" {
		t.Errorf("record key = %q, want block_device/dev-7", act.key)
	}
	if act.control.Kind != schemas.ControlBlockDevice || act.control.Value != "dev-7" {
		t.Errorf("control record kind %q value %q, want block_device dev-7", act.control.Kind, act.control.Value)
	}
	if act.control.Actor != "detector:failed_auth_device" {
		t.Errorf("actor = %q, want detector:failed_auth_device", act.control.Actor)
	}
	if act.audit.Device != "dev-7" {
		t.Errorf("audit device = %q, want dev-7", act.audit.Device)
	}
	if act.audit.Source != "" {
		t.Errorf("audit source = %q, want empty", act.audit.Source)
	}
}

func TestContainmentSkips(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		alert  schemas.Alert
		skip   string // skipped_total reason counted, "" for none
	}{
		{
			"warning below critical", nil,
			testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityWarning, testNow), "",
		},
		{
			"disabled", func(c *Config) { c.Containment.Enabled = false },
			testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityCritical, testNow), "",
		},
		{
			"volume rule", nil,
			testAlert(RuleVolumeAccount, "acct-1", schemas.SeverityCritical, testNow), "",
		},
		{
			"forged raw record rule", nil,
			testAlert(RuleForgedRawRecord, "acct-1", schemas.SeverityCritical, testNow), "",
		},
		{
			"allowlisted address", func(c *Config) { c.Containment.Allowlist = []string{"203.0.113.7"} },
			testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityCritical, testNow), skipAllowlisted,
		},
		{
			"allowlisted prefix", func(c *Config) { c.Containment.Allowlist = []string{"10.0.0.1", "203.0.113.0/24"} },
			testAlert(RuleFailedAuthSource, "203.0.113.99", schemas.SeverityCritical, testNow), skipAllowlisted,
		},
		{
			"allowlisted mapped address", func(c *Config) { c.Containment.Allowlist = []string{"203.0.113.0/24"} },
			testAlert(RuleFailedAuthSource, "::ffff:203.0.113.5", schemas.SeverityCritical, testNow), skipAllowlisted,
		},
		{
			"source not an address", nil,
			testAlert(RuleFailedSignatureSource, "not-an-address", schemas.SeverityCritical, testNow), skipInvalidKey,
		},
		{
			"device with a slash", nil,
			testAlert(RuleFailedAuthDevice, "dev/7", schemas.SeverityCritical, testNow), skipInvalidKey,
		},
		{
			"device too long", nil,
			testAlert(RuleFailedAuthDevice, strings.Repeat("d", 129), schemas.SeverityCritical, testNow), skipInvalidKey,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, m := newTestContainment(t, tc.mutate)
			if act, ok := c.plan(tc.alert); ok {
				t.Fatalf("planned block %s, want none", act.key)
			}
			c.commit()
			if got := c.tracking(); got != 0 {
				t.Errorf("tracked blocks = %d, want 0", got)
			}
			for _, reason := range []string{skipAllowlisted, skipActive, skipInvalidKey} {
				want := 0.0
				if reason == tc.skip {
					want = 1
				}
				if got := metricValue(t, m.containSkipped.WithLabelValues(reason)); got != want {
					t.Errorf("skipped{reason=%q} = %g, want %g", reason, got, want)
				}
			}
		})
	}
}

func TestContainmentWarningAllowed(t *testing.T) {
	c, _ := newTestContainment(t, func(c *Config) { c.Containment.MinSeverity = schemas.SeverityWarning })
	if _, ok := c.plan(testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityWarning, testNow)); !ok {
		t.Fatal("warning alert planned no block with min_severity warning")
	}
}

func TestContainmentMappedAddressBlocksIPv4(t *testing.T) {
	c, _ := newTestContainment(t, nil)
	act, ok := c.plan(testAlert(RuleFailedSignatureSource, "::ffff:203.0.113.7", schemas.SeverityCritical, testNow))
	if !ok {
		t.Fatal("planned no block")
	}
	if act.control.Value != "203.0.113.7" || act.key != "block_source/203.0.113.7" {
		t.Errorf("value %q key %q, want the IPv4 form", act.control.Value, act.key)
	}
}

func TestContainmentDedupe(t *testing.T) {
	const ttl = 10 * time.Minute
	source := "203.0.113.7"
	alertAt := func(at time.Time) schemas.Alert {
		return testAlert(RuleFailedSignatureSource, source, schemas.SeverityCritical, at)
	}
	c, m := newTestContainment(t, func(c *Config) { c.Containment.BlockTTL = ttl })

	if _, ok := c.plan(alertAt(testNow)); !ok {
		t.Fatal("first alert planned no block")
	}
	// A second alert in the same transaction finds the pending block.
	if _, ok := c.plan(alertAt(testNow.Add(time.Second))); ok {
		t.Error("second alert in the same transaction planned a block")
	}
	c.commit()
	// Another rule that blocks the same address shares the control key.
	if _, ok := c.plan(testAlert(RuleFailedAuthSource, source, schemas.SeverityCritical, testNow.Add(time.Minute))); ok {
		t.Error("failed_auth_source alert blocked an address that is already blocked")
	}
	if _, ok := c.plan(alertAt(testNow.Add(ttl - time.Nanosecond))); ok {
		t.Error("alert just before expiry planned a second block")
	}
	if got := metricValue(t, m.containSkipped.WithLabelValues(skipActive)); got != 3 {
		t.Errorf("skipped{reason=active} = %g, want 3", got)
	}

	act, ok := c.plan(alertAt(testNow.Add(ttl)))
	if !ok {
		t.Fatal("alert at expiry planned no new block")
	}
	if want := testNow.Add(2 * ttl); !act.control.ExpiresAt.Equal(want) {
		t.Errorf("new block expires at %s, want %s", act.control.ExpiresAt, want)
	}
	c.commit()
	if got := metricValue(t, m.containActions.WithLabelValues(schemas.ControlBlockSource)); got != 2 {
		t.Errorf("block_source actions = %g, want 2", got)
	}
	if got := c.tracking(); got != 1 {
		t.Errorf("tracked blocks = %d, want 1", got)
	}
}

func TestContainmentAbortForgetsPending(t *testing.T) {
	c, m := newTestContainment(t, nil)
	a := testAlert(RuleFailedSignatureSource, "203.0.113.7", schemas.SeverityCritical, testNow)
	if _, ok := c.plan(a); !ok {
		t.Fatal("planned no block")
	}
	c.abort()
	if got := metricValue(t, m.containActions.WithLabelValues(schemas.ControlBlockSource)); got != 0 {
		t.Errorf("actions after abort = %g, want 0", got)
	}
	// The records are read again and raise the alert again.
	if _, ok := c.plan(a); !ok {
		t.Fatal("alert raised again after abort planned no block")
	}
}

func TestContainmentBoundedMemory(t *testing.T) {
	c, m := newTestContainment(t, func(c *Config) { c.MaxKeys = 3 })
	for i := range 5 {
		at := testNow.Add(time.Duration(i) * time.Second)
		if _, ok := c.plan(testAlert(RuleFailedSignatureSource, fmt.Sprintf("192.0.2.%d", i), schemas.SeverityCritical, at)); !ok {
			t.Fatalf("alert %d planned no block", i)
		}
		c.commit()
	}
	if got := c.tracking(); got != 3 {
		t.Errorf("tracked blocks = %d, want 3", got)
	}
	if got := metricValue(t, m.containEvictions); got != 2 {
		t.Errorf("evictions = %g, want 2", got)
	}
	// The newest three blocks are still tracked, and the oldest two are not.
	if _, ok := c.plan(testAlert(RuleFailedSignatureSource, "192.0.2.4", schemas.SeverityCritical, testNow.Add(time.Minute))); ok {
		t.Error("a remembered block was published again")
	}
	if _, ok := c.plan(testAlert(RuleFailedSignatureSource, "192.0.2.0", schemas.SeverityCritical, testNow.Add(time.Minute))); !ok {
		t.Error("an evicted block was not published again")
	}
}

func TestContainmentPrunesExpired(t *testing.T) {
	c, _ := newTestContainment(t, func(c *Config) { c.Containment.BlockTTL = time.Minute })
	for i := range 4 {
		if _, ok := c.plan(testAlert(RuleFailedSignatureSource, fmt.Sprintf("192.0.2.%d", i), schemas.SeverityCritical, testNow)); !ok {
			t.Fatalf("alert %d planned no block", i)
		}
	}
	c.commit()
	if _, ok := c.plan(testAlert(RuleFailedAuthDevice, "dev-1", schemas.SeverityCritical, testNow.Add(2*time.Minute))); !ok {
		t.Fatal("device alert planned no block")
	}
	c.commit()
	if got := c.tracking(); got != 1 {
		t.Errorf("tracked blocks = %d after the first four expired, want 1", got)
	}
}

// TestRulesIgnoreDetectorEvents feeds the detector's own events, shaped
// like every event the rules count, and expects no rule to count them and
// the watermark not to move.
func TestRulesIgnoreDetectorEvents(t *testing.T) {
	r, reg := newTestRules(t, func(c *Config) {
		c.Failure.ThresholdSignatureSource = 1
		c.Failure.ThresholdAuthSource = 1
		c.Failure.ThresholdAuthDevice = 1
		c.Volume.ThresholdAccount = 1
		c.Volume.ThresholdSubject = 1
	})
	shapes := []func(at time.Time) schemas.AuditEvent{
		func(at time.Time) schemas.AuditEvent {
			return rejected(schemas.ReasonInvalidSignature, "203.0.113.7", "", at)
		},
		func(at time.Time) schemas.AuditEvent {
			return rejected(schemas.ReasonInvalidToken, "203.0.113.8", "dev-1", at)
		},
		func(at time.Time) schemas.AuditEvent { return routed("acct-1", "subj-1", at) },
		func(at time.Time) schemas.AuditEvent { return forged("acct-1", "", at) },
		func(at time.Time) schemas.AuditEvent {
			return schemas.AuditEvent{
				ID: "contain", Time: at, Stage: schemas.StageDetector, Action: schemas.ActionContain,
				Outcome: schemas.OutcomeAccepted, Reason: RuleFailedSignatureSource, Source: "203.0.113.7",
				Detail: "blocked for 15m0s",
			}
		},
	}
	var alerts []schemas.Alert
	for i, shape := range shapes {
		for j := range 50 {
			ev := shape(base.Add(time.Duration(i*50+j) * time.Second))
			ev.ID = fmt.Sprintf("detector-%d-%d", i, j)
			ev.Stage = schemas.StageDetector
			alerts = append(alerts, r.Observe(ev)...)
		}
	}
	assertBriefs(t, alerts, nil)
	for _, rl := range r.rules {
		if n := len(rl.table.entries); n != 0 {
			t.Errorf("rule %s tracks %d keys, want 0", rl.name, n)
		}
		if got := metricValue(t, rl.events); got != 0 {
			t.Errorf("rule %s counted %g events, want 0", rl.name, got)
		}
	}
	if wm := r.Watermark(); !wm.IsZero() {
		t.Errorf("watermark = %s, want unset", wm)
	}
	if got := counterTotal(t, reg, "syncguard_detector_invalid_events_total"); got != 0 {
		t.Errorf("invalid events = %g, want 0", got)
	}
}

// counterTotal returns the sum of every series of a counter in reg.
func counterTotal(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// attackEvents is a scripted attack within one minute, sorted by time. One
// address sends 120 forged signatures (critical at 100), and one device
// gets 60 rejected tokens from distinct addresses (critical at 50). An
// allowlisted address sends 120 forged signatures, and another address
// sends 30, which stays at warning.
func attackEvents() []schemas.AuditEvent {
	var evs []schemas.AuditEvent
	from := base.Add(time.Minute)
	evs = append(evs, spread(120, from, 50*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, forgerAddress, "", at)
	})...)
	evs = append(evs, spread(60, from, 50*time.Second, func(i int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidToken, fmt.Sprintf("192.0.2.%d", i), attackDevice, at)
	})...)
	evs = append(evs, spread(120, from, 50*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, allowlistedAddress, "", at)
	})...)
	evs = append(evs, spread(30, from, 50*time.Second, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, "198.51.100.9", "", at)
	})...)
	slices.SortStableFunc(evs, func(a, b schemas.AuditEvent) int { return a.Time.Compare(b.Time) })
	return evs
}

const (
	attackDevice       = "dev-stolen-1"
	allowlistedAddress = "10.9.8.7"
)

func TestEngineContainment(t *testing.T) {
	runEngineContainment(t, inProcessKafka(t))
}

func TestEngineContainmentKafka(t *testing.T) {
	runEngineContainment(t, realKafka(t))
}

// runEngineContainment runs the engine over a scripted attack and reads
// back the control and audit topics: exactly one block per attacker above
// the critical level, none for the allowlisted address, each with its
// contain event.
func runEngineContainment(t *testing.T, kcfg kafkaclient.Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Group = "detector-" + strings.TrimSuffix(kcfg.TopicPrefix, ".")
	cfg.TransactionalID = cfg.Group
	cfg.Containment.BlockTTL = 2 * time.Minute
	cfg.Containment.Allowlist = []string{"10.0.0.0/8"}

	produceAudit(t, kcfg, attackEvents())
	scenarioEnds := endOffsets(t, kcfg, schemas.TopicAudit)
	before := time.Now()
	eng := startEngine(t, kcfg, cfg)
	waitCommittedTo(t, kcfg, cfg.Group, scenarioEnds)
	after := time.Now()
	eng.stop(t)

	// The control topic holds exactly the two blocks.
	var blocks []schemas.ControlRecord
	for _, rec := range readTopic(t, kcfg, schemas.TopicControl) {
		var c schemas.ControlRecord
		if err := json.Unmarshal(rec.Value, &c); err != nil {
			t.Fatalf("decode control record at offset %d: %v", rec.Offset, err)
		}
		if want := schemas.ControlKey(c.Kind, c.Value); string(rec.Key) != want {
			t.Errorf("control record key = %q, want %q", rec.Key, want)
		}
		blocks = append(blocks, c)
	}
	slices.SortFunc(blocks, func(a, b schemas.ControlRecord) int { return strings.Compare(a.Kind, b.Kind) })
	wantBlocks := []struct{ kind, value, actor string }{
		{schemas.ControlBlockDevice, attackDevice, "detector:" + RuleFailedAuthDevice},
		{schemas.ControlBlockSource, forgerAddress, "detector:" + RuleFailedSignatureSource},
	}
	if len(blocks) != len(wantBlocks) {
		t.Fatalf("control topic holds %d records %+v, want %d", len(blocks), blocks, len(wantBlocks))
	}
	for i, w := range wantBlocks {
		b := blocks[i]
		if b.Kind != w.kind || b.Value != w.value || b.Actor != w.actor || !b.Active {
			t.Errorf("block %d = %s %s by %s active %t, want %s %s by %s active", i, b.Kind, b.Value, b.Actor, b.Active, w.kind, w.value, w.actor)
		}
		if b.CreatedAt.Before(before) || b.CreatedAt.After(after) {
			t.Errorf("block %d created at %s, want between %s and %s", i, b.CreatedAt, before, after)
		}
		if got := b.ExpiresAt.Sub(b.CreatedAt); got != 2*time.Minute {
			t.Errorf("block %d lasts %s, want 2m", i, got)
		}
		if !strings.Contains(b.Reason, w.value) {
			t.Errorf("block %d reason %q does not name %s", i, b.Reason, w.value)
		}
	}

	// Each block has its contain event on the audit trail.
	var contained []string
	for _, rec := range readTopic(t, kcfg, schemas.TopicAudit) {
		var ev schemas.AuditEvent
		if err := json.Unmarshal(rec.Value, &ev); err != nil || ev.Stage != schemas.StageDetector {
			continue
		}
		if ev.Action != schemas.ActionContain || ev.Outcome != schemas.OutcomeAccepted || ev.Detail != "blocked for 2m0s" {
			t.Errorf("detector audit event %+v is not an accepted contain event of 2m", ev)
		}
		if want := ev.Source + ev.Device; string(rec.Key) != want {
			t.Errorf("contain event key = %q, want %q", rec.Key, want)
		}
		contained = append(contained, ev.Reason+" "+ev.Source+ev.Device)
	}
	slices.Sort(contained)
	wantContained := []string{
		RuleFailedAuthDevice + " " + attackDevice,
		RuleFailedSignatureSource + " " + forgerAddress,
	}
	if !slices.Equal(contained, wantContained) {
		t.Errorf("contain events = %q, want %q", contained, wantContained)
	}

	// The allowlisted address was alerted, but not blocked.
	alerted := false
	for _, a := range readAlerts(t, kcfg) {
		if a.Key == allowlistedAddress && a.Severity == schemas.SeverityCritical {
			alerted = true
		}
	}
	if !alerted {
		t.Errorf("no critical alert for the allowlisted address %s", allowlistedAddress)
	}
	if got := metricValue(t, eng.engine.metrics.containSkipped.WithLabelValues(skipAllowlisted)); got != 1 {
		t.Errorf("skipped{reason=allowlisted} = %g, want 1", got)
	}
}

// runningEngine is an Engine running in the background.
type runningEngine struct {
	engine *Engine
	cancel context.CancelFunc
	done   chan error
}

func startEngine(t *testing.T, kcfg kafkaclient.Config, cfg Config) *runningEngine {
	t.Helper()
	eng, err := New(Options{
		Config:   cfg,
		Kafka:    kcfg,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningEngine{engine: eng, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- eng.Run(ctx) }()
	t.Cleanup(func() { r.cancel() })
	return r
}

// stop cancels Run and fails the test unless it returns nil within 60s.
func (r *runningEngine) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal(errors.New("engine did not stop within 60s"))
	}
}

// endOffsets returns the end offset of every partition of a topic.
func endOffsets(t *testing.T, kcfg kafkaclient.Config, suffix string) map[int32]int64 {
	t.Helper()
	cl, err := kcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, kcfg.Topic(suffix))
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// waitCommittedTo waits until the group has committed at least the given
// offsets of the audit topic. The engine commits the alerts and blocks of
// those records in the same transaction. Its own contain events come
// after them, so the end offsets of the audit topic are no target.
func waitCommittedTo(t *testing.T, kcfg kafkaclient.Config, group string, want map[int32]int64) {
	t.Helper()
	cl, err := kcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := kcfg.Topic(schemas.TopicAudit)
	deadline := time.Now().Add(90 * time.Second)
	state := "nothing committed yet"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		committed, err := adm.FetchOffsets(ctx, group)
		cancel()
		if err != nil {
			state = err.Error()
		} else {
			done := true
			var parts []string
			for p, end := range want {
				at := int64(-1)
				if c, ok := committed.Lookup(topic, p); ok && c.Err == nil {
					at = c.At
				}
				if at < end {
					done = false
				}
				parts = append(parts, fmt.Sprintf("partition %d committed %d of %d", p, at, end))
			}
			if done {
				return
			}
			state = strings.Join(parts, ", ")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("engine did not commit the scenario within 90s: %s", state)
}

// readTopic returns every committed record of a topic up to its end
// offsets at the time of the call. Transaction markers take offsets too,
// so it keeps them to see where each partition ends.
func readTopic(t *testing.T, kcfg kafkaclient.Config, suffix string) []*kgo.Record {
	t.Helper()
	ends := endOffsets(t, kcfg, suffix)
	for p, end := range ends {
		if end == 0 {
			delete(ends, p)
		}
	}
	if len(ends) == 0 {
		return nil
	}
	cl, err := kcfg.NewClient(
		kgo.ConsumeTopics(kcfg.Topic(suffix)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %v (partitions not read to the end: %v)", suffix, err, ends)
		}
		fetches.EachError(func(_ string, p int32, err error) { t.Errorf("fetch %s partition %d: %v", suffix, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
		})
	}
	return out
}

func TestContainmentBlocksIPv6Slash64(t *testing.T) {
	c, _ := newTestContainment(t, func(cfg *Config) { cfg.Containment.Allowlist = []string{"2001:db8:9::/48"} })
	act, ok := c.plan(testAlert(RuleFailedSignatureSource, "2001:db8:1:2::/64", schemas.SeverityCritical, testNow))
	if !ok {
		t.Fatal("no containment for an IPv6 /64 source")
	}
	if act.control.Kind != schemas.ControlBlockSource || act.control.Value != "2001:db8:1:2::/64" {
		t.Errorf("control record %+v, want a block of 2001:db8:1:2::/64", act.control)
	}
	if _, ok := c.plan(testAlert(RuleFailedSignatureSource, "2001:db8:9:1::/64", schemas.SeverityCritical, testNow)); ok {
		t.Error("a /64 inside the allowlist was blocked")
	}
}
