package dashboards

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
	"github.com/syncguard/syncguard/sinks"
)

// The fixture below is a few minutes of realistic traffic: ingest requests
// (accepted, forged, rate limited, one 503), processor verdicts, messages,
// statuses, alerts and checkpoints, plus rows from three hours earlier
// that every time-filtered panel must leave out.

type auditFixture struct {
	at        time.Duration // offset from the fixture's base time
	partition int32
	stage     string
	action    string
	outcome   string
	reason    string
	source    string
	status    uint16
	latency   float64
}

type messageFixture struct {
	id, kind, typ string
	received      time.Duration
	lag           time.Duration // inserted_at - received_at
}

type statusFixture struct {
	messageID, status string
	at                time.Duration
}

type alertFixture struct {
	id, rule, key, severity string
	count                   uint64
	threshold, score        float64
	raised                  time.Duration
}

const (
	forgerSource  = "198.51.100.23"
	forger2Source = "192.0.2.50"
	oldSource     = "192.0.2.99" // only outside the time range
	clientSource  = "203.0.113.7"
	client2Source = "203.0.113.8"
	outOfRange    = -3 * time.Hour
)

var auditFixtures = []auditFixture{
	// Partition 1 starts with an old forged request.
	{outOfRange, 1, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonInvalidSignature, oldSource, 401, 0.001},

	{0, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeAccepted, schemas.ReasonOK, clientSource, 202, 0.004},
	{10 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeAccepted, schemas.ReasonOK, clientSource, 202, 0.006},
	{20 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeAccepted, schemas.ReasonOK, client2Source, 200, 0.008},
	{30 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonInvalidSignature, forgerSource, 401, 0.001},
	{40 * time.Second, 1, schemas.StageProcessor, schemas.ActionVerify, schemas.OutcomeRejected, schemas.ReasonInvalidMAC, "", 0, 0.0002},
	{50 * time.Second, 1, schemas.StageProcessor, schemas.ActionRoute, schemas.OutcomeAccepted, schemas.ReasonOK, "", 0, 0.0003},
	{60 * time.Second, 1, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonInvalidSignature, forgerSource, 401, 0.001},
	{70 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonInvalidSignature, forgerSource, 401, 0.001},
	{80 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonMissingSignature, forgerSource, 401, 0.0008},
	{90 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonInvalidSignature, forger2Source, 401, 0.002},
	{100 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeRejected, schemas.ReasonRateLimited, clientSource, 429, 0.0005},
	{110 * time.Second, 0, schemas.StageIngest, schemas.ActionHTTPRequest, schemas.OutcomeError, schemas.ReasonUnavailable, client2Source, 503, 2.0},
}

var messageFixtures = []messageFixture{
	{"wamid.old", schemas.KindWhatsApp, "text", outOfRange, time.Second},
	{"wamid.1", schemas.KindWhatsApp, "text", 5 * time.Second, 2 * time.Second},
	{"wamid.2", schemas.KindWhatsApp, "text", 15 * time.Second, time.Second},
	{"wamid.3", schemas.KindWhatsApp, "image", 65 * time.Second, 5 * time.Second},
	{"evt-1", schemas.KindSync, "contact_update", 75 * time.Second, 0},
}

var statusFixtures = []statusFixture{
	{"wamid.old", "read", outOfRange},
	{"wamid.1", "sent", 8 * time.Second},
	{"wamid.1", "delivered", 9 * time.Second},
	{"wamid.1", "read", 60 * time.Second},
	{"wamid.2", "sent", 20 * time.Second},
	{"wamid.2", "failed", 80 * time.Second},
}

var alertFixtures = []alertFixture{
	{"alert-old", "failed_signature_source", oldSource, schemas.SeverityWarning, 3, 3, 1, outOfRange},
	{"alert-1", "failed_signature_source", forgerSource, schemas.SeverityWarning, 3, 3, 1, 75 * time.Second},
	{"alert-2", "volume_account", "acct-1", schemas.SeverityInfo, 120, 100, 1.2, 95 * time.Second},
	{"alert-3", "failed_signature_source", forgerSource, schemas.SeverityCritical, 4, 3, 1.33, 105 * time.Second},
}

// fixture is the inserted data with the derived values the checks need.
type fixture struct {
	base, from, to time.Time
	// audit holds the audit rows in insertion order with their offsets and
	// hashes.
	audit []auditRow
}

type auditRow struct {
	auditFixture
	id       string
	time     time.Time
	offset   int64
	prevHash string
	hash     string
}

func (f *fixture) inRange(at time.Duration) bool {
	ts := f.base.Add(at)
	return !ts.Before(f.from) && !ts.After(f.to)
}

func TestPanelQueriesOnClickHouse(t *testing.T) {
	addr := testenv.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	admin, conn, database := openTestDatabase(ctx, t, addr)
	f := insertFixture(ctx, t, admin, database)

	checks := panelChecks(f)
	titles := panelsByTitle()
	for _, q := range Queries() {
		t.Run(q.Panel, func(t *testing.T) {
			check, ok := checks[q.Panel]
			if !ok {
				t.Fatalf("no check for panel %q: add one to panelChecks", q.Panel)
			}
			from := f.from
			if p := titles[q.Panel]; p.TimeFrom != "" {
				// Grafana replaces the dashboard range with the panel's
				// relative one, ending at the same time.
				d, err := time.ParseDuration(p.TimeFrom)
				if err != nil {
					t.Fatalf("panel timeFrom %q: %v", p.TimeFrom, err)
				}
				from = f.to.Add(-d)
			}
			sql, err := expandMacros(q.RawSQL, from, f.to)
			if err != nil {
				t.Fatal(err)
			}
			rows := queryRows(ctx, t, conn, sql)
			if len(rows) == 0 {
				t.Fatalf("query returned no rows for the fixture:\n%s", sql)
			}
			check(t, rows)
		})
	}
}

func panelsByTitle() map[string]Panel {
	out := make(map[string]Panel)
	for _, d := range All() {
		for _, p := range d.Panels {
			out[p.Title] = p
		}
	}
	return out
}

// openTestDatabase migrates a fresh database and returns a connection for
// inserts and one whose default database is the fresh one, as the Grafana
// data source's defaultDatabase makes it for the panels.
func openTestDatabase(ctx context.Context, t *testing.T, addr string) (admin, conn driver.Conn, database string) {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	database = "sgdash_" + hex.EncodeToString(b)

	cfg := sinks.DefaultClickHouseConfig()
	cfg.Addr = addr
	cfg.Database = database
	admin, err := sinks.OpenClickHouse(ctx, cfg)
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			t.Errorf("drop test database %s: %v", database, err)
		}
		_ = admin.Close()
	})
	logger := slog.New(slog.DiscardHandler)
	if err := sinks.Migrate(ctx, admin, database, logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	conn, err = clickhouse.Open(&clickhouse.Options{
		Protocol:    clickhouse.Native,
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: database, Username: cfg.Username},
		DialTimeout: cfg.DialTimeout,
	})
	if err != nil {
		t.Fatalf("open clickhouse with database %s: %v", database, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return admin, conn, database
}

func insertFixture(ctx context.Context, t *testing.T, conn driver.Conn, database string) *fixture {
	t.Helper()
	// The base lies a quarter of an hour back, so that the range of the
	// last-hour panel, which ends at f.to, also holds every recent row.
	base := time.Now().UTC().Truncate(time.Minute).Add(-15 * time.Minute)
	f := &fixture{base: base, from: base.Add(-5 * time.Minute), to: base.Add(10 * time.Minute)}

	// audit_log: each partition's rows are chained by hash in offset order.
	prev := map[int32]string{}
	next := map[int32]int64{}
	for i, a := range auditFixtures {
		p := a.partition
		if prev[p] == "" {
			prev[p] = strings.Repeat("0", 64)
		}
		id := fmt.Sprintf("evt-%02d", i)
		sum := sha256.Sum256([]byte(prev[p] + id))
		row := auditRow{
			auditFixture: a,
			id:           id,
			time:         base.Add(a.at),
			offset:       next[p],
			prevHash:     prev[p],
			hash:         hex.EncodeToString(sum[:]),
		}
		f.audit = append(f.audit, row)
		next[p]++
		prev[p] = row.hash
	}
	insert(ctx, t, conn, database, "audit_log",
		[]string{
			"time", "time_ns", "id", "stage", "action", "route", "outcome", "reason", "source",
			"account", "subject", "device", "message_id", "request_id", "status", "bytes_in", "bytes_out",
			"latency_seconds", "detail", "kafka_partition", "kafka_offset", "prev_hash", "hash",
		},
		func(add func(...any)) {
			for i, r := range f.audit {
				route := ""
				if r.stage == schemas.StageIngest {
					route = "POST /webhooks/whatsapp"
				}
				add(r.time, uint32(0), r.id, r.stage, r.action, route, r.outcome, r.reason,
					r.source, "phone-1", "subj-1", "", "", fmt.Sprintf("req-%02d", i), r.status, uint32(512),
					uint32(64), r.latency, "", r.partition, r.offset, r.prevHash, r.hash)
			}
		})

	insert(ctx, t, conn, database, "messages",
		[]string{
			"message_id", "kind", "type", "account", "subject", "device", "conversation", "sent_at",
			"received_at", "key_id", "nonce", "ciphertext", "client_encrypted", "client_alg", "client_iv",
			"errors", "request_id", "kafka_topic", "kafka_partition", "kafka_offset", "inserted_at",
		},
		func(add func(...any)) {
			for i, m := range messageFixtures {
				received := base.Add(m.received)
				add(m.id, m.kind, m.typ, "phone-1", "subj-1", "", "conv-1", received.Add(-time.Second),
					received, "subj-1/k1", "nonce-12-byte", "ciphertext", uint8(0), "", "",
					"", fmt.Sprintf("req-m%d", i), "syncguard.messages", int32(0), int64(i), received.Add(m.lag))
			}
		})

	insert(ctx, t, conn, database, "statuses",
		[]string{
			"message_id", "account", "recipient", "status", "timestamp", "conversation", "pricing",
			"errors", "request_id", "kafka_topic", "kafka_partition", "kafka_offset", "inserted_at",
		},
		func(add func(...any)) {
			for i, s := range statusFixtures {
				at := base.Add(s.at)
				add(s.messageID, "phone-1", "recipient-1", s.status, at, "conv-1", "", "",
					fmt.Sprintf("req-s%d", i), "syncguard.statuses", int32(0), int64(i), at.Add(time.Second))
			}
		})

	insert(ctx, t, conn, database, "alerts",
		[]string{
			"id", "rule", "key", "severity", "window_seconds", "window_start", "count", "threshold",
			"baseline", "score", "first_seen", "last_seen", "raised_at", "summary", "kafka_topic",
			"kafka_partition", "kafka_offset", "inserted_at",
		},
		func(add func(...any)) {
			for i, a := range alertFixtures {
				raised := base.Add(a.raised)
				add(a.id, a.rule, a.key, a.severity, uint32(60), raised.Truncate(time.Minute), a.count, a.threshold,
					0.0, a.score, raised.Add(-time.Minute), raised, raised, a.rule+" "+a.key, "syncguard.alerts",
					int32(0), int64(i), raised.Add(time.Second))
			}
		})

	// One checkpoint that matches its audit row and one whose hash is not
	// the stored one, as after a rewrite of the row.
	good, bad := f.audit[4], f.audit[len(f.audit)-1]
	insert(ctx, t, conn, database, "audit_checkpoints",
		[]string{"kafka_partition", "kafka_offset", "hash", "signed_at", "signature", "key_id"},
		func(add func(...any)) {
			add(good.partition, good.offset, good.hash, base.Add(2*time.Minute), "sig-good", "audit-1")
			add(bad.partition, bad.offset, strings.Repeat("f", 64), base.Add(3*time.Minute), "sig-bad", "audit-1")
		})
	return f
}

// insert writes the rows that fill adds into table, naming the columns.
func insert(ctx context.Context, t *testing.T, conn driver.Conn, database, table string, columns []string, fill func(add func(...any))) {
	t.Helper()
	batch, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.%s (%s)", database, table, strings.Join(columns, ", ")))
	if err != nil {
		t.Fatalf("prepare insert into %s: %v", table, err)
	}
	defer func() { _ = batch.Close() }()
	fill(func(values ...any) {
		if err := batch.Append(values...); err != nil {
			t.Fatalf("append to %s: %v", table, err)
		}
	})
	if err := batch.Send(); err != nil {
		t.Fatalf("insert into %s: %v", table, err)
	}
}

// queryRows runs sql and returns each row as a map from column name to
// value, with the Go type that the driver scans the column into.
func queryRows(ctx context.Context, t *testing.T, conn driver.Conn, sql string) []map[string]any {
	t.Helper()
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatalf("query failed: %v\n%s", err, sql)
	}
	defer func() { _ = rows.Close() }()
	types := rows.ColumnTypes()
	var out []map[string]any
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("scan: %v\n%s", err, sql)
		}
		row := make(map[string]any, len(types))
		for i, ct := range types {
			row[ct.Name()] = reflect.ValueOf(dest[i]).Elem().Interface()
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read rows: %v\n%s", err, sql)
	}
	return out
}

// Typed accessors for a result row. Each fails the test when the column is
// missing or has another type.

func num(t *testing.T, row map[string]any, col string) float64 {
	t.Helper()
	v := reflect.ValueOf(row[col])
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint())
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	t.Fatalf("column %s = %#v, want a number (row %v)", col, row[col], row)
	return 0
}

func str(t *testing.T, row map[string]any, col string) string {
	t.Helper()
	s, ok := row[col].(string)
	if !ok {
		t.Fatalf("column %s = %#v, want a string (row %v)", col, row[col], row)
	}
	return s
}

func timeOf(t *testing.T, row map[string]any, col string) time.Time {
	t.Helper()
	ts, ok := row[col].(time.Time)
	if !ok {
		t.Fatalf("column %s = %#v, want a time (row %v)", col, row[col], row)
	}
	return ts
}

// sumBy adds up column value of rows, grouped by column label.
func sumBy(t *testing.T, rows []map[string]any, label, value string) map[string]float64 {
	t.Helper()
	out := make(map[string]float64)
	for _, r := range rows {
		out[str(t, r, label)] += num(t, r, value)
	}
	return out
}

// checkBuckets checks that the bucket column is sorted, aligned to the
// interval and inside the range, as Grafana's time series need it.
func checkBuckets(t *testing.T, f *fixture, rows []map[string]any) {
	t.Helper()
	var last time.Time
	for _, r := range rows {
		b := timeOf(t, r, "bucket")
		if b.Unix()%int64(testInterval.Seconds()) != 0 {
			t.Errorf("bucket %s is not aligned to %s", b, testInterval)
		}
		if b.Before(last) {
			t.Errorf("bucket %s comes after %s: rows are not sorted by time", b, last)
		}
		if b.Before(f.from.Truncate(testInterval)) || b.After(f.to) {
			t.Errorf("bucket %s is outside the range %s to %s", b, f.from, f.to)
		}
		last = b
	}
}

func assertCounts(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// panelChecks returns, by panel title, the assertions on each ClickHouse
// panel's result for fixture f. The expected values are derived from the
// fixture tables above.
func panelChecks(f *fixture) map[string]func(*testing.T, []map[string]any) {
	isIngestRequest := func(a auditRow) bool {
		return a.stage == schemas.StageIngest && a.action == schemas.ActionHTTPRequest && f.inRange(a.at)
	}
	perMinute := testInterval.Minutes()

	return map[string]func(*testing.T, []map[string]any){
		"Requests per minute by outcome": func(t *testing.T, rows []map[string]any) {
			checkBuckets(t, f, rows)
			want := map[string]float64{}
			for _, a := range f.audit {
				if isIngestRequest(a) {
					want[a.outcome] += 1 / perMinute
				}
			}
			assertCounts(t, "requests by outcome", sumBy(t, rows, "outcome", "requests_per_minute"), want)
		},

		"Ingest latency p50 / p99": func(t *testing.T, rows []map[string]any) {
			checkBuckets(t, f, rows)
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, a := range f.audit {
				if isIngestRequest(a) {
					lo, hi = min(lo, a.latency), max(hi, a.latency)
				}
			}
			var maxP99 float64
			for _, r := range rows {
				p50, p99 := num(t, r, "p50"), num(t, r, "p99")
				if p50 < lo || p99 > hi || p50 > p99 {
					t.Errorf("bucket %s: p50 %g, p99 %g, want %g <= p50 <= p99 <= %g", timeOf(t, r, "bucket"), p50, p99, lo, hi)
				}
				maxP99 = max(maxP99, p99)
			}
			// The slow 503 dominates the p99 of its bucket.
			if maxP99 < hi/2 {
				t.Errorf("highest p99 = %g, want at least %g", maxP99, hi/2)
			}
		},

		"Rejections by reason": func(t *testing.T, rows []map[string]any) {
			want := map[string]float64{}
			for _, a := range f.audit {
				if a.outcome == schemas.OutcomeRejected && f.inRange(a.at) {
					want[a.stage+": "+a.reason]++
				}
			}
			assertCounts(t, "rejections by stage and reason", sumBy(t, rows, "stage_reason", "rejections"), want)
			for i := 1; i < len(rows); i++ {
				if num(t, rows[i], "rejections") > num(t, rows[i-1], "rejections") {
					t.Errorf("row %d has more rejections than row %d: not sorted", i, i-1)
				}
			}
		},

		"Top 10 sources by failed signatures (last 1h)": func(t *testing.T, rows []map[string]any) {
			counts := map[string]float64{}
			for _, a := range f.audit {
				failed := a.reason == schemas.ReasonInvalidSignature || a.reason == schemas.ReasonMissingSignature
				if isIngestRequest(a) && a.outcome == schemas.OutcomeRejected && failed {
					counts[a.source]++
				}
			}
			var want []string
			for s := range counts {
				want = append(want, s)
			}
			sort.Slice(want, func(i, j int) bool {
				if counts[want[i]] != counts[want[j]] {
					return counts[want[i]] > counts[want[j]]
				}
				return want[i] < want[j]
			})
			var got []string
			for _, r := range rows {
				got = append(got, str(t, r, "source"))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("sources = %v, want %v", got, want)
			}
			if got[0] != forgerSource {
				t.Errorf("top source = %s, want %s", got[0], forgerSource)
			}
			assertCounts(t, "failed signatures by source", sumBy(t, rows, "source", "failed_signatures"), counts)
			first, last := timeOf(t, rows[0], "first_seen"), timeOf(t, rows[0], "last_seen")
			if !first.Before(last) {
				t.Errorf("top source first_seen %s is not before last_seen %s", first, last)
			}
		},

		"Messages stored per minute by type": func(t *testing.T, rows []map[string]any) {
			checkBuckets(t, f, rows)
			want := map[string]float64{}
			for _, m := range messageFixtures {
				if f.inRange(m.received + m.lag) {
					want[m.typ] += 1 / perMinute
				}
			}
			assertCounts(t, "messages by type", sumBy(t, rows, "type", "messages_per_minute"), want)
		},

		"Delivery statuses per minute by status": func(t *testing.T, rows []map[string]any) {
			checkBuckets(t, f, rows)
			want := map[string]float64{}
			for _, s := range statusFixtures {
				if f.inRange(s.at) {
					want[s.status] += 1 / perMinute
				}
			}
			assertCounts(t, "statuses by status", sumBy(t, rows, "status", "updates_per_minute"), want)
		},

		"End-to-end lag (received to stored)": func(t *testing.T, rows []map[string]any) {
			checkBuckets(t, f, rows)
			var wantMax float64
			for _, m := range messageFixtures {
				if f.inRange(m.received + m.lag) {
					wantMax = max(wantMax, m.lag.Seconds())
				}
			}
			var gotMax float64
			for _, r := range rows {
				p50, p99, mx := num(t, r, "p50"), num(t, r, "p99"), num(t, r, "max_lag")
				if p50 < 0 || p50 > p99 || p99 > mx {
					t.Errorf("bucket %s: p50 %g, p99 %g, max %g, want 0 <= p50 <= p99 <= max", timeOf(t, r, "bucket"), p50, p99, mx)
				}
				gotMax = max(gotMax, mx)
			}
			if gotMax != wantMax {
				t.Errorf("highest max_lag = %g, want %g", gotMax, wantMax)
			}
		},

		"Latest alerts": func(t *testing.T, rows []map[string]any) {
			var want []alertFixture
			for _, a := range alertFixtures {
				if f.inRange(a.raised) {
					want = append(want, a)
				}
			}
			sort.Slice(want, func(i, j int) bool { return want[i].raised > want[j].raised })
			if len(rows) != len(want) {
				t.Fatalf("%d alerts, want %d", len(rows), len(want))
			}
			for i, w := range want {
				r := rows[i]
				if got := str(t, r, "rule"); got != w.rule {
					t.Errorf("alert %d: rule = %s, want %s", i, got, w.rule)
				}
				if got := str(t, r, "key"); got != w.key {
					t.Errorf("alert %d: key = %s, want %s", i, got, w.key)
				}
				if got := str(t, r, "severity"); got != w.severity {
					t.Errorf("alert %d: severity = %s, want %s", i, got, w.severity)
				}
				if got := num(t, r, "count"); got != float64(w.count) {
					t.Errorf("alert %d: count = %g, want %d", i, got, w.count)
				}
				if got := num(t, r, "score"); got != w.score {
					t.Errorf("alert %d: score = %g, want %g", i, got, w.score)
				}
				if got := timeOf(t, r, "raised_at"); !got.Equal(f.base.Add(w.raised)) {
					t.Errorf("alert %d: raised_at = %s, want %s", i, got, f.base.Add(w.raised))
				}
				if !timeOf(t, r, "first_seen").Before(timeOf(t, r, "last_seen")) {
					t.Errorf("alert %d: first_seen is not before last_seen", i)
				}
			}
		},

		"Audit chain per partition": func(t *testing.T, rows []map[string]any) {
			type head struct {
				rows   int
				offset int64
				hash   string
			}
			want := map[int32]head{}
			for _, a := range f.audit {
				h := want[a.partition]
				h.rows++
				if a.offset >= h.offset {
					h.offset, h.hash = a.offset, a.hash
				}
				want[a.partition] = h
			}
			if len(rows) != len(want) {
				t.Fatalf("%d partitions, want %d", len(rows), len(want))
			}
			for _, r := range rows {
				p := int32(num(t, r, "kafka_partition"))
				w, ok := want[p]
				if !ok {
					t.Errorf("unexpected partition %d", p)
					continue
				}
				if got := int(num(t, r, "audit_rows")); got != w.rows {
					t.Errorf("partition %d: audit_rows = %d, want %d", p, got, w.rows)
				}
				if got := int64(num(t, r, "last_offset")); got != w.offset {
					t.Errorf("partition %d: last_offset = %d, want %d", p, got, w.offset)
				}
				if got := str(t, r, "last_hash"); got != w.hash {
					t.Errorf("partition %d: last_hash = %s, want %s", p, got, w.hash)
				}
			}
		},

		"Signed audit checkpoints": func(t *testing.T, rows []map[string]any) {
			good, bad := f.audit[4], f.audit[len(f.audit)-1]
			// Newest first: the bad checkpoint was signed later.
			want := []struct {
				partition int32
				offset    int64
				matches   float64
			}{
				{bad.partition, bad.offset, 0},
				{good.partition, good.offset, 1},
			}
			if len(rows) != len(want) {
				t.Fatalf("%d checkpoints, want %d", len(rows), len(want))
			}
			for i, w := range want {
				r := rows[i]
				if p, o := int32(num(t, r, "kafka_partition")), int64(num(t, r, "kafka_offset")); p != w.partition || o != w.offset {
					t.Errorf("checkpoint %d at partition %d offset %d, want %d/%d", i, p, o, w.partition, w.offset)
				}
				if got := num(t, r, "hash_matches"); got != w.matches {
					t.Errorf("checkpoint %d: hash_matches = %g, want %g", i, got, w.matches)
				}
			}
		},
	}
}
