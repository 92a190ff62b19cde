package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/sinks"
)

// migrateCommand applies the ClickHouse migrations.
func migrateCommand(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("migrate", flag.ContinueOnError)
	configPath := fset.String("config", "", "YAML configuration file (uses sink.clickhouse)")
	if err := fset.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if err := cfg.Sink.ClickHouse.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	conn, err := sinks.OpenClickHouse(ctx, cfg.Sink.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := sinks.Migrate(ctx, conn, cfg.Sink.ClickHouse.Database, newLogger(cfg)); err != nil {
		return err
	}
	fmt.Printf("database %s is up to date at %s\n", cfg.Sink.ClickHouse.Database, cfg.Sink.ClickHouse.Addr)
	return nil
}

// keysCommand creates or rotates the keyring file.
func keysCommand(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: syncguard keys init|rotate --file FILE")
		return errUsage
	}
	fset := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	file := fset.String("file", "keyring.json", "keyring file (written with mode 0600)")
	force := fset.Bool("force", false, "init: overwrite an existing keyring, which makes all data encrypted under it unreadable")
	if err := fset.Parse(args[1:]); err != nil {
		return errUsage
	}

	switch args[0] {
	case "init":
		if _, err := os.Stat(*file); err == nil && !*force {
			return fmt.Errorf("keyring %s already exists; overwriting it would make data encrypted under it unreadable (use --force to do it anyway)", *file)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check keyring: %w", err)
		}
		ring := keys.Generate()
		if err := ring.Save(*file); err != nil {
			return err
		}
		fmt.Printf("created keyring %s with master key %s\n", *file, ring.ActiveMaster())
	case "rotate":
		ring, err := keys.Load(*file)
		if err != nil {
			return err
		}
		id := ring.Rotate()
		if err := ring.Save(*file); err != nil {
			return err
		}
		fmt.Printf("master key %s is now active in %s; older master keys stay for unwrapping\n", id, *file)
	default:
		fmt.Fprintf(os.Stderr, "syncguard keys: unknown subcommand %q, use init or rotate\n", args[0])
		return errUsage
	}
	return nil
}

// auditCommand checks the audit hash chain stored in ClickHouse.
func auditCommand(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(os.Stderr, "usage: syncguard audit verify [--config FILE]")
		return errUsage
	}
	fset := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	configPath := fset.String("config", "", "YAML configuration file (uses sink.clickhouse)")
	if err := fset.Parse(args[1:]); err != nil {
		return errUsage
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	conn, err := sinks.OpenClickHouse(ctx, cfg.Sink.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()

	report, err := sinks.VerifyChain(ctx, conn, cfg.Sink.ClickHouse.Database)
	if err != nil {
		return err
	}
	for _, p := range report.Partitions {
		fmt.Printf("partition %d: %d rows, offsets %d..%d, broken rows %d\n", p.Partition, p.Rows, p.FirstOffset, p.LastOffset, p.BrokenRows)
	}
	if !report.OK() {
		b := report.FirstBroken
		return fmt.Errorf("audit chain broken: partition %d offset %d (row %s): %s", b.Partition, b.Offset, b.ID, b.Problem)
	}
	fmt.Printf("audit chain intact: %d rows\n", report.Rows)
	return nil
}
