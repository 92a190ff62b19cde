package sinks

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

// wantTables lists every table and view that the migrations create.
var wantTables = []string{
	"alerts", "audit_checkpoints", "audit_log", "messages",
	"schema_migrations", "statuses", "statuses_latest",
}

func TestMigrationFilesOrdered(t *testing.T) {
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != uint32(i+1) {
			t.Errorf("migration %d (%s) has version %d, want %d: versions must count up from 1 without gaps", i, m.Name, m.Version, i+1)
		}
	}
}

// TestMigrationStatementsPortable checks the rules that keep migrations
// running on ClickHouse 18.16 and current releases.
func TestMigrationStatementsPortable(t *testing.T) {
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	unsupported := regexp.MustCompile(`(?i)\b(DateTime64|TTL|CODEC|LowCardinality|IPv6|JSONExtract\w*|toStartOfInterval)\b`)
	for _, m := range ms {
		for i, stmt := range m.Statements {
			if !strings.Contains(stmt, schemas.DatabasePlaceholder) {
				t.Errorf("%s statement %d does not name its database with %s", m.Name, i+1, schemas.DatabasePlaceholder)
			}
			if strings.HasPrefix(strings.ToUpper(stmt), "CREATE") && !strings.Contains(strings.ToUpper(stmt), "IF NOT EXISTS") {
				t.Errorf("%s statement %d is a CREATE without IF NOT EXISTS", m.Name, i+1)
			}
			if found := unsupported.FindString(stmt); found != "" {
				t.Errorf("%s statement %d uses %s, which ClickHouse 18.16 lacks", m.Name, i+1, found)
			}
		}
	}
}

func TestSplitStatements(t *testing.T) {
	f := func(name, sql string, want []string) {
		t.Helper()
		got := schemas.SplitStatements(sql)
		if !slices.Equal(got, want) {
			t.Errorf("%s: SplitStatements = %q, want %q", name, got, want)
		}
	}
	f("empty", "", nil)
	f("comments only", "-- a\n  -- b\n", nil)
	f("one", "SELECT 1;\n", []string{"SELECT 1"})
	f("no final semicolon", "SELECT 1", []string{"SELECT 1"})
	f("two with comments", "-- x\nCREATE TABLE a (\n  x UInt8 -- trailing\n);\n\n-- y\nSELECT 2;", []string{
		"CREATE TABLE a (\n  x UInt8 -- trailing\n)",
		"SELECT 2",
	})
	f("semicolon inside a line", "SELECT ';' AS s;\n", []string{"SELECT ';' AS s"})
}

func TestMigrateTwice(t *testing.T) {
	conn, cfg := testClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()

	for run := 1; run <= 2; run++ {
		if err := Migrate(ctx, conn, cfg.Database, testLogger(t)); err != nil {
			t.Fatalf("migrate run %d: %v", run, err)
		}
	}

	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
	}
	rows.Close()
	if !slices.Equal(got, wantTables) {
		t.Errorf("tables = %v, want %v", got, wantTables)
	}

	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	recorded := countRows(t, conn, "SELECT count() FROM "+cfg.Database+".schema_migrations")
	if recorded != uint64(len(ms)) {
		t.Errorf("schema_migrations has %d rows after two runs, want %d (one per migration)", recorded, len(ms))
	}
}

func TestMigrateRejectsBadDatabaseName(t *testing.T) {
	err := Migrate(context.Background(), nil, "x; DROP DATABASE y", testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "invalid database name") {
		t.Errorf("Migrate with an injected name returned %v, want an invalid database name error", err)
	}
}
