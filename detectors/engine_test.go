package detectors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// alertName is what the scenario asserts of each alert.
type alertName struct{ Rule, Key, Severity string }

const (
	forgerAddress = "203.0.113.7"
	spikeAccount  = "acct-a"
)

// scenarioEvents returns three minutes of normal traffic from three accounts,
// 30 requests with forged signatures from one address in the second
// minute, and a spike of 600 routed messages from one account in the third
// minute, sorted by time.
func scenarioEvents() []schemas.AuditEvent {
	var evs []schemas.AuditEvent
	for a, account := range []string{"acct-a", "acct-b", "acct-c"} {
		source := fmt.Sprintf("198.51.100.%d", a+1)
		for minute := range 3 {
			from := base.Add(time.Duration(minute) * time.Minute)
			evs = append(evs, spread(10, from, time.Minute, func(i int, at time.Time) schemas.AuditEvent {
				return schemas.AuditEvent{
					ID: fmt.Sprintf("in-%s-%d-%d", account, minute, i), Time: at,
					Stage: schemas.StageIngest, Action: schemas.ActionHTTPRequest, Outcome: schemas.OutcomeAccepted,
					Reason: schemas.ReasonOK, Source: source, Account: account, Status: 200,
				}
			})...)
			evs = append(evs, spread(10, from.Add(time.Second), time.Minute-time.Second, func(i int, at time.Time) schemas.AuditEvent {
				return routed(account, fmt.Sprintf("subj-%s-%d", account, i%5), at)
			})...)
		}
	}
	evs = append(evs, spread(30, base.Add(time.Minute), time.Minute, func(_ int, at time.Time) schemas.AuditEvent {
		return rejected(schemas.ReasonInvalidSignature, forgerAddress, "", at)
	})...)
	evs = append(evs, spread(600, base.Add(2*time.Minute), time.Minute, func(i int, at time.Time) schemas.AuditEvent {
		return routed(spikeAccount, fmt.Sprintf("subj-spike-%d", i%20), at)
	})...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	return evs
}

// scenarioAlerts is the exact set of alerts the scenario raises with the
// default configuration. Nothing else crosses a threshold: the spike's 20
// subjects get 30 messages each, and no key has the five windows of
// history that the baseline rule needs.
var scenarioAlerts = []alertName{
	{RuleFailedSignatureSource, forgerAddress, schemas.SeverityWarning},
	{RuleVolumeAccount, spikeAccount, schemas.SeverityWarning},
}

func sortNames(names []alertName) []alertName {
	out := slices.Clone(names)
	slices.SortFunc(out, func(a, b alertName) int {
		return strings.Compare(a.Rule+"/"+a.Key+"/"+a.Severity, b.Rule+"/"+b.Key+"/"+b.Severity)
	})
	return out
}

func assertScenarioAlerts(t *testing.T, got []schemas.Alert) {
	t.Helper()
	names := make([]alertName, len(got))
	for i, a := range got {
		names[i] = alertName{a.Rule, a.Key, a.Severity}
	}
	if g, w := sortNames(names), sortNames(scenarioAlerts); !slices.Equal(g, w) {
		t.Fatalf("alerts = %+v, want exactly %+v", g, w)
	}
}

func TestScenarioRules(t *testing.T) {
	r, _ := newTestRules(t, nil)
	alerts := observeAll(r, scenarioEvents())
	assertScenarioAlerts(t, alerts)
	for _, a := range alerts {
		if a.Rule == RuleVolumeAccount && a.Count != 500 {
			t.Errorf("volume alert count = %d, want 500", a.Count)
		}
	}
}

func TestEngineScenario(t *testing.T) {
	runEngineScenario(t, inProcessKafka(t))
}

func TestEngineScenarioKafka(t *testing.T) {
	runEngineScenario(t, realKafka(t))
}

// inProcessKafka returns the configuration of a new in-process Kafka
// cluster with the pipeline topics under a prefix of the test's own.
func inProcessKafka(t *testing.T) kafkaclient.Config {
	t.Helper()
	kcfg := kafkaclient.Defaults()
	kcfg.TopicPrefix = uniquePrefix(t)
	cluster, kcfg, err := kcfg.StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return kcfg
}

// realKafka returns the configuration of the broker from the services
// script, with the pipeline topics created under a prefix of the test's
// own and deleted at cleanup. It skips without the broker.
func realKafka(t *testing.T) kafkaclient.Config {
	t.Helper()
	kcfg := kafkaclient.Defaults()
	kcfg.Brokers = testenv.KafkaBrokers(t)
	kcfg.TopicPrefix = uniquePrefix(t)
	testenv.CreateTopics(t, kcfg)
	return kcfg
}

func uniquePrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t-" + hex.EncodeToString(b) + "."
}

// runEngineScenario produces the scenario to the audit topic, runs an
// Engine until it has committed every audit record and stops it. It then
// produces a minute of normal traffic and runs a second Engine in the same
// group, which must resume after the committed offsets: had it read the
// scenario again, its fresh state would raise every alert a second time.
// Finally it asserts that the alerts topic holds exactly the expected
// alerts.
func runEngineScenario(t *testing.T, kcfg kafkaclient.Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Group = "detector-" + strings.TrimSuffix(kcfg.TopicPrefix, ".")
	cfg.TransactionalID = cfg.Group

	produceAudit(t, kcfg, scenarioEvents())
	runUntilCommitted(t, kcfg, cfg)

	calm := spread(20, base.Add(3*time.Minute), time.Minute, func(i int, at time.Time) schemas.AuditEvent {
		return routed(spikeAccount, fmt.Sprintf("subj-calm-%d", i), at)
	})
	produceAudit(t, kcfg, calm)
	runUntilCommitted(t, kcfg, cfg)

	alerts := readAlerts(t, kcfg)
	assertScenarioAlerts(t, alerts)
	for _, a := range alerts {
		want := alertID(a.Rule, a.Key, a.WindowStart.UnixNano(), severityWarning)
		if a.ID != want {
			t.Errorf("alert %s/%s id = %s, want %s", a.Rule, a.Key, a.ID, want)
		}
	}
}

// runUntilCommitted runs an Engine until its group has committed every
// audit record, then stops it and checks that it stopped cleanly.
func runUntilCommitted(t *testing.T, kcfg kafkaclient.Config, cfg Config) {
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
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("engine did not stop within 60s")
		}
	}
	t.Cleanup(func() { _ = stop() })

	waitCommitted(t, kcfg, cfg.Group, eng)
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if eng.Ready() {
		t.Errorf("engine still ready after Run returned")
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// produceAudit writes events to the audit topic keyed as the pipeline keys
// them: ingest events by source address, processor events by account.
func produceAudit(t *testing.T, kcfg kafkaclient.Config, evs []schemas.AuditEvent) {
	t.Helper()
	cl, err := kcfg.NewClient(kgo.DefaultProduceTopic(kcfg.Topic(schemas.TopicAudit)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	records := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		key := ev.Account
		if ev.Stage == schemas.StageIngest {
			key = ev.Source
		}
		value, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		records[i] = &kgo.Record{Key: []byte(key), Value: value}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce audit events: %v", err)
	}
}

// waitCommitted waits until the group has committed the end offset of every
// audit partition, which the engine does in the same transaction as the
// alerts of those records.
func waitCommitted(t *testing.T, kcfg kafkaclient.Config, group string, eng *Engine) {
	t.Helper()
	cl, err := kcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := kcfg.Topic(schemas.TopicAudit)

	deadline := time.Now().Add(90 * time.Second)
	state := "nothing fetched yet"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err := adm.ListEndOffsets(ctx, topic)
		var committed kadm.OffsetResponses
		if err == nil {
			committed, err = adm.FetchOffsets(ctx, group)
		}
		cancel()
		if err != nil {
			state = err.Error()
		} else if done, s := allCommitted(ends, committed, topic); done {
			if !eng.Ready() {
				t.Errorf("engine not ready while consuming")
			}
			return
		} else {
			state = s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("engine did not commit every audit record within 90s: %s", state)
}

func allCommitted(ends kadm.ListedOffsets, committed kadm.OffsetResponses, topic string) (bool, string) {
	done := true
	var parts []string
	ends.Each(func(end kadm.ListedOffset) {
		if end.Topic != topic {
			return
		}
		at := int64(-1)
		if c, ok := committed.Lookup(topic, end.Partition); ok && c.Err == nil {
			at = c.At
		}
		// An empty partition has nothing to commit.
		if end.Offset > 0 && at < end.Offset {
			done = false
		}
		parts = append(parts, fmt.Sprintf("partition %d committed %d of %d", end.Partition, at, end.Offset))
	})
	return done, strings.Join(parts, ", ")
}

// readAlerts returns every committed alert. It first appends an end marker
// to each alerts partition, then reads until it has seen every marker, so
// the read ends exactly at the end of what the engine wrote.
func readAlerts(t *testing.T, kcfg kafkaclient.Config) []schemas.Alert {
	t.Helper()
	topic := kcfg.Topic(schemas.TopicAlerts)
	const marker = "test-end-marker"

	producer, err := kcfg.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for p := range kcfg.Partitions {
		rec := &kgo.Record{Topic: topic, Partition: p, Key: []byte(marker)}
		if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce end marker: %v", err)
		}
	}

	consumer, err := kcfg.NewClient(
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var alerts []schemas.Alert
	seen := map[int32]bool{}
	for len(seen) < int(kcfg.Partitions) {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read alerts: saw end markers of %d of %d partitions: %v", len(seen), kcfg.Partitions, err)
		}
		fetches.EachError(func(_ string, p int32, err error) { t.Errorf("fetch alerts partition %d: %v", p, err) })
		fetches.EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) == marker {
				seen[rec.Partition] = true
				return
			}
			var a schemas.Alert
			if err := json.Unmarshal(rec.Value, &a); err != nil {
				t.Errorf("decode alert at offset %d: %v", rec.Offset, err)
				return
			}
			if want := a.Rule + "/" + a.Key; string(rec.Key) != want {
				t.Errorf("alert record key = %q, want %q", rec.Key, want)
			}
			alerts = append(alerts, a)
		})
	}
	return alerts
}

// TestEngineRestartKeepsWindows checks that a restarted engine rebuilds
// the window in progress from the committed audit records: 15 failed
// signatures before the restart and 10 after, in one window, cross the
// threshold of 20.
func TestEngineRestartKeepsWindows(t *testing.T) {
	runRestartKeepsWindows(t, inProcessKafka(t))
}

func TestEngineRestartKeepsWindowsKafka(t *testing.T) {
	runRestartKeepsWindows(t, realKafka(t))
}

func runRestartKeepsWindows(t *testing.T, kcfg kafkaclient.Config) {
	cfg := DefaultConfig()
	cfg.Group = "detector-" + strings.TrimSuffix(kcfg.TopicPrefix, ".")
	cfg.TransactionalID = cfg.Group
	cfg.Containment.Enabled = false
	const source = "203.0.113.7"
	// Every event carries the same time, so all fall in one window
	// wherever the minute boundary lies.
	at := time.Now().UTC()
	failures := func(from, n int) []schemas.AuditEvent {
		evs := make([]schemas.AuditEvent, n)
		for i := range evs {
			evs[i] = rejected(schemas.ReasonInvalidSignature, source, "", at)
			evs[i].ID = fmt.Sprintf("restart-%d", from+i)
		}
		return evs
	}

	produceAudit(t, kcfg, failures(0, 15))
	runUntilCommitted(t, kcfg, cfg)
	if alerts := readAlerts(t, kcfg); len(alerts) != 0 {
		t.Fatalf("%d alerts after 15 failures, want none below the threshold of %d", len(alerts), cfg.Failure.ThresholdSignatureSource)
	}

	produceAudit(t, kcfg, failures(15, 10))
	runUntilCommitted(t, kcfg, cfg)
	alerts := readAlerts(t, kcfg)
	if len(alerts) != 1 {
		t.Fatalf("%d alerts after the restart, want 1: %+v", len(alerts), alerts)
	}
	if a := alerts[0]; a.Key != source || a.Count != int64(cfg.Failure.ThresholdSignatureSource) {
		t.Errorf("alert key %q count %d, want %s with count %d", a.Key, a.Count, source, cfg.Failure.ThresholdSignatureSource)
	}
}
