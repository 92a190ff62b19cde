package main

import (
	"context"
	"crypto/md5"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/internal/telemetry"
	"github.com/syncguard/syncguard/sinks"
)

// benchCommand measures the pipeline on the real Kafka and ClickHouse:
// the highest sustained webhook rate against ingest and against a
// do-nothing HTTP server under the same load generator, then ack and
// end-to-end latency at half of ingest's highest rate.
func benchCommand(ctx context.Context, args []string) (err error) {
	fset := flag.NewFlagSet("bench", flag.ContinueOnError)
	brokers := fset.String("brokers", envOr("SYNCGUARD_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka brokers, comma-separated")
	clickhouse := fset.String("clickhouse", envOr("SYNCGUARD_CLICKHOUSE_ADDR", "127.0.0.1:19000"), "ClickHouse native-protocol address")
	duration := fset.Duration("duration", 20*time.Second, "length of each measured phase")
	warmup := fset.Duration("warmup", 20*time.Second, "unmeasured load before the first phase, so that the Kafka broker's JIT compiler has run")
	concurrency := fset.Int("concurrency", 64, "connections of the load generator")
	dir := fset.String("dir", filepath.Join(".local", "bench"), "folder for the run's keys, configuration and log")
	cpuProfile := fset.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flood := addFloodFlags(fset)
	if err := fset.Parse(args); err != nil {
		return errUsage
	}
	if *cpuProfile != "" {
		stopProfile, profileErr := startCPUProfile(*cpuProfile)
		if profileErr != nil {
			return profileErr
		}
		defer func() { err = errors.Join(err, stopProfile()) }()
	}
	if flood.enabled {
		return flood.run(ctx, strings.Split(*brokers, ","), *clickhouse, *duration, *concurrency, *dir)
	}

	name := fmt.Sprintf("syncguard_bench_%d", time.Now().Unix())
	ws, err := newWorkspace(*dir, name, strings.Split(*brokers, ","), false, *clickhouse)
	if err != nil {
		return err
	}
	// The load comes from one loopback address and a few accounts, so the
	// rate limits would measure themselves instead of the pipeline.
	ws.cfg.Ingest.RateLimits.Source.Rate = 0
	ws.cfg.Ingest.RateLimits.Account.Rate = 0
	if err := ws.resetDatabase(ctx); err != nil {
		return err
	}
	defer ws.deleteTopics()
	logPath := filepath.Join(*dir, "syncguard.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	defer closeLogFile(logFile)
	p, err := newPipeline(ctx, ws.cfg, allTargets, telemetry.NewLogger(ws.cfg.Telemetry, logFile))
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
	baseline, stopBaseline, err := startNoopServer()
	if err != nil {
		return err
	}
	defer stopBaseline()
	ingestURL := "http://" + p.ingestAddr()

	load := func(target string, rate float64, seed int64) (loadgen.Report, error) {
		webhooks, _, _, err := ws.factories(seed, 3, 1)
		if err != nil {
			return loadgen.Report{}, err
		}
		return loadgen.Run(ctx, loadgen.Config{
			Target: target, Rate: rate, Duration: *duration, Concurrency: *concurrency,
			Mix: loadgen.Mix{Webhook: 1}, Webhooks: webhooks, TrackAcks: 1_000_000,
		})
	}

	// A broker that just started runs interpreted Java until its JIT has
	// compiled the hot paths: the first run after a restart measured half
	// the rate of the next ones.
	if *warmup > 0 {
		say("warming up for %s", *warmup)
		webhooks, _, _, err := ws.factories(0, 3, 1)
		if err != nil {
			return err
		}
		if _, err := loadgen.Run(ctx, loadgen.Config{
			Target: ingestURL, Duration: *warmup, Concurrency: *concurrency,
			Mix: loadgen.Mix{Webhook: 1}, Webhooks: webhooks,
		}); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := ws.waitDrained(ctx, 2*time.Minute); err != nil {
			return err
		}
	}

	// Phase 1: highest sustained rate, closed loop, the baseline first.
	say("phase 1: highest rate of the do-nothing server (%s, %d connections)", *duration, *concurrency)
	noop, err := load(baseline, 0, 1)
	if err != nil {
		return err
	}
	say("phase 1: highest rate of SyncGuard ingest")
	full, err := load(ingestURL, 0, 2)
	if err != nil {
		return err
	}
	fullOK := okCount(full)
	// The time the consumers need to catch up shows whether the full rate
	// is one the whole pipeline sustains, or only ingest.
	drainStart := time.Now()
	if err := ws.waitDrained(ctx, 5*time.Minute); err != nil {
		return err
	}
	drained := time.Since(drainStart)

	// Phase 2: half of SyncGuard's highest rate, open loop, with a watcher
	// that notes when each sampled message appears in ClickHouse.
	half := float64(fullOK) / full.Elapsed.Seconds() / 2
	say("phase 2: %.0f requests/s (half of SyncGuard's highest) for %s", half, *duration)
	watch := newRowWatcher(ws.cfg.Sink.ClickHouse, name)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- watch.run(watchCtx) }()
	halfReport, err := load(ingestURL, half, 3)
	if err != nil {
		stopWatch()
		return err
	}
	sampled := sampleAcks(halfReport.Acks)
	watch.waitFor(ctx, sampled, 60*time.Second)
	stopWatch()
	if err := <-watchDone; err != nil {
		return err
	}
	e2e := loadgen.NewHistogram()
	missing := 0
	for _, a := range sampled {
		seen, ok := watch.seenAt(a.ID)
		if !ok {
			missing++
			continue
		}
		e2e.Record(max(seen.Sub(a.At), 0))
	}

	printBench(benchResult{
		duration: *duration, concurrency: *concurrency, noop: noop, full: full, half: halfReport,
		halfRate: half, e2e: e2e.Summary(), e2eSamples: len(sampled), e2eMissing: missing,
		drained: drained,
	})
	return nil
}

// startCPUProfile starts a CPU profile of the process that is written to
// path. The returned function stops it and closes the file. Its error means
// that the profile is incomplete.
func startCPUProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: close %s: %w", path, err)
		}
		return nil
	}, nil
}

// startNoopServer runs an HTTP server that reads each body and responds 200,
// the baseline that ingest's throughput is compared with.
func startNoopServer() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("baseline server: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func okCount(r loadgen.Report) int64 {
	var n int64
	for code, c := range r.ByStatus {
		if code >= 200 && code < 300 {
			n += c
		}
	}
	return n
}

// sampleAcks keeps the message acknowledgements whose id falls in the
// 1/16 sample that rowWatcher selects in ClickHouse: first byte of the MD5
// of the id below 16.
func sampleAcks(acks []loadgen.Ack) []loadgen.Ack {
	var out []loadgen.Ack
	for _, a := range acks {
		if a.Kind != loadgen.KindWebhook || a.Status != "" {
			continue
		}
		if sum := md5.Sum([]byte(a.ID)); sum[0] < 16 {
			out = append(out, a)
		}
	}
	return out
}

// rowWatcher polls the messages table and notes when each sampled message
// id first appears. Its resolution is the poll interval plus query time.
type rowWatcher struct {
	cfg      sinks.ClickHouseConfig
	database string
	mu       sync.Mutex
	seen     map[string]time.Time
}

const rowWatchInterval = 50 * time.Millisecond

func newRowWatcher(cfg sinks.ClickHouseConfig, database string) *rowWatcher {
	return &rowWatcher{cfg: cfg, database: database, seen: map[string]time.Time{}}
}

func (w *rowWatcher) run(ctx context.Context) error {
	conn, err := sinks.OpenClickHouse(ctx, w.cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	query := "SELECT message_id FROM " + w.database + ".messages WHERE inserted_at >= toDateTime(?) AND reinterpretAsUInt8(substring(MD5(message_id), 1, 1)) < 16"
	since := time.Now().Add(-2 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rowWatchInterval):
		}
		now := time.Now()
		rows, err := conn.Query(ctx, query, since.Unix()-1)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch messages: %w", err)
		}
		w.mu.Lock()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err == nil {
				if _, ok := w.seen[id]; !ok {
					w.seen[id] = now
				}
			}
		}
		w.mu.Unlock()
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch messages: %w", err)
		}
		// inserted_at has whole seconds, so look back one second more than
		// the last poll.
		since = now.Add(-time.Second)
	}
}

func (w *rowWatcher) seenAt(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.seen[id]
	return t, ok
}

// waitFor returns when every ack has been seen or timeout passes.
func (w *rowWatcher) waitFor(ctx context.Context, acks []loadgen.Ack, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := slices.ContainsFunc(acks, func(a loadgen.Ack) bool { _, ok := w.seenAt(a.ID); return !ok })
		if !missing {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type benchResult struct {
	duration               time.Duration
	concurrency            int
	noop, full, half       loadgen.Report
	halfRate               float64
	e2e                    loadgen.LatencySummary
	e2eSamples, e2eMissing int
	// drained is how long the consumers took to catch up after the
	// full-load phase.
	drained time.Duration
}

func printBench(r benchResult) {
	noopRate := float64(okCount(r.noop)) / r.noop.Elapsed.Seconds()
	fullRate := float64(okCount(r.full)) / r.full.Elapsed.Seconds()
	fmt.Printf(`
SyncGuard benchmark (%s per phase, %d connections, %d CPUs, %s)

| measure | value |
|---|---|
| do-nothing server, 2xx requests/s | %.0f |
| SyncGuard ingest, 2xx requests/s | %.0f |
| SyncGuard / do-nothing | %.2f |
| SyncGuard non-2xx answers at full load | %d of %d |
| consumers caught up after the full-load phase in | %s |
| half load, requests/s offered | %.0f |
| half load, ack latency p50 / p99 | %s / %s |
| half load, end to end (ack to ClickHouse row) p50 / p99 | %s / %s |
| end-to-end samples (missing) | %d (%d) |
`, r.duration, r.concurrency, runtime.NumCPU(), runtime.Version(),
		noopRate, fullRate, fullRate/noopRate,
		r.full.Sent-okCount(r.full), r.full.Sent, r.drained.Round(100*time.Millisecond),
		r.halfRate, r.half.Latency.P50, r.half.Latency.P99,
		r.e2e.P50, r.e2e.P99, r.e2eSamples, r.e2eMissing)
}
