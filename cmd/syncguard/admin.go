package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/sinks"
)

// migrateCommand applies the ClickHouse migrations.
func migrateCommand(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("migrate", flag.ContinueOnError)
	configPath := fset.String("config", "", "YAML configuration file (uses sink.clickhouse)")
	if err := fset.Parse(args); err != nil {
		return flagError(err)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if err := cfg.Sink.ClickHouse.Validate(); err != nil {
		return invalidConfig(err)
	}
	conn, err := sinks.OpenClickHouse(ctx, cfg.Sink.ClickHouse)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if err := sinks.Migrate(ctx, conn, cfg.Sink.ClickHouse.Database, newLogger(cfg)); err != nil {
		return err
	}
	fmt.Printf("database %s at %s is up to date with every migration\n", cfg.Sink.ClickHouse.Database, cfg.Sink.ClickHouse.Addr)
	return nil
}

// keysCommand creates or rotates the keyring file, or exports its public
// checkpoint keys.
func keysCommand(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: syncguard keys init|rotate --file FILE, keys export-public --file FILE --out FILE,\n       or keys token-key --file KEY.pem --out JWKS.json [--kid ID] (a test token signing key for loadgen)")
		return errUsage
	}
	fset := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	file := fset.String("file", "keyring.json", "keyring file (written with mode 0600)")
	force := fset.Bool("force", false, "init: overwrite an existing keyring, which makes all data encrypted under it unreadable; token-key: replace an existing key")
	out := fset.String("out", "", "export-public: file to write the public checkpoint keys to (mode 0644; holds no secret); token-key: the JWKS file to write")
	kid := fset.String("kid", "ed-1", "token-key: key id of the token signing key")
	if err := fset.Parse(args[1:]); err != nil {
		return flagError(err)
	}

	switch args[0] {
	case "init":
		if _, err := os.Stat(*file); err == nil && !*force {
			return fmt.Errorf("keyring %s already exists; overwriting it would make data encrypted under it unreadable (use --force to do it anyway)", *file)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check keyring: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(*file), 0o700); err != nil {
			return fmt.Errorf("create keyring folder: %w", err)
		}
		ring := keys.Generate()
		if err := ring.Save(*file); err != nil {
			return err
		}
		fmt.Printf("created keyring %s with master key %s and checkpoint key %s\n", *file, ring.ActiveMaster(), ring.ActiveCheckpointKey())
	case "rotate":
		ring, err := keys.Load(*file)
		if err != nil {
			return err
		}
		id := ring.Rotate()
		if err := ring.Save(*file); err != nil {
			return err
		}
		fmt.Printf("master key %s and checkpoint key %s are now active in %s; older master keys stay for unwrapping "+
			"and older checkpoint public keys for verifying\n", id, ring.ActiveCheckpointKey(), *file)
	case "export-public":
		if *out == "" {
			fmt.Fprintln(os.Stderr, "syncguard keys export-public: --out FILE is required")
			return errUsage
		}
		ring, err := keys.Load(*file)
		if err != nil {
			return err
		}
		pub, err := ring.CheckpointPublicKeys()
		if err != nil {
			return fmt.Errorf("export public keys of %s: %w", *file, err)
		}
		if err := pub.Save(*out); err != nil {
			return err
		}
		fmt.Printf("wrote public checkpoint keys %v to %s\n", pub.IDs(), *out)
	case "token-key":
		// A sync token issuer normally owns this key; this one is for
		// trying the sync API with `syncguard loadgen --signing-key`.
		if *out == "" {
			return fmt.Errorf("keys token-key: --out JWKS_FILE is required")
		}
		if _, err := os.Stat(*file); err == nil && !*force {
			return fmt.Errorf("token key %s already exists; a new key invalidates the tokens signed with it (use --force to replace it)", *file)
		}
		signer, jwks, err := loadgen.GenerateSigningKey(*kid)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*file), 0o700); err != nil {
			return fmt.Errorf("create key folder: %w", err)
		}
		if err := loadgen.SaveSigningKey(*file, signer); err != nil {
			return err
		}
		if err := os.WriteFile(*out, jwks, 0o644); err != nil {
			return fmt.Errorf("write jwks: %w", err)
		}
		fmt.Printf("wrote Ed25519 token signing key %s (kid %s) and its JWKS %s\n", *file, *kid, *out)
	default:
		fmt.Fprintf(os.Stderr, "syncguard keys: unknown subcommand %q, use init, rotate, export-public or token-key\n", args[0])
		return errUsage
	}
	return nil
}

// auditCommand checks the audit hash chain and its signed checkpoints
// stored in ClickHouse.
func auditCommand(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(os.Stderr, "usage: syncguard audit verify [--config FILE] [--public-keys FILE] [--expect-partitions N] [--kafka=false] [--allow-no-checkpoints]")
		return errUsage
	}
	fset := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	configPath := fset.String("config", "", "YAML configuration file (uses sink.clickhouse and keys.keyring_file)")
	publicKeys := fset.String("public-keys", "", "verify checkpoint signatures with this file of `syncguard keys export-public` "+
		"instead of the keyring of keys.keyring_file")
	expect := fset.Int("expect-partitions", 0, "partition count of the audit topic; partitions 0..N-1 without rows "+
		"and checkpoints are then reported missing (0: check only the partitions found in ClickHouse)")
	withKafka := fset.Bool("kafka", true, "also check that audit_log holds the last audit record before the sink group's committed offset "+
		"in Kafka, which anchors the newest rows that no checkpoint covers yet")
	allowUnanchored := fset.Bool("allow-no-checkpoints", false, "pass a chain that has rows but no checkpoint at all "+
		"(a sink that ran without a checkpoint key); without it such a chain fails, because deleting every checkpoint "+
		"would otherwise hide any change")
	if err := fset.Parse(args[1:]); err != nil {
		return flagError(err)
	}
	if *expect < 0 {
		return fmt.Errorf("--expect-partitions: must not be negative, got %d", *expect)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	verifier, err := checkpointVerifier(*publicKeys, cfg.Keys.KeyringFile)
	if err != nil {
		return err
	}
	conn, err := sinks.OpenClickHouse(ctx, cfg.Sink.ClickHouse)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()

	opts := sinks.VerifyOptions{Verifier: verifier, ExpectPartitions: *expect}
	if *withKafka {
		if err := cfg.Kafka.Validate(); err != nil {
			return invalidConfig(err)
		}
		opts.Kafka, opts.SinkGroup = &cfg.Kafka, cfg.Sink.Group
	}
	report, err := sinks.VerifyAudit(ctx, conn, cfg.Sink.ClickHouse.Database, opts)
	if err != nil {
		return err
	}
	printAuditReport(report)
	if err := auditResult(report); err != nil {
		return err
	}
	if report.Rows > 0 && report.Checkpoints == 0 && !*allowUnanchored {
		return fmt.Errorf("audit chain unanchored: %d rows and no checkpoint; they may have been deleted (pass --allow-no-checkpoints if the sink never had a checkpoint key)", report.Rows)
	}
	return nil
}

// checkpointVerifier loads the public keys file when one is given, else the
// keyring.
func checkpointVerifier(publicKeys, keyringFile string) (sinks.CheckpointVerifier, error) {
	if publicKeys != "" {
		return keys.LoadPublicKeys(publicKeys)
	}
	ring, err := keys.Load(keyringFile)
	if err != nil {
		return nil, fmt.Errorf("keys.keyring_file: %w (or pass --public-keys FILE from `syncguard keys export-public`)", err)
	}
	if _, err := ring.CheckpointPublicKeys(); err != nil {
		return nil, fmt.Errorf("keys.keyring_file %s: %w", keyringFile, err)
	}
	return ring, nil
}

func printAuditReport(report sinks.ChainReport) {
	for _, p := range report.Partitions {
		newest := "none"
		if p.NewestCheckpoint >= 0 {
			newest = fmt.Sprintf("%d (signed %s)", p.NewestCheckpoint, p.NewestCheckpointAt.Format(time.RFC3339))
		}
		fmt.Printf("partition %d: %d rows, offsets %d..%d, newest checkpoint %s, unanchored rows %d, broken rows %d, checkpoint problems %d\n",
			p.Partition, p.Rows, p.FirstOffset, p.LastOffset, newest, p.UnanchoredRows, p.BrokenRows, p.CheckpointProblems)
	}
	for _, p := range report.Problems {
		fmt.Printf("problem: %s\n", p)
	}
	if report.Rows > 0 && report.Checkpoints == 0 {
		fmt.Println("warning: audit_checkpoints is empty, so nothing anchors the chain; rows could be rewritten or removed unnoticed")
	}
	if report.KafkaChecked {
		fmt.Println("kafka: audit_log compared with the sink group's committed offsets of the audit topic")
	}
}

func auditResult(report sinks.ChainReport) error {
	if b := report.FirstBroken; b != nil {
		return fmt.Errorf("audit chain broken: partition %d offset %d (row %s): %s", b.Partition, b.Offset, b.ID, b.Problem)
	}
	if !report.OK() {
		var n uint64
		for _, p := range report.Partitions {
			n += p.CheckpointProblems
		}
		first := "see the partitions above"
		if len(report.Problems) > 0 {
			first = report.Problems[0].String()
		}
		return fmt.Errorf("audit chain broken: %d checkpoint problems and %d problems listed, first: %s", n, len(report.Problems), first)
	}
	if report.Rows == 0 || report.Checkpoints > 0 {
		fmt.Printf("audit chain intact: %d rows, %d checkpoints\n", report.Rows, report.Checkpoints)
	}
	return nil
}
