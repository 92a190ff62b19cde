package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/internal/telemetry"
)

// Demo traffic shape. Normal traffic stays under the volume threshold of
// every account. The spike alone crosses it for one account, and the forged
// burst crosses the failed-signature threshold for one address.
const (
	demoAccounts        = 4
	demoDevices         = 6
	demoRate            = 25 // requests per second of normal traffic
	demoVolumeThreshold = 300
	// Sync clients push batches of events for their user, so the demo's
	// per-subject threshold sits above what its normal sync traffic sends.
	demoSubjectThreshold = 1000
	demoSpikeMessages    = 350
	demoForgedRequests   = 40
	// demoForgedRate paces the forged burst (requests per second) so that
	// the detector's block lands while it still runs.
	demoForgedRate   = 10
	demoAttackerAddr = "127.0.0.2"
)

func demoCommand(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("demo", flag.ContinueOnError)
	kafkaMode := fset.String("kafka", "inprocess", "inprocess (an in-memory Kafka inside this process) or real (the brokers in --brokers)")
	brokers := fset.String("brokers", envOr("SYNCGUARD_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka brokers for --kafka=real, comma-separated")
	clickhouse := fset.String("clickhouse", envOr("SYNCGUARD_CLICKHOUSE_ADDR", "127.0.0.1:19000"), "ClickHouse native-protocol address")
	duration := fset.Duration("duration", 30*time.Second, "how long normal traffic runs before the attack")
	dir := fset.String("dir", filepath.Join(".local", "demo"), "folder for the demo's keyring, token key, configuration and log")
	if err := fset.Parse(args); err != nil {
		return flagError(err)
	}
	if *kafkaMode != "inprocess" && *kafkaMode != "real" {
		return fmt.Errorf("--kafka: use inprocess or real, not %q", *kafkaMode)
	}

	// 1. Workspace: fresh keys and a fresh database. On the real Kafka the
	// topics and groups get a new name each run, because earlier runs'
	// topics still hold their records.
	const database = "syncguard_demo"
	name := database
	var brokerList []string
	if *kafkaMode == "real" {
		brokerList = strings.Split(*brokers, ",")
		name = fmt.Sprintf("syncguard_demo_%d", time.Now().Unix())
	}
	ws, err := newWorkspace(*dir, name, brokerList, *kafkaMode == "inprocess", *clickhouse)
	if err != nil {
		return err
	}
	ws.cfg.Sink.ClickHouse.Database = database
	ws.cfg.Detector.Volume.ThresholdAccount = demoVolumeThreshold
	ws.cfg.Detector.Volume.ThresholdSubject = demoSubjectThreshold
	// Block the forging address as soon as its alert is raised, so the
	// demo shows containment; production keeps the critical default.
	ws.cfg.Detector.Containment.MinSeverity = "warning"
	say("SyncGuard demo: Kafka %s, ClickHouse %s, database %s", *kafkaMode, *clickhouse, database)
	if err := ws.resetDatabase(ctx); err != nil {
		return err
	}
	// The report reads ClickHouse, so the run's topics on a real broker
	// are of no further use once it ends.
	defer ws.deleteTopics()

	// 2. Pipeline: every target in this process, logging to a file so the
	// terminal shows the demo's progress only.
	logPath := filepath.Join(*dir, "syncguard.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	defer closeLogFile(logFile)
	logger := telemetry.NewLogger(ws.cfg.Telemetry, logFile)
	if err := ws.cfg.validate(allTargets); err != nil {
		return fmt.Errorf("BUG: demo configuration invalid: %w", err)
	}
	p, err := newPipeline(ctx, ws.cfg, allTargets, logger)
	if err != nil {
		return err
	}
	runCtx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	pipelineDone := make(chan error, 1)
	go func() { pipelineDone <- p.run(runCtx) }()
	defer func() {
		stopPipeline()
		if err := <-pipelineDone; err != nil {
			say("pipeline stopped with an error (log: %s): %v", logPath, err)
		}
	}()
	if err := waitReady(ctx, p, 60*time.Second); err != nil {
		return fmt.Errorf("%w (log: %s)", err, logPath)
	}
	target := "http://" + p.ingestAddr()
	say("pipeline ready: ingest %s, metrics http://%s/metrics, log %s", target, p.opsLn.Addr(), logPath)

	// 3. Traffic: normal load, then the two attacks.
	seed := time.Now().UnixNano()
	webhooks, syncs, accounts, err := ws.factories(seed, demoAccounts, demoDevices)
	if err != nil {
		return err
	}
	mon := newDemoMonitor(ws.cfg.Sink.ClickHouse, database)
	defer mon.close()
	base := loadgen.Config{Target: target, Webhooks: webhooks, Sync: syncs, Concurrency: 8, Timeout: 10 * time.Second}
	normal := base
	normal.Rate, normal.Duration = demoRate, *duration
	normal.Mix = loadgen.Mix{Webhook: 70, Sync: 25, Redelivery: 5}
	normal.Progress = func(s loadgen.Snapshot) { mon.progress(ctx, "normal traffic", s) }
	say("sending normal traffic for %s: %d accounts, %d devices, %d requests/s", *duration, demoAccounts, demoDevices, demoRate)
	reports := []loadgen.Report{}
	r, err := loadgen.Run(ctx, normal)
	if err != nil {
		return fmt.Errorf("normal traffic: %w", err)
	}
	mon.finished(ctx, "normal traffic", r)
	reports = append(reports, r)

	say("attack 1: %d webhooks with forged signatures from %s, %d per second", demoForgedRequests, demoAttackerAddr, demoForgedRate)
	forged, err := loadgen.ForgedBurst(demoForgedRequests, demoAttackerAddr).Config(base)
	if err != nil {
		return err
	}
	forged.Rate = demoForgedRate
	forged.Progress = func(s loadgen.Snapshot) { mon.progress(ctx, "forged burst", s) }
	r, err = loadgen.Run(ctx, forged)
	if err != nil {
		return fmt.Errorf("forged burst: %w", err)
	}
	mon.finished(ctx, "forged burst", r)
	reports = append(reports, r)

	spiked := accounts[len(accounts)-1]
	say("attack 2: volume spike of %d messages to account %s", demoSpikeMessages, spiked.PhoneNumberID)
	r, err = loadgen.VolumeSpike(spiked, demoSpikeMessages).Run(ctx, base)
	if err != nil {
		return fmt.Errorf("volume spike: %w", err)
	}
	mon.finished(ctx, "volume spike", r)
	reports = append(reports, r)

	// 4. Settle and report.
	say("waiting for the pipeline to store everything")
	if err := mon.waitSettled(ctx, 60*time.Second); err != nil {
		return err
	}
	stopPipeline()
	if err := <-pipelineDone; err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	pipelineDone <- nil // the deferred stop reads it again
	return mon.report(ctx, reports, *clickhouse)
}

// waitReady polls the pipeline until every component is ready.
func waitReady(ctx context.Context, p *pipeline, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !p.ready() {
		if time.Now().After(deadline) {
			return errors.New("pipeline not ready in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// say prints one line of demo progress.
func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// closeLogFile closes the pipeline log of demo and bench. It prints a
// failure instead of returning it, because the command's result does not
// depend on the log.
func closeLogFile(f *os.File) {
	if err := f.Close(); err != nil {
		say("closing the log %s failed, so it may be incomplete: %v", f.Name(), err)
	}
}
