package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/sinks"
)

// demoMonitor watches the demo's ClickHouse database and prints progress
// and the final report.
type demoMonitor struct {
	cfg      sinks.ClickHouseConfig
	database string
	conn     driver.Conn
}

func newDemoMonitor(cfg sinks.ClickHouseConfig, database string) *demoMonitor {
	return &demoMonitor{cfg: cfg, database: database}
}

func (m *demoMonitor) connect(ctx context.Context) (driver.Conn, error) {
	if m.conn != nil {
		return m.conn, nil
	}
	conn, err := sinks.OpenClickHouse(ctx, m.cfg)
	if err != nil {
		return nil, err
	}
	m.conn = conn
	return conn, nil
}

func (m *demoMonitor) close() {
	if m.conn != nil {
		_ = m.conn.Close()
	}
}

// count runs a count query; {db} stands for the demo database. Errors
// count as -1 so that progress lines keep going during a hiccup.
func (m *demoMonitor) count(ctx context.Context, query string) int64 {
	conn, err := m.connect(ctx)
	if err != nil {
		return -1
	}
	var n uint64
	if err := conn.QueryRow(ctx, strings.ReplaceAll(query, "{db}", m.database)).Scan(&n); err != nil {
		return -1
	}
	return int64(n)
}

func (m *demoMonitor) progress(ctx context.Context, phase string, s loadgen.Snapshot) {
	fmt.Printf("    %-20s %4.0fs  sent %6d  2xx %6d  4xx %5d  5xx %4d  |  audit rows %7d  messages %6d  alerts %3d\n",
		phase, s.Elapsed.Seconds(), s.Sent, s.OK, s.ClientErrors, s.ServerErrors,
		m.count(ctx, "SELECT count() FROM {db}.audit_log"),
		m.count(ctx, "SELECT count() FROM {db}.messages"),
		m.count(ctx, "SELECT count() FROM {db}.alerts"))
}

// finished prints the final progress line of a phase from its report,
// since the once-a-second lines miss the phase's last partial second.
func (m *demoMonitor) finished(ctx context.Context, phase string, r loadgen.Report) {
	m.progress(ctx, phase+" done", snapshotOf(r))
}

// snapshotOf returns the totals of a finished run as a progress snapshot.
func snapshotOf(r loadgen.Report) loadgen.Snapshot {
	s := loadgen.Snapshot{Elapsed: r.Elapsed, Sent: r.Sent, Errors: r.Errors}
	for code, n := range r.ByStatus {
		switch {
		case code >= 500:
			s.ServerErrors += n
		case code >= 400:
			s.ClientErrors += n
		case code >= 200 && code < 300:
			s.OK += n
		}
	}
	return s
}

// waitSettled waits until the audit row count has not changed for two
// seconds, which means the sink has caught up with everything produced.
func (m *demoMonitor) waitSettled(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		n := m.count(ctx, "SELECT count() FROM {db}.audit_log")
		if n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) >= 2*time.Second {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("audit rows still arriving after %s", timeout)
}

// report prints what the run did, from the load generator's counts and
// from ClickHouse.
func (m *demoMonitor) report(ctx context.Context, reports []loadgen.Report, clickhouseAddr string) error {
	conn, err := m.connect(ctx)
	if err != nil {
		return err
	}
	var sent, ok int64
	for _, r := range reports {
		sent += r.Sent
		for code, n := range r.ByStatus {
			if code >= 200 && code < 300 {
				ok += n
			}
		}
	}

	fmt.Println()
	fmt.Println("SyncGuard demo report")
	fmt.Println("=====================")
	fmt.Printf("requests sent: %d, acknowledged (2xx): %d\n\n", sent, ok)

	if err := m.printTable(ctx, "ingest outcome\treason\trequests",
		"SELECT outcome, reason, toString(count()) FROM {db}.audit_log WHERE stage = 'ingest' GROUP BY outcome, reason ORDER BY outcome, count() DESC"); err != nil {
		return err
	}
	fmt.Println()

	if err := m.printTable(ctx, "stored\tkind\tencrypted by\trows",
		"SELECT 'messages', kind, if(client_encrypted = 1, 'client (end to end)', 'syncguard (AES-256-GCM)'), toString(count()) FROM {db}.messages FINAL GROUP BY kind, client_encrypted ORDER BY kind",
		fmt.Sprintf("statuses\twhatsapp\t-\t%d", m.count(ctx, "SELECT count() FROM {db}.statuses")),
		fmt.Sprintf("duplicates dropped\t\t\t%d", m.count(ctx, "SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND outcome = 'duplicate'"))); err != nil {
		return err
	}
	fmt.Println()

	chain, err := sinks.VerifyChain(ctx, conn, m.database)
	if err != nil {
		return err
	}
	verdict := "intact"
	if !chain.OK() {
		verdict = "BROKEN at partition " + fmt.Sprint(chain.FirstBroken.Partition)
	}
	fmt.Printf("audit rows: %d in %d hash-chained partitions, chain %s\n\n", chain.Rows, len(chain.Partitions), verdict)

	if err := m.printTable(ctx, "alert rule\tkey\tseverity\tcount when raised\tthreshold",
		"SELECT rule, key, severity, toString(count), toString(threshold) FROM {db}.alerts ORDER BY raised_at"); err != nil {
		return err
	}

	fmt.Printf(`
Look further with clickhouse-client --port %s --database %s:
  SELECT reason, source, count() FROM audit_log WHERE outcome = 'rejected' GROUP BY reason, source ORDER BY count() DESC
  SELECT type, count() FROM messages FINAL GROUP BY type ORDER BY count() DESC
  SELECT rule, key, severity, count, first_seen, last_seen, summary FROM alerts
  SELECT message_id, latest_status, failed FROM statuses_latest LIMIT 10
`, portOf(clickhouseAddr), m.database)
	return nil
}

// printTable prints an aligned table to standard output: the header, the
// rows of query and then the extra lines. The header and the extra lines
// separate their columns with tabs.
func (m *demoMonitor) printTable(ctx context.Context, header, query string, extra ...string) error {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, header); err != nil {
		return err
	}
	if err := m.rows(ctx, tw, query); err != nil {
		return err
	}
	for _, line := range extra {
		if _, err := fmt.Fprintln(tw, line); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// rows prints the rows of a query whose columns are all strings, tab
// separated.
func (m *demoMonitor) rows(ctx context.Context, w *tabwriter.Writer, query string) error {
	rows, err := m.conn.Query(ctx, strings.ReplaceAll(query, "{db}", m.database))
	if err != nil {
		return fmt.Errorf("report query: %w", err)
	}
	defer func() { _ = rows.Close() }()
	n := len(rows.Columns())
	for rows.Next() {
		vals := make([]string, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if _, err := fmt.Fprintln(w, strings.Join(vals, "\t")); err != nil {
			return err
		}
	}
	return rows.Err()
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
