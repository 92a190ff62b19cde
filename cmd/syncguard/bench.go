package main

import (
	"cmp"
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
	"strconv"
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
// end-to-end latency at half of ingest's rate in the median round.
func benchCommand(ctx context.Context, args []string) (err error) {
	fset := flag.NewFlagSet("bench", flag.ContinueOnError)
	brokers := fset.String("brokers", envOr("SYNCGUARD_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka brokers, comma-separated")
	clickhouse := fset.String("clickhouse", envOr("SYNCGUARD_CLICKHOUSE_ADDR", "127.0.0.1:19000"), "ClickHouse native-protocol address")
	duration := fset.Duration("duration", 15*time.Second, "length of each measured phase")
	warmup := fset.Duration("warmup", 20*time.Second, "unmeasured load before the first phase, so that the Kafka broker's JIT compiler has run")
	concurrency := fset.Int("concurrency", 256, "connections of the load generator (with --flood: of the flood, default 64)")
	roundCount := fset.Int("rounds", 3, "rounds of the highest-rate phase, each measuring the do-nothing server and then ingest")
	dir := fset.String("dir", filepath.Join(".local", "bench"), "folder for the run's keys, configuration and log")
	cpuProfile := fset.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flood := addFloodFlags(fset)
	if err := fset.Parse(args); err != nil {
		return flagError(err)
	}
	if *cpuProfile != "" {
		stopProfile, profileErr := startCPUProfile(*cpuProfile)
		if profileErr != nil {
			return profileErr
		}
		defer func() { err = errors.Join(err, stopProfile()) }()
	}
	if *roundCount < 1 || *roundCount > 100 {
		return fmt.Errorf("--rounds: must be 1 to 100, got %d", *roundCount)
	}
	if flood.enabled {
		connections := *concurrency
		if !flagSet(fset, "concurrency") {
			connections = floodConnections
		}
		return flood.run(ctx, strings.Split(*brokers, ","), *clickhouse, *duration, connections, *dir)
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

	// Every phase's load comes from a child process; see runLoadProcess.
	// Each phase that reaches ingest has its own seed, and so its own
	// message ids, which the processor would otherwise drop as
	// redeliveries. Only the half-load phase lists its acknowledgements.
	load := func(target string, rate float64, d time.Duration, seed int64, trackAcks int) (loadgen.Report, error) {
		rep, err := runLoadProcess(ctx, filepath.Join(*dir, "load-report.json"), nil, []string{
			"--target", target,
			"--rate", strconv.FormatFloat(rate, 'f', -1, 64),
			"--duration", d.String(),
			"--concurrency", strconv.Itoa(*concurrency),
			"--preconnect",
			"--mix", "webhook=1",
			"--accounts", strconv.Itoa(benchAccounts),
			"--seed", strconv.FormatInt(seed, 10),
			"--track-acks", strconv.Itoa(trackAcks),
		}, nil)
		if err == nil && rep.Dials > 0 {
			say("warning: %s closed connections after the preconnect, so %d handshakes fell inside this phase", target, rep.Dials)
		}
		return rep, err
	}

	// A broker that just started runs interpreted Java until its JIT has
	// compiled the hot paths: the first run after a restart measured half
	// the rate of the next ones.
	if *warmup > 0 {
		say("warming up for %s", *warmup)
		if _, err := load(ingestURL, 0, *warmup, 0, 0); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := ws.waitDrained(ctx, 2*time.Minute); err != nil {
			return err
		}
	}

	// Phase 1: highest sustained rate, closed loop. The do-nothing server
	// and ingest take turns, so that a slow spell of the machine falls on
	// both sides of one round's ratio, and the median round is reported.
	var rounds []benchRound
	for i := range *roundCount {
		say("phase 1, round %d of %d: highest rate of the do-nothing server, then of SyncGuard ingest (%s each, %d connections)",
			i+1, *roundCount, *duration, *concurrency)
		noop, err := load(baseline, 0, *duration, int64(1+2*i), 0)
		if err != nil {
			return err
		}
		full, err := load(ingestURL, 0, *duration, int64(2+2*i), 0)
		if err != nil {
			return err
		}
		// The time the consumers need to catch up shows whether the full
		// rate is one the whole pipeline sustains, or only ingest. Waiting
		// also keeps the backlog out of the next round's baseline.
		drainStart := time.Now()
		if err := ws.waitDrained(ctx, 5*time.Minute); err != nil {
			return err
		}
		rounds = append(rounds, benchRound{noop: noop, full: full, drained: time.Since(drainStart)})
	}
	median := medianRound(rounds)

	// Phase 2: half of SyncGuard's rate in the median round, open loop,
	// with a watcher that notes when each sampled message appears in
	// ClickHouse.
	half := median.fullRate() / 2
	say("phase 2: %.0f requests/s (half of SyncGuard's rate in the median round) for %s", half, *duration)
	watch := newRowWatcher(ws.cfg.Sink.ClickHouse, name)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- watch.run(watchCtx) }()
	var serveBefore, serveAfter histogramSnapshot
	waitBefore, err := snapshotHistogram(p.registry, produceWaitMetric)
	if err == nil {
		serveBefore, err = snapshotHistogram(p.registry, requestDurationMetric)
	}
	if err != nil {
		stopWatch()
		return err
	}
	halfReport, err := load(ingestURL, half, *duration, halfLoadSeed, maxTrackedAcks)
	if err != nil {
		stopWatch()
		return err
	}
	waitAfter, err := snapshotHistogram(p.registry, produceWaitMetric)
	if err == nil {
		serveAfter, err = snapshotHistogram(p.registry, requestDurationMetric)
	}
	if err != nil {
		stopWatch()
		return err
	}
	kafkaWaitP99, _ := waitAfter.quantileSince(waitBefore, 0.99)
	serveP99, _ := serveAfter.quantileSince(serveBefore, 0.99)
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
		duration: *duration, concurrency: *concurrency, rounds: rounds, median: median, half: halfReport,
		halfRate: half, e2e: e2e.Summary(), e2eSamples: len(sampled), e2eMissing: missing,
		kafkaWaitP99: kafkaWaitP99, serveP99: serveP99,
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
			if r.URL.Path == "/healthz" {
				// Ingest returns a body here too, and loadgen's --preconnect needs one.
				_, _ = w.Write([]byte("ok\n"))
				return
			}
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

// benchRound is one round of the highest-rate phase.
type benchRound struct {
	noop, full loadgen.Report
	// drained is how long the consumers took to catch up after ingest's
	// part of the round.
	drained time.Duration
}

// noopRate returns the do-nothing server's 2xx responses per second.
func (r benchRound) noopRate() float64 {
	return float64(okCount(r.noop)) / r.noop.Elapsed.Seconds()
}

// fullRate returns ingest's 2xx responses per second.
func (r benchRound) fullRate() float64 {
	return float64(okCount(r.full)) / r.full.Elapsed.Seconds()
}

// ratio returns fullRate as a fraction of noopRate.
func (r benchRound) ratio() float64 {
	return r.fullRate() / r.noopRate()
}

// medianRound returns the round with the median ratio, the lower middle
// one for an even count. rounds must not be empty.
func medianRound(rounds []benchRound) benchRound {
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(a, b benchRound) int { return cmp.Compare(a.ratio(), b.ratio()) })
	return sorted[(len(sorted)-1)/2]
}

type benchResult struct {
	duration    time.Duration
	concurrency int
	rounds      []benchRound
	median      benchRound
	half        loadgen.Report
	halfRate    float64
	e2e         loadgen.LatencySummary
	e2eSamples  int
	e2eMissing  int
	// kafkaWaitP99 is the upper bound of the produce-wait histogram bucket
	// that contains the 99th percentile of the half-load phase.
	kafkaWaitP99 time.Duration
	// serveP99 is the same bound for ingest's own request duration.
	serveP99 time.Duration
}

const (
	// halfLoadSeed is the half-load phase's seed, above those of the
	// rounds before it.
	halfLoadSeed = 1_000
	// maxTrackedAcks bounds the acknowledgements the half-load phase
	// lists for the end-to-end measurement.
	maxTrackedAcks = 1_000_000
)

// The targets the benchmark reports against, for a 2-core machine that
// also runs Kafka and ClickHouse.
const (
	benchRatioTarget  = 0.3
	benchAckP99Target = 50 * time.Millisecond
	benchE2EP99Target = 2 * time.Second
)

// verdict returns "met" or "missed".
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

// floodConnections is the flood's default connection count, which the
// recorded flood figures used.
const floodConnections = 64

// flagSet reports whether the command line set the flag called name.
func flagSet(fset *flag.FlagSet, name string) bool {
	set := false
	fset.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// benchAccounts is the number of WhatsApp accounts the load sends as.
const benchAccounts = 3

// produceWaitMetric is ingest's histogram of the time spent waiting for
// Kafka to acknowledge raw records.
const produceWaitMetric = "syncguard_ingest_produce_seconds"

// requestDurationMetric is ingest's histogram of request durations, from
// reading the headers to the end of the response.
const requestDurationMetric = "syncguard_ingest_request_duration_seconds"

func printBench(r benchResult) {
	fmt.Printf("\nSyncGuard benchmark (%s per phase, %d connections, %d CPUs, %s)\n\n",
		r.duration, r.concurrency, runtime.NumCPU(), runtime.Version())
	fmt.Println("| round | do-nothing, 2xx/s | SyncGuard ingest, 2xx/s | ratio | non-2xx at full load | consumers caught up in |")
	fmt.Println("|---|---|---|---|---|---|")
	for i, rd := range r.rounds {
		fmt.Printf("| %d | %.0f | %.0f | %.2f | %d of %d | %s |\n", i+1, rd.noopRate(), rd.fullRate(), rd.ratio(),
			rd.full.Sent-okCount(rd.full), rd.full.Sent, rd.drained.Round(100*time.Millisecond))
	}
	ms := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	fmt.Printf(`
| measure | value | target |
|---|---|---|
| SyncGuard / do-nothing, median round | %.2f | at least %.1f: %s |
| half load, requests/s offered | %.0f | |
| half load, ack latency p50 / p99 | %s / %s | p99 under %s: %s |
| half load, inside ingest (headers read to response written), p99 at most | %s | |
| half load, Kafka acknowledgement wait, p99 at most | %s | |
| half load, end to end (ack to ClickHouse row) p50 / p99 | %s / %s | p99 under %s: %s |
| end-to-end samples (missing) | %d (%d) | none missing: %s |
`, r.median.ratio(), benchRatioTarget, verdict(r.median.ratio() >= benchRatioTarget),
		r.halfRate,
		ms(r.half.Latency.P50), ms(r.half.Latency.P99), benchAckP99Target, verdict(r.half.Latency.P99 < benchAckP99Target),
		formatBucketBound(r.serveP99), formatBucketBound(r.kafkaWaitP99),
		r.e2e.P50.Round(time.Millisecond), r.e2e.P99.Round(time.Millisecond), benchE2EP99Target,
		verdict(r.e2eSamples > 0 && r.e2e.P99 < benchE2EP99Target),
		r.e2eSamples, r.e2eMissing, verdict(r.e2eSamples > 0 && r.e2eMissing == 0))
}
