package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/syncguard/syncguard/schemas"
)

// schemaMigrationsDDL creates the table that records applied migrations.
// It is not a migration file itself, because Migrate reads the table before
// it applies the first migration.
const schemaMigrationsDDL = `CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime
) ENGINE = MergeTree()
ORDER BY version`

// Migrate creates database if it is missing and applies, in version order,
// every embedded migration that schema_migrations does not list yet,
// recording each one after all its statements succeeded. Every statement
// uses IF NOT EXISTS, so running Migrate again, or twice at the same time,
// changes nothing. A migration that fails halfway is retried whole on the
// next run.
func Migrate(ctx context.Context, conn driver.Conn, database string, logger *slog.Logger) error {
	if err := checkDatabaseName(database); err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	migrations, err := schemas.Migrations()
	if err != nil {
		return err
	}

	version, err := ServerVersion(ctx, conn)
	if err != nil {
		return err
	}
	logger.Info("migrating clickhouse", "server_version", version, "database", database)

	// Bootstrap the database and the migrations table.
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	if err := conn.Exec(ctx, withDatabase(schemaMigrationsDDL, database)); err != nil {
		return fmt.Errorf("create %s.schema_migrations: %w", database, err)
	}
	applied, err := appliedMigrations(ctx, conn, database)
	if err != nil {
		return err
	}

	// Apply what is missing.
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, withDatabase(stmt, database)); err != nil {
				return fmt.Errorf("apply migration %04d_%s statement %d of %d: %w", m.Version, m.Name, i+1, len(m.Statements), err)
			}
		}
		if err := recordMigration(ctx, conn, database, m); err != nil {
			return err
		}
		logger.Info("applied clickhouse migration", "version", m.Version, "name", m.Name, "database", database)
	}
	return nil
}

func withDatabase(stmt, database string) string {
	return strings.ReplaceAll(stmt, schemas.DatabasePlaceholder, database)
}

func appliedMigrations(ctx context.Context, conn driver.Conn, database string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+database+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
	}
	defer func() { _ = rows.Close() }()

	applied := make(map[uint32]bool)
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
	}
	return applied, nil
}

func recordMigration(ctx context.Context, conn driver.Conn, database string, m schemas.Migration) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".schema_migrations (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("record migration %d: %w", m.Version, err)
	}
	// Close does nothing after Send. On an early return it ends the INSERT
	// without the buffered rows, and the function returns the Append error.
	defer func() { _ = batch.Close() }()

	if err := batch.Append(m.Version, m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("record migration %d: %w", m.Version, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("record migration %d: %w", m.Version, err)
	}
	return nil
}
