package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxResponseRead bounds how much of a response body is read, so that the
// connection can be reused without trusting the server's body size.
const maxResponseRead = 64 << 10

// progressInterval is how often Run calls Config.Progress. Tests shorten it.
var progressInterval = time.Second

// mixKind is an entry of Mix.
type mixKind int

const (
	mixWebhook mixKind = iota
	mixText
	mixSync
	mixForged
	mixRedelivery
)

// job is one request to send. intended is its scheduled send time in open
// loop and zero in closed loop.
type job struct {
	kind     mixKind
	intended time.Time
}

type runner struct {
	cfg    Config
	base   string
	client *http.Client
	mix    []weighted[mixKind]
	hist   *Histogram
	tally  *tally
	dials  *atomic.Int64
}

// Run sends requests to cfg.Target until cfg.Duration has passed or
// cfg.Requests have been sent, whichever comes first, and waits for the
// requests in flight. It returns the report and nil when the bound is
// reached, or the partial report and the context's error when ctx ends
// first. Configuration errors return an empty report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	dials := new(atomic.Int64)
	client, err := NewClient(ClientConfig{
		Connections: cfg.Concurrency,
		SourceAddr:  cfg.SourceAddr,
		Timeout:     cfg.Timeout,
		Dials:       dials,
	})
	if err != nil {
		return Report{}, fmt.Errorf("loadgen: %w", err)
	}
	defer client.CloseIdleConnections()

	r := &runner{
		cfg:    cfg,
		base:   strings.TrimSuffix(cfg.Target, "/"),
		client: client,
		mix: []weighted[mixKind]{
			{mixWebhook, cfg.Mix.Webhook},
			{mixText, cfg.Mix.Text},
			{mixSync, cfg.Mix.Sync},
			{mixForged, cfg.Mix.Forged},
			{mixRedelivery, cfg.Mix.Redelivery},
		},
		hist:  NewHistogram(),
		tally: newTally(cfg.TrackAcks),
		dials: dials,
	}
	return r.run(ctx)
}

func (r *runner) run(ctx context.Context) (Report, error) {
	if r.cfg.Preconnect {
		if err := r.preconnect(ctx); err != nil {
			return Report{}, err
		}
	}
	start := time.Now()
	dialsBefore := r.dials.Load()

	// Workers own the connections and stop when jobs is closed.
	jobs := make(chan job)
	var workers sync.WaitGroup
	for range r.cfg.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				r.send(ctx, j)
			}
		}()
	}

	// The progress reporter stops when stopProgress is closed.
	stopProgress := make(chan struct{})
	var progress sync.WaitGroup
	if r.cfg.Progress != nil {
		progress.Add(1)
		go func() {
			defer progress.Done()
			r.reportProgress(start, stopProgress)
		}()
	}

	// Shutdown order: stop scheduling, let the workers finish the requests
	// in flight, then stop the progress reporter.
	missed := r.dispatch(ctx, jobs, start)
	close(jobs)
	workers.Wait()
	close(stopProgress)
	progress.Wait()

	rep := r.report(start, missed)
	rep.Dials = r.dials.Load() - dialsBefore
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("loadgen: run ended early: %w", err)
	}
	return rep, nil
}

// preconnect opens every connection of the pool with one GET /healthz each.
// Each request holds its response open until all have one, so the transport
// has to dial a connection per request. That needs a 200 response with a
// body on a connection the server keeps open: the transport frees the
// connection of an empty response at once, and a closed one is dialed
// again by the run. preconnect fails when any probe gets something else.
// Ingest returns "ok" and neither audits nor rate limits /healthz.
func (r *runner) preconnect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var responded, done sync.WaitGroup
	responded.Add(r.cfg.Concurrency)
	var failed atomic.Int64
	var firstErr error
	var firstOnce sync.Once
	for range r.cfg.Concurrency {
		done.Go(func() {
			err := r.probe(ctx, &responded)
			if err != nil {
				failed.Add(1)
				firstOnce.Do(func() { firstErr = err })
			}
		})
	}
	done.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("loadgen: %w: %d of %d connections failed, the first with: %w", ErrPreconnect, n, r.cfg.Concurrency, firstErr)
	}
	return nil
}

// probe sends one GET /healthz, marks responded done when the response
// headers or an error arrive, and reads the body once every probe has a
// response. It returns an error unless the response leaves its connection
// open for the run.
func (r *runner) probe(ctx context.Context, responded *sync.WaitGroup) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/healthz", nil)
	if err != nil {
		responded.Done()
		return err
	}
	resp, err := r.client.Do(req)
	responded.Done()
	if err != nil {
		return err
	}
	responded.Wait()
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead+1))
	_ = resp.Body.Close()
	switch {
	case n > maxResponseRead:
		return fmt.Errorf("GET /healthz returned a body over %d bytes, and the connection of a body not read to its end is closed", maxResponseRead)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET /healthz returned status %d, want 200", resp.StatusCode)
	case n == 0:
		return errors.New("GET /healthz returned an empty body, which frees its connection for the next probe")
	case resp.Close:
		return errors.New("the server closes the connection after GET /healthz")
	}
	return nil
}

// dispatch hands out jobs until a bound is reached or ctx ends, and
// returns how many scheduled open-loop requests were not sent in time.
func (r *runner) dispatch(ctx context.Context, jobs chan<- job, start time.Time) int64 {
	var deadline <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(time.Until(start.Add(r.cfg.Duration)))
		defer t.Stop()
		deadline = t.C
	}
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()

	pcg := rand.NewPCG(uint64(r.cfg.Seed), 0x6c6f616467656e)
	kinds := rand.New(pcg)
	for i := int64(0); r.cfg.Requests == 0 || i < r.cfg.Requests; i++ {
		j := job{kind: pickWeighted(kinds, r.mix)}
		if r.cfg.Rate > 0 {
			j.intended = start.Add(r.offset(i))
			if r.cfg.Duration > 0 && j.intended.Sub(start) >= r.cfg.Duration {
				return 0
			}
			if d := time.Until(j.intended); d > 0 {
				wait.Reset(d)
				select {
				case <-wait.C:
				case <-ctx.Done():
					return 0
				case <-deadline:
					return r.missedFrom(i)
				}
			}
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return 0
		case <-deadline:
			return r.missedFrom(i)
		}
	}
	return 0
}

// offset returns the scheduled send time of request i after the start.
func (r *runner) offset(i int64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / r.cfg.Rate)
}

// missedFrom counts the open-loop requests from i on that were scheduled
// before the end of the run.
func (r *runner) missedFrom(i int64) int64 {
	if r.cfg.Rate == 0 {
		return 0
	}
	scheduled := int64(math.Ceil(r.cfg.Duration.Seconds() * r.cfg.Rate))
	if r.cfg.Requests > 0 {
		scheduled = min(scheduled, r.cfg.Requests)
	}
	return max(scheduled-i, 0)
}

func (r *runner) send(ctx context.Context, j job) {
	req, err := r.generate(j.kind)
	if err != nil {
		// Only sync batches can fail to generate, when signing a token fails.
		r.tally.failure(KindSync, err, false)
		return
	}
	httpReq, err := http.NewRequestWithContext(ctx, req.Method, r.base+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		r.tally.failure(req.Kind, fmt.Errorf("build request: %w", err), false)
		return
	}
	for k, vs := range req.Header {
		httpReq.Header[k] = vs
	}

	from := time.Now()
	if !j.intended.IsZero() {
		from = j.intended
	}
	r.tally.inFlight.Add(1)
	resp, err := r.client.Do(httpReq)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
		_ = resp.Body.Close()
	}
	done := time.Now()
	r.tally.inFlight.Add(-1)

	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		r.tally.canceled.Add(1)
	case err != nil:
		r.tally.failure(req.Kind, err, true)
	default:
		r.hist.Record(done.Sub(from))
		r.tally.response(&req, resp.StatusCode, done)
	}
}

func (r *runner) generate(kind mixKind) (Request, error) {
	switch kind {
	case mixWebhook:
		return r.cfg.Webhooks.Next(), nil
	case mixText:
		return r.cfg.Webhooks.NextText(), nil
	case mixForged:
		return r.cfg.Webhooks.Forged(), nil
	case mixRedelivery:
		return r.cfg.Webhooks.Redelivery(), nil
	case mixSync:
		return r.cfg.Sync.Next()
	default:
		panic(fmt.Sprintf("BUG: unknown mix kind %d", kind))
	}
}

func (r *runner) reportProgress(start time.Time, stop <-chan struct{}) {
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	last, lastSent := start, int64(0)
	for {
		select {
		case <-stop:
			return
		case now := <-ticker.C:
			s := r.tally.snapshot(now.Sub(start), r.hist)
			if dt := now.Sub(last).Seconds(); dt > 0 {
				s.Rate = float64(s.Sent-lastSent) / dt
			}
			last, lastSent = now, s.Sent
			r.cfg.Progress(s)
		}
	}
}

func (r *runner) report(start time.Time, missed int64) Report {
	elapsed := time.Since(start)
	t := r.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	rep := Report{
		Start:        start,
		Elapsed:      elapsed,
		Sent:         t.sent.Load(),
		Missed:       missed,
		Canceled:     t.canceled.Load(),
		Errors:       t.errors.Load(),
		ErrorSamples: t.errorSamples,
		ByStatus:     t.byStatus,
		ByKind:       t.byKind,
		Latency:      r.hist.Summary(),
		Histogram:    r.hist,
		Acks:         t.acks,
		AcksDropped:  t.acksDropped,
	}
	if s := elapsed.Seconds(); s > 0 {
		rep.Rate = float64(rep.Sent) / s
	}
	return rep
}
