package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/internal/telemetry"
)

const (
	// floodSourceAddr is the loopback address the forged flood comes from.
	// Legitimate traffic never uses it, so the source limiter treats the
	// flood as one attacker.
	floodSourceAddr = "127.0.0.3"
	// floodWarmup is the unmeasured legitimate load after each pipeline
	// becomes ready, so that consumer group joins and first connections
	// do not count in the first measured phase.
	floodWarmup = 3 * time.Second
	// memorySampleInterval is how often the process's RSS and Go heap are
	// read during a phase.
	memorySampleInterval = 250 * time.Millisecond
	// legitConnectionsPerSource is the connection count of each legitimate
	// source address. Open loop, a request waits for a free connection, so
	// this bounds the requests in flight per address.
	legitConnectionsPerSource = 32
	// maxLegitSources bounds the addresses 127.0.0.1 and 127.0.1.1 to
	// 127.0.1.254 that legitimate traffic is spread over.
	maxLegitSources = 255
	// floodP99Factor is the target: legitimate p99 under the flood at most
	// this many times the unflooded p99.
	floodP99Factor = 2.0
)

// floodFlags are the settings of `syncguard bench --flood`.
type floodFlags struct {
	enabled   bool
	legitRate float64
	nice      int
	cpus      string
	cpuQuota  float64
}

// addFloodFlags registers --flood and its settings on the bench flag set.
func addFloodFlags(fset *flag.FlagSet) *floodFlags {
	f := &floodFlags{}
	fset.BoolVar(&f.enabled, "flood", false, "instead of the throughput phases, measure what a forged-signature flood from "+floodSourceAddr+" costs legitimate webhooks")
	fset.Float64Var(&f.legitRate, "legit-rate", 500, "with --flood: legitimate webhooks per second, sent open loop")
	fset.IntVar(&f.nice, "flood-nice", 19, "with --flood: nice value of the process that sends the flood (0 to 19)")
	fset.StringVar(&f.cpus, "flood-cpus", "1", `with --flood: CPUs the flood process may use, as taskset -c takes them; "" for any`)
	fset.Float64Var(&f.cpuQuota, "flood-cpu-quota", 0, "with --flood: share of one CPU the flood process may use, such as 0.5, through a cgroup (needs root); 0 for no limit")
	return f
}

// run measures what a forged-signature flood costs legitimate webhooks.
// connections is the flood's connection count. Each phase lasts duration:
//
//  1. legitimate webhooks alone, default rate limits;
//  2. the same legitimate load plus a closed-loop forged flood from
//     floodSourceAddr, default rate limits, so the source limiter rejects
//     most of the flood with 429;
//     2c. a control: the legitimate load plus phase 2's flood rate sent to
//     a do-nothing server;
//  3. as 2 on a second pipeline with the source limiter off, so every
//     forged request reaches the signature check. The HMAC runs for each
//     one whose X-Hub-Signature-256 header is well-formed.
func (f *floodFlags) run(ctx context.Context, brokers []string, clickhouse string, duration time.Duration, connections int, dir string) error {
	if math.IsNaN(f.legitRate) || f.legitRate <= 0 {
		return fmt.Errorf("--legit-rate: must be a positive number of requests per second, got %v", f.legitRate)
	}
	if duration <= 0 {
		return fmt.Errorf("--duration: must be positive, got %s", duration)
	}
	if connections < 1 {
		return fmt.Errorf("--concurrency: must be at least 1, got %d", connections)
	}
	if math.IsNaN(f.cpuQuota) || f.cpuQuota < 0 || f.cpuQuota > 2 {
		return fmt.Errorf("--flood-cpu-quota: must be 0 to 2 CPUs, got %v", f.cpuQuota)
	}
	if f.nice < 0 || f.nice > 19 {
		return fmt.Errorf("--flood-nice: must be 0 to 19, got %d", f.nice)
	}
	stamp := time.Now().Unix()

	limited, err := startBenchPipeline(ctx, filepath.Join(dir, "flood-limited"), fmt.Sprintf("syncguard_flood_%d_limited", stamp), brokers, clickhouse, nil)
	if err != nil {
		return err
	}
	defaultLimits := limited.ws.cfg.Ingest.RateLimits
	sources, err := legitSourceAddrs(f.legitRate, defaultLimits.Source)
	if err != nil {
		limited.stop()
		return err
	}
	say("legitimate load: %.0f webhooks/s open loop from %d addresses (%s), %d connections each",
		f.legitRate, len(sources), strings.Join(sources, " "), legitConnectionsPerSource)
	cpus := f.cpus
	if cpus == "" {
		cpus = "any"
	}
	quota := "no CPU quota"
	if f.cpuQuota > 0 {
		quota = fmt.Sprintf("a quota of %.2f CPU", f.cpuQuota)
	}
	say("default source limit: %g/s, burst %d per address; flood: closed loop from %s, %d connections, separate process at nice %d on CPUs %s with %s",
		defaultLimits.Source.Rate, defaultLimits.Source.Burst, floodSourceAddr, connections, f.nice, cpus, quota)

	phases := []floodPhaseSpec{
		{name: "1. legitimate only"},
		{name: "2. + flood, default limits", flood: true},
		{name: "2c. + phase 2's flood rate at a do-nothing server (control)", flood: true, control: true},
	}
	limited.floodNice, limited.floodCPUs, limited.floodQuota = f.nice, f.cpus, f.cpuQuota
	rows, err := limited.runFloodPhases(ctx, phases, f.legitRate, sources, duration, connections, 10)
	limited.stop()
	if err != nil {
		return err
	}

	// Return the first pipeline's memory to the OS, so the next phase's
	// RSS peak starts from a comparable floor.
	debug.FreeOSMemory()
	unlimited, err := startBenchPipeline(ctx, filepath.Join(dir, "flood-unlimited"), fmt.Sprintf("syncguard_flood_%d_unlimited", stamp), brokers, clickhouse, func(c *Config) {
		c.Ingest.RateLimits.Source.Rate = 0
	})
	if err != nil {
		return err
	}
	phases = []floodPhaseSpec{{name: "3. + flood, source limiter off", flood: true}}
	unlimited.floodNice, unlimited.floodCPUs, unlimited.floodQuota = f.nice, f.cpus, f.cpuQuota
	more, err := unlimited.runFloodPhases(ctx, phases, f.legitRate, sources, duration, connections, 20)
	unlimited.stop()
	if err != nil {
		return err
	}
	rows = append(rows, more...)

	printFloodBench(floodSummary{
		duration: duration, connections: connections, legitRate: f.legitRate,
		sources: len(sources), rows: rows,
	})
	return nil
}

// benchPipeline is a workspace with every component running in this
// process, on the real Kafka and ClickHouse.
type benchPipeline struct {
	ws        *workspace
	p         *pipeline
	ingestURL string
	logPath   string
	stop      func()
	// floodNice is the nice value of the flood's load generator process.
	floodNice int
	// floodCPUs limits the flood process to these CPUs, "" for any.
	floodCPUs string
	// floodQuota is the share of one CPU the flood process may use, 0 for
	// no limit.
	floodQuota float64
	// floodSeed seeds the flood's generated webhooks.
	floodSeed int64
}

// startBenchPipeline prepares a workspace in dir named name, lets adjust
// change its configuration, and runs the pipeline until stop is called.
// It does the same set-up as benchCommand, except that the rate limits
// keep their defaults unless adjust changes them.
func startBenchPipeline(ctx context.Context, dir, name string, brokers []string, clickhouse string, adjust func(*Config)) (*benchPipeline, error) {
	ws, err := newWorkspace(dir, name, brokers, false, clickhouse)
	if err != nil {
		return nil, err
	}
	// The detector would block the flooding address within seconds, and the
	// phases would then measure 403s instead of the edge's checks.
	ws.cfg.Detector.Containment.Enabled = false

	if adjust != nil {
		adjust(&ws.cfg)
		if err := ws.cfg.validate(allTargets); err != nil {
			return nil, fmt.Errorf("BUG: adjusted flood benchmark configuration invalid: %w", err)
		}
	}
	if err := ws.resetDatabase(ctx); err != nil {
		return nil, err
	}

	logPath := filepath.Join(dir, "syncguard.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	p, err := newPipeline(ctx, ws.cfg, allTargets, telemetry.NewLogger(ws.cfg.Telemetry, logFile))
	if err != nil {
		closeLogFile(logFile)
		return nil, err
	}

	// The pipeline runs until stop, not until ctx ends, so that an
	// interrupted run still stops it in order.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.run(runCtx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				say("pipeline %s stopped with an error (log: %s): %v", name, logPath, err)
			}
			closeLogFile(logFile)
			ws.deleteTopics()
		})
	}

	if err := waitReady(ctx, p, 60*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	return &benchPipeline{ws: ws, p: p, ingestURL: "http://" + p.ingestAddr(), logPath: logPath, stop: stop}, nil
}

// floodPhaseSpec is the name of a phase and whether the flood runs in it.
type floodPhaseSpec struct {
	name  string
	flood bool
	// control sends the flood to a do-nothing server instead of ingest,
	// open loop at the previous phase's flood rate. The load generator runs
	// in this process, so this shows what generating the flood costs the
	// legitimate traffic apart from ingest's handling of it.
	control bool
}

// floodRow is the outcome of one phase.
type floodRow struct {
	name     string
	control  bool
	legit    legitResult
	flood    *loadgen.Report // nil without a flood
	memory   memoryPeaks
	limiters []capacityUse
	// detectors contains the detector rules' keys, which grow with the
	// flood's distinct addresses.
	detectors    []capacityUse
	auditDropped float64 // ingest audit records lost during the phase
}

// runFloodPhases warms the pipeline up and runs phases in order. seed
// seeds the webhook factories, so each pipeline gets its own message ids.
func (b *benchPipeline) runFloodPhases(ctx context.Context, phases []floodPhaseSpec, legitRate float64, sources []string, duration time.Duration, connections int, seed int64) ([]floodRow, error) {
	legitWebhooks, _, _, err := b.ws.factories(seed, 3, 1)
	if err != nil {
		return nil, err
	}
	b.floodSeed = seed + 1
	legit := legitLoad{target: b.ingestURL, rate: legitRate, sources: sources, webhooks: legitWebhooks}

	say("warming up for %s", floodWarmup)
	if _, err := legit.run(ctx, floodWarmup); err != nil {
		return nil, err
	}
	var rows []floodRow
	for _, ph := range phases {
		say("phase %s (%s)", ph.name, duration)
		var flood *loadgen.Config
		if ph.flood {
			flood = &loadgen.Config{
				Target: b.ingestURL, Rate: 0, Duration: duration, Concurrency: connections,
				Mix: loadgen.Mix{Forged: 1}, SourceAddr: floodSourceAddr,
			}
		}
		if ph.control {
			if len(rows) == 0 || rows[len(rows)-1].flood == nil {
				return nil, fmt.Errorf("BUG: control phase %q does not follow a flood phase", ph.name)
			}
			noop, stopNoop, err := startNoopServer()
			if err != nil {
				return nil, err
			}
			flood.Target, flood.Rate = noop, rows[len(rows)-1].flood.Rate
			row, err := b.runFloodPhase(ctx, ph.name, legit, duration, flood)
			stopNoop()
			if err != nil {
				return nil, fmt.Errorf("phase %s: %w (log: %s)", ph.name, err, b.logPath)
			}
			row.control = true
			rows = append(rows, row)
			continue
		}
		row, err := b.runFloodPhase(ctx, ph.name, legit, duration, flood)
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w (log: %s)", ph.name, err, b.logPath)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// sendFlood runs the forged flood described by flood in a child
// `syncguard loadgen` process at nice value b.floodNice, and returns its
// report.
//
// The flood runs in its own process so that the RSS sampled here is the
// pipeline's and the legitimate generator's alone. A real attacker sends
// from other machines, so its generator spends none of the server's CPU.
// On one machine the closest equivalent is a generator that gets only the
// CPU time the pipeline leaves idle, hence the nice value, and by default
// only one CPU, where the kernel also handles its loopback traffic.
func (b *benchPipeline) sendFlood(ctx context.Context, flood loadgen.Config) (loadgen.Report, error) {
	wrap := []string{"nice", "-n", strconv.Itoa(b.floodNice)}
	if b.floodCPUs != "" {
		wrap = append([]string{"taskset", "-c", b.floodCPUs}, wrap...)
	}
	args := []string{
		"--target", flood.Target,
		"--rate", strconv.FormatFloat(flood.Rate, 'f', -1, 64),
		"--duration", flood.Duration.String(),
		"--concurrency", strconv.Itoa(flood.Concurrency),
		"--mix", "forged=1",
		"--source-addr", flood.SourceAddr,
		"--seed", strconv.FormatInt(b.floodSeed, 10),
	}

	var started func(int) error
	if b.floodQuota > 0 {
		quota, err := newCPUQuota(fmt.Sprintf("syncguard-flood-%d", os.Getpid()), b.floodQuota)
		if err != nil {
			return loadgen.Report{}, err
		}
		defer quota.remove()
		// The process runs unlimited until it is moved into the group,
		// while it is still opening its connections.
		started = quota.add
	}
	return runLoadProcess(ctx, filepath.Join(filepath.Dir(b.logPath), "flood-report.json"), wrap, args, started)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runFloodPhase sends the legitimate load, and the flood when it is not
// nil, at the same time, while sampling the process's memory.
func (b *benchPipeline) runFloodPhase(ctx context.Context, name string, legit legitLoad, duration time.Duration, flood *loadgen.Config) (floodRow, error) {
	row := floodRow{name: name}
	droppedBefore, err := b.gatherSum("syncguard_ingest_audit_dropped_total")
	if err != nil {
		return row, err
	}

	stopSampling := make(chan struct{})
	peaks := make(chan memoryPeaks, 1)
	go func() { peaks <- sampleMemory(stopSampling, memorySampleInterval) }()

	var (
		wg       sync.WaitGroup
		floodRep loadgen.Report
		floodErr error
	)
	if flood != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			floodRep, floodErr = b.sendFlood(ctx, *flood)
		}()
	}
	legitRes, legitErr := legit.run(ctx, duration)
	wg.Wait()
	close(stopSampling)
	row.memory = <-peaks

	if err := errors.Join(legitErr, floodErr); err != nil {
		return row, err
	}
	row.legit = legitRes
	if flood != nil {
		row.flood = &floodRep
	}
	families, err := b.p.registry.Gather()
	if err != nil {
		return row, fmt.Errorf("gather metrics: %w", err)
	}
	row.limiters = capacityUses(families, "syncguard_ingest_ratelimit_keys")
	row.detectors = capacityUses(families, "syncguard_detector_keys")
	row.auditDropped = metricSum(families, "syncguard_ingest_audit_dropped_total") - droppedBefore
	return row, nil
}

func (b *benchPipeline) gatherSum(name string) (float64, error) {
	families, err := b.p.registry.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather metrics: %w", err)
	}
	return metricSum(families, name), nil
}

// legitLoad is the legitimate webhook traffic: rate requests per second
// in total, open loop, split evenly over sources.
type legitLoad struct {
	target   string
	rate     float64
	sources  []string
	webhooks *loadgen.WebhookFactory
}

// legitResult merges the reports of the per-address runs of a legitLoad.
type legitResult struct {
	sent, ok, missed, errors int64
	byStatus                 map[int]int64
	latency                  loadgen.LatencySummary
}

// run sends the load for duration and merges the per-address reports.
// Latency runs from each request's scheduled send time to its response.
func (l legitLoad) run(ctx context.Context, duration time.Duration) (legitResult, error) {
	reports := make([]loadgen.Report, len(l.sources))
	errs := make([]error, len(l.sources))
	var wg sync.WaitGroup
	for i, src := range l.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = loadgen.Run(ctx, loadgen.Config{
				Target: l.target, Rate: l.rate / float64(len(l.sources)), Duration: duration,
				Concurrency: legitConnectionsPerSource, Mix: loadgen.Mix{Webhook: 1},
				Webhooks: l.webhooks, SourceAddr: src, TrackAcks: -1, Seed: int64(i),
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return legitResult{}, err
	}
	res := legitResult{byStatus: map[int]int64{}}
	hist := loadgen.NewHistogram()
	for _, r := range reports {
		res.sent += r.Sent
		res.ok += okCount(r)
		res.missed += r.Missed
		res.errors += r.Errors
		for code, n := range r.ByStatus {
			res.byStatus[code] += n
		}
		hist.Merge(r.Histogram)
	}
	res.latency = hist.Summary()
	return res, nil
}

// legitSourceAddrs returns the loopback addresses that legitimate traffic
// of rate requests per second is spread over: 127.0.0.1 first, then
// 127.0.1.1 upwards. With the source limiter on, each address gets at most
// half of its rate, so the bursts of an open-loop schedule that waited for
// connections stay under the limit too. Real WhatsApp webhooks also come
// from many Meta addresses.
func legitSourceAddrs(rate float64, limit ingest.RateLimit) ([]string, error) {
	n := 1
	if limit.Rate > 0 {
		n = int(math.Ceil(rate / (limit.Rate / 2)))
	}
	if n > maxLegitSources {
		return nil, fmt.Errorf("--legit-rate: %.0f requests/s needs %d source addresses at half of the %g/s source limit; at most %d are used, so lower the rate",
			rate, n, limit.Rate, maxLegitSources)
	}
	addrs := make([]string, 0, n)
	addrs = append(addrs, "127.0.0.1")
	for i := 1; i < n; i++ {
		addrs = append(addrs, "127.0.1."+strconv.Itoa(i))
	}
	return addrs, nil
}

// memoryPeaks are the highest values seen by sampleMemory.
type memoryPeaks struct {
	rssBytes       uint64
	heapInuseBytes uint64
	rssErr         error // error of the last failed RSS read, nil when every read succeeded
}

// sampleMemory reads the process's RSS and the Go heap in use every
// interval until stop is closed, and returns the peaks. It samples once at
// the start and once at the end as well.
func sampleMemory(stop <-chan struct{}, interval time.Duration) memoryPeaks {
	var peaks memoryPeaks
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peaks.heapInuseBytes = max(peaks.heapInuseBytes, ms.HeapInuse)
		rss, err := readRSS()
		if err != nil {
			peaks.rssErr = err
			return
		}
		peaks.rssBytes = max(peaks.rssBytes, rss)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	sample()
	for {
		select {
		case <-stop:
			sample()
			return peaks
		case <-ticker.C:
			sample()
		}
	}
}

// readRSS returns the resident set size of this process from
// /proc/self/status, which only Linux provides.
func readRSS() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	defer func() { _ = f.Close() }()
	return parseVMRSS(f)
}

// parseVMRSS returns the VmRSS field of a /proc/<pid>/status file in
// bytes. The kernel prints it as "VmRSS:" followed by a count of kB,
// which are KiB.
func parseVMRSS(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("parse VmRSS: expected \"<number> kB\", got %q", strings.TrimSpace(rest))
		}
		kib, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || kib > math.MaxUint64/1024 {
			return 0, fmt.Errorf("parse VmRSS: invalid number %q", fields[0])
		}
		return kib * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("parse VmRSS: %w", err)
	}
	return 0, errors.New("parse VmRSS: no VmRSS line (kernel threads have none)")
}

// capacityUse is a gauge of held keys and its matching capacity gauge.
type capacityUse struct {
	labels   string // the label pairs both series share, such as "limiter=source"
	keys     float64
	capacity float64 // NaN when no capacity series has the same labels
}

func (c capacityUse) within() bool { return !math.IsNaN(c.capacity) && c.keys <= c.capacity }

// capacityUses pairs every series of the gauge name with the series of
// name+"_capacity" that has the same labels, sorted by labels.
func capacityUses(families []*dto.MetricFamily, name string) []capacityUse {
	capacities := map[string]float64{}
	for _, m := range metricsNamed(families, name+"_capacity") {
		capacities[labelString(m)] = m.GetGauge().GetValue()
	}
	var out []capacityUse
	for _, m := range metricsNamed(families, name) {
		labels := labelString(m)
		capacity, ok := capacities[labels]
		if !ok {
			capacity = math.NaN()
		}
		out = append(out, capacityUse{labels: labels, keys: m.GetGauge().GetValue(), capacity: capacity})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].labels < out[j].labels })
	return out
}

// metricSum adds up every series of the counter or gauge name.
func metricSum(families []*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, m := range metricsNamed(families, name) {
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

func metricsNamed(families []*dto.MetricFamily, name string) []*dto.Metric {
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// labelString returns the label pairs of m as "k=v,k=v", sorted by name.
func labelString(m *dto.Metric) string {
	pairs := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		pairs = append(pairs, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

// floodSummary is everything printFloodBench prints.
type floodSummary struct {
	duration    time.Duration
	connections int
	legitRate   float64
	sources     int
	rows        []floodRow
}

// floodVerdict checks a phase against the target: legitimate p99 within
// floodP99Factor of the unflooded phase, a 2xx response to every
// legitimate request, and every limiter and detector within its configured
// key capacity. base is the unflooded phase, and nil for that phase itself.
func floodVerdict(row floodRow, base *floodRow) string {
	var problems []string
	if base != nil {
		if ratio := p99Ratio(row, *base); !(ratio <= floodP99Factor) {
			problems = append(problems, fmt.Sprintf("p99 %.2fx", ratio))
		}
	}
	if bad := row.legit.sent - row.legit.ok; bad > 0 {
		problems = append(problems, fmt.Sprintf("%d legit non-2xx", bad))
	}
	if row.legit.missed > 0 {
		problems = append(problems, fmt.Sprintf("%d legit not sent in time", row.legit.missed))
	}
	for _, c := range slices.Concat(row.limiters, row.detectors) {
		if !c.within() {
			problems = append(problems, fmt.Sprintf("%s %.0f keys over capacity %.0f", c.labels, c.keys, c.capacity))
		}
	}
	switch {
	case row.control:
		return "control, not judged"
	case len(problems) > 0:
		return "not met: " + strings.Join(problems, "; ")
	case base == nil:
		return "baseline; memory within caps"
	default:
		return "met"
	}
}

// p99Ratio returns row's legitimate p99 over base's, +Inf when base's is 0.
func p99Ratio(row, base floodRow) float64 {
	if base.legit.latency.P99 <= 0 {
		return math.Inf(1)
	}
	return float64(row.legit.latency.P99) / float64(base.legit.latency.P99)
}

func printFloodBench(s floodSummary) {
	fmt.Printf(`
SyncGuard edge-cost benchmark (%s per phase, %.0f legitimate webhooks/s from %d addresses, flood from %s with %d connections, %d CPUs, %s)

| phase | legit p50 | legit p99 | p99 / phase 1 | legit 2xx of sent | flood req/s | flood statuses | RSS peak MiB | heap peak MiB | limiter keys / capacity | verdict |
|---|---|---|---|---|---|---|---|---|---|---|
`, s.duration, s.legitRate, s.sources, floodSourceAddr, s.connections, runtime.NumCPU(), runtime.Version())
	if len(s.rows) == 0 {
		return
	}
	base := s.rows[0]
	for i, r := range s.rows {
		ratio, floodRate, statuses := "1.00", "-", "-"
		verdict := floodVerdict(r, nil)
		if i > 0 {
			ratio = fmt.Sprintf("%.2f", p99Ratio(r, base))
			verdict = floodVerdict(r, &base)
		}
		if r.flood != nil {
			floodRate = fmt.Sprintf("%.0f", r.flood.Rate)
			statuses = formatStatuses(r.flood.ByStatus, r.flood.Errors)
		}
		fmt.Printf("| %s | %s | %s | %s | %d of %d | %s | %s | %s | %.0f | %s | %s |\n",
			r.name, r.legit.latency.P50.Round(10*time.Microsecond), r.legit.latency.P99.Round(10*time.Microsecond), ratio,
			r.legit.ok, r.legit.sent, floodRate, statuses,
			formatRSS(r.memory), float64(r.memory.heapInuseBytes)/(1<<20),
			formatCapacityUses(r.limiters), verdict)
	}
	fmt.Println()
	for _, r := range s.rows {
		fmt.Printf("%s: detector keys / capacity %s; ingest audit records dropped %.0f; legit not sent in time %d, no response %d",
			r.name, formatCapacityUses(r.detectors), r.auditDropped, r.legit.missed, r.legit.errors)
		if r.flood != nil && r.flood.Missed > 0 {
			fmt.Printf("; flood not sent in time %d", r.flood.Missed)
		}
		fmt.Println()
	}
	fmt.Printf("Target: legitimate p99 within %.0fx of phase 1, and limiter and detector keys within their configured capacity.\n", floodP99Factor)
	// The control phase sends the same flood to a server that does
	// nothing, so the ratio to it is what ingest's handling of the flood
	// adds beyond generating it on the same machine.
	for i, r := range s.rows {
		if !r.control || i == 0 || s.rows[i-1].flood == nil {
			continue
		}
		flooded := s.rows[i-1]
		fmt.Printf("Edge cost apart from the generator: %s p99 / control p99 = %.2f\n", flooded.name, p99Ratio(flooded, r))
	}
}

// formatStatuses returns counts by HTTP status in ascending order, such as
// "401: 12, 429: 3400", with the requests that got no response last.
func formatStatuses(byStatus map[int]int64, noResponse int64) string {
	codes := make([]int, 0, len(byStatus))
	for code := range byStatus {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	parts := make([]string, 0, len(codes)+1)
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d: %d", code, byStatus[code]))
	}
	if noResponse > 0 {
		parts = append(parts, fmt.Sprintf("no response: %d", noResponse))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func formatRSS(m memoryPeaks) string {
	if m.rssErr != nil {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", float64(m.rssBytes)/(1<<20))
}

// formatCapacityUses returns "source 7/100000, account 3/100000" for the
// limiter label, or the full label pairs for other series.
func formatCapacityUses(uses []capacityUse) string {
	if len(uses) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(uses))
	for _, c := range uses {
		name := c.labels
		for _, prefix := range []string{"limiter=", "rule="} {
			if v, ok := strings.CutPrefix(name, prefix); ok && !strings.Contains(v, ",") {
				name = v
			}
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", name, c.keys, c.capacity))
	}
	return strings.Join(parts, ", ")
}
