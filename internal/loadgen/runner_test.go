package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIngest is a stand-in for ingest on 127.0.0.1: it checks webhook
// signatures and the presence of a bearer token, and records what it saw.
type fakeIngest struct {
	*httptest.Server
	requests atomic.Int64
	delay    time.Duration
	onCount  func(n int64)

	mu      sync.Mutex
	sources map[string]int
	phones  map[string]int
}

func newFakeIngest(t *testing.T, delay time.Duration, onCount func(int64)) *fakeIngest {
	t.Helper()
	fi := &fakeIngest{delay: delay, onCount: onCount, sources: map[string]int{}, phones: map[string]int{}}
	fi.Server = httptest.NewServer(http.HandlerFunc(fi.serve))
	t.Cleanup(fi.Close)
	return fi
}

func (fi *fakeIngest) serve(w http.ResponseWriter, r *http.Request) {
	n := fi.requests.Add(1)
	if fi.onCount != nil {
		fi.onCount(n)
	}
	if fi.delay > 0 {
		// Simulated service time of a slow server.
		time.Sleep(fi.delay)
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	fi.mu.Lock()
	fi.sources[host]++
	fi.mu.Unlock()

	switch r.URL.Path {
	case WebhookPath:
		req := Request{Header: r.Header, Body: body}
		if !verifySignature([]byte(testAppSecret.Reveal()), req) {
			http.Error(w, `{"error":"invalid_signature"}`, http.StatusUnauthorized)
			return
		}
		if i := strings.Index(string(body), `"phone_number_id":"`); i >= 0 {
			rest := string(body[i+len(`"phone_number_id":"`):])
			fi.mu.Lock()
			fi.phones[rest[:strings.IndexByte(rest, '"')]]++
			fi.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	case SyncPath:
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") || r.Header.Get("X-Device-ID") == "" {
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func testRunConfig(t *testing.T, target string) Config {
	t.Helper()
	webhooks, err := NewWebhookFactory(1, ExampleAccounts(testAppSecret, 2))
	if err != nil {
		t.Fatal(err)
	}
	syncs, _ := newTestSyncFactory(t, 1, WithMaxEvents(5))
	return Config{
		Target:      target,
		Concurrency: 4,
		Webhooks:    webhooks,
		Sync:        syncs,
	}
}

func TestRunCountsStatusesAndStopsAtBound(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Requests = 300
	cfg.Mix = Mix{Webhook: 5, Text: 1, Sync: 2, Forged: 2, Redelivery: 1}

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.requests.Load(); got != 300 {
		t.Errorf("server saw %d requests, want 300", got)
	}
	if rep.Sent != 300 || rep.Errors != 0 || rep.Missed != 0 || rep.Canceled != 0 {
		t.Errorf("sent %d errors %d missed %d canceled %d (samples %v)", rep.Sent, rep.Errors, rep.Missed, rep.Canceled, rep.ErrorSamples)
	}
	var total int64
	for _, n := range rep.ByStatus {
		total += n
	}
	if total != 300 {
		t.Errorf("ByStatus sums to %d: %v", total, rep.ByStatus)
	}
	forged, webhook, redelivery, syncs := rep.ByKind[KindForged], rep.ByKind[KindWebhook], rep.ByKind[KindRedelivery], rep.ByKind[KindSync]
	if forged.Sent == 0 || webhook.Sent == 0 || redelivery.Sent == 0 || syncs.Sent == 0 {
		t.Fatalf("a kind is missing: %+v", rep.ByKind)
	}
	if rep.ByStatus[401] != forged.Sent || forged.ByStatus[401] != forged.Sent {
		t.Errorf("401s = %d, forged sent = %d", rep.ByStatus[401], forged.Sent)
	}
	if rep.ByStatus[200] != webhook.Sent+redelivery.Sent {
		t.Errorf("200s = %d, webhooks %d + redeliveries %d", rep.ByStatus[200], webhook.Sent, redelivery.Sent)
	}
	if rep.ByStatus[202] != syncs.Sent {
		t.Errorf("202s = %d, sync batches %d", rep.ByStatus[202], syncs.Sent)
	}
	if rep.Latency.Count != 300 || rep.Latency.Max <= 0 || rep.Latency.P50 > rep.Latency.P99 {
		t.Errorf("latency summary %+v", rep.Latency)
	}
	if rep.Rate <= 0 {
		t.Errorf("rate %v", rep.Rate)
	}
	if len(rep.Acks) == 0 {
		t.Fatal("no acknowledgements recorded")
	}
	for _, a := range rep.Acks {
		if (a.Kind != KindWebhook && a.Kind != KindSync) || a.ID == "" || a.At.Before(rep.Start) {
			t.Fatalf("bad ack %+v", a)
		}
	}
}

func TestRunOpenLoopDuration(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Rate = 200
	cfg.Duration = 250 * time.Millisecond

	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 250ms schedules requests at 0, 5, ..., 245ms.
	if rep.Sent+rep.Missed != 50 {
		t.Errorf("sent %d + missed %d, want 50 scheduled", rep.Sent, rep.Missed)
	}
	if fi.requests.Load() != rep.Sent {
		t.Errorf("server saw %d, report sent %d", fi.requests.Load(), rep.Sent)
	}
	if took := time.Since(start); took < 245*time.Millisecond {
		t.Errorf("run took %s, faster than its schedule", took)
	}
}

func TestRunOpenLoopMeasuresFromSchedule(t *testing.T) {
	fi := newFakeIngest(t, 20*time.Millisecond, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Mix = Mix{Webhook: 1}
	cfg.Concurrency = 1
	cfg.Rate = 200
	cfg.Requests = 15

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 15 {
		t.Fatalf("sent %d", rep.Sent)
	}
	// One connection serves 15 requests in at least 300ms while they were
	// scheduled over 70ms, so the last one waited at least 230ms. A
	// closed-loop measurement would report about 20ms.
	if rep.Latency.Max < 200*time.Millisecond {
		t.Errorf("max latency %s hides the queueing behind the slow server", rep.Latency.Max)
	}
}

func TestRunMissedWhenBehind(t *testing.T) {
	fi := newFakeIngest(t, 50*time.Millisecond, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Mix = Mix{Webhook: 1}
	cfg.Concurrency = 1
	cfg.Rate = 100
	cfg.Duration = 200 * time.Millisecond

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missed == 0 {
		t.Errorf("no missed requests although one 50ms connection cannot serve 100/s; sent %d", rep.Sent)
	}
	if rep.Sent+rep.Missed != 20 {
		t.Errorf("sent %d + missed %d, want 20 scheduled", rep.Sent, rep.Missed)
	}
}

func TestRunRejectsConfig(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cases := []struct {
		name   string
		mutate func(c *Config)
		want   error
	}{
		{"unbounded", func(*Config) {}, ErrUnbounded},
		{"remote target", func(c *Config) { c.Requests = 1; c.Target = "http://192.0.2.10:8080" }, ErrNotLoopback},
		{"host name", func(c *Config) { c.Requests = 1; c.Target = "http://ingest.example.com" }, ErrNotLoopback},
		{"remote source", func(c *Config) { c.Requests = 1; c.SourceAddr = "192.0.2.10" }, ErrNotLoopback},
		{"missing factory", func(c *Config) { c.Requests = 1; c.Sync = nil; c.Mix = Mix{Sync: 1} }, ErrNoFactory},
		{"negative rate", func(c *Config) { c.Requests = 1; c.Rate = -1 }, nil},
		{"negative weight", func(c *Config) { c.Requests = 1; c.Mix = Mix{Webhook: 1, Forged: -1} }, nil},
		{"family mismatch", func(c *Config) { c.Requests = 1; c.Target = "http://[::1]:8080"; c.SourceAddr = "127.0.0.2" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testRunConfig(t, fi.URL)
			tc.mutate(&cfg)
			_, err := Run(context.Background(), cfg)
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "loadgen") {
				t.Errorf("error %q does not name the loadgen key", err)
			}
		})
	}
	if n := fi.requests.Load(); n != 0 {
		t.Errorf("rejected configs sent %d requests", n)
	}
}

func TestRunTrackAcksBounded(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Mix = Mix{Text: 1}
	cfg.Requests = 40
	cfg.TrackAcks = 5
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Acks) != 5 || rep.AcksDropped != 35 {
		t.Errorf("acks %d dropped %d, want 5 and 35", len(rep.Acks), rep.AcksDropped)
	}

	cfg.TrackAcks = -1
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Acks) != 0 || rep.AcksDropped != 40 {
		t.Errorf("with tracking off: acks %d dropped %d", len(rep.Acks), rep.AcksDropped)
	}
}

func TestRunProgress(t *testing.T) {
	old := progressInterval
	progressInterval = 20 * time.Millisecond
	t.Cleanup(func() { progressInterval = old })

	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	cfg.Rate = 500
	cfg.Duration = 200 * time.Millisecond
	var mu sync.Mutex
	var snaps []Snapshot
	cfg.Progress = func(s Snapshot) {
		mu.Lock()
		snaps = append(snaps, s)
		mu.Unlock()
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) < 3 {
		t.Fatalf("%d progress calls in 200ms at a 20ms interval", len(snaps))
	}
	for i := 1; i < len(snaps); i++ {
		if snaps[i].Sent < snaps[i-1].Sent || snaps[i].Elapsed <= snaps[i-1].Elapsed {
			t.Errorf("snapshot %d goes backwards: %+v after %+v", i, snaps[i], snaps[i-1])
		}
	}
	if last := snaps[len(snaps)-1]; last.Sent > rep.Sent || last.OK == 0 {
		t.Errorf("last snapshot %+v, report sent %d", last, rep.Sent)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fi := newFakeIngest(t, 0, func(n int64) {
		if n == 20 {
			cancel()
		}
	})
	cfg := testRunConfig(t, fi.URL)
	cfg.Requests = 1_000_000
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rep.Sent+rep.Canceled >= 1_000_000 || rep.Sent < 10 {
		t.Errorf("sent %d canceled %d after canceling at 20", rep.Sent, rep.Canceled)
	}
}

func TestRunConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	cfg := testRunConfig(t, "http://"+addr)
	cfg.Requests = 10
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 10 || len(rep.ByStatus) != 0 || len(rep.ErrorSamples) == 0 {
		t.Errorf("errors %d statuses %v samples %v", rep.Errors, rep.ByStatus, rep.ErrorSamples)
	}
}

func TestForgedBurstFromSourceAddress(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	rep, err := ForgedBurst(30, "127.0.0.2").Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors > 0 && strings.Contains(strings.Join(rep.ErrorSamples, " "), "assign requested address") {
		t.Skipf("binding 127.0.0.2 is not possible on this system: %v", rep.ErrorSamples)
	}
	if rep.ByStatus[401] != 30 || rep.ByKind[KindForged].Sent != 30 {
		t.Errorf("statuses %v kinds %v, want 30 forged 401s", rep.ByStatus, rep.ByKind)
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if fi.sources["127.0.0.2"] != 30 || len(fi.sources) != 1 {
		t.Errorf("server saw sources %v, want 127.0.0.2 only", fi.sources)
	}
	if len(rep.Acks) != 0 {
		t.Errorf("forged requests produced %d acks", len(rep.Acks))
	}
}

func TestVolumeSpikeOneAccount(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	cfg := testRunConfig(t, fi.URL)
	account := ExampleAccounts(testAppSecret, 2)[1]
	rep, err := VolumeSpike(account, 25).Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ByStatus[200] != 25 {
		t.Errorf("statuses %v, want 25 200s", rep.ByStatus)
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if fi.phones[account.PhoneNumberID] != 25 || len(fi.phones) != 1 {
		t.Errorf("server saw accounts %v, want only %s", fi.phones, account.PhoneNumberID)
	}

	unknown := account
	unknown.PhoneNumberID = "999"
	if _, err := VolumeSpike(unknown, 1).Run(context.Background(), cfg); err == nil {
		t.Error("spike for an account the factory does not know: want an error")
	}
	if _, err := (Attack{}).Run(context.Background(), cfg); err == nil {
		t.Error("zero Attack: want an error")
	}
}

func TestRunCountsGenerationFailures(t *testing.T) {
	fi := newFakeIngest(t, 0, nil)
	syncs, err := NewSyncFactory(1, ExampleDevices(1), &countingSigner{err: errors.New("key unavailable")})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{Target: fi.URL, Requests: 5, Sync: syncs})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 5 || rep.Sent != 0 || fi.requests.Load() != 0 {
		t.Errorf("errors %d sent %d server %d, want 5, 0, 0", rep.Errors, rep.Sent, fi.requests.Load())
	}
	if got := rep.ByKind[KindSync]; got.Errors != 5 || got.Sent != 0 {
		t.Errorf("sync kind report %+v", got)
	}
	if len(rep.ErrorSamples) != 1 || !strings.Contains(rep.ErrorSamples[0], "key unavailable") {
		t.Errorf("error samples %q", rep.ErrorSamples)
	}
}

// connectionCounter returns 200 for every request, with a body for /healthz
// as ingest does. It records which client connections (remote addresses)
// carried /healthz and which carried other requests.
type connectionCounter struct {
	*httptest.Server
	mu      sync.Mutex
	healthz map[string]bool
	other   map[string]bool
}

func newConnectionCounter(t *testing.T) *connectionCounter {
	c := &connectionCounter{healthz: map[string]bool{}, other: map[string]bool{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c.mu.Lock()
		if r.URL.Path == "/healthz" {
			c.healthz[r.RemoteAddr] = true
			_, _ = w.Write([]byte("ok\n"))
		} else {
			c.other[r.RemoteAddr] = true
		}
		c.mu.Unlock()
	}))
	t.Cleanup(c.Close)
	return c
}

func TestRunPreconnectOpensEveryConnection(t *testing.T) {
	c := newConnectionCounter(t)
	cfg := testRunConfig(t, c.URL)
	cfg.Concurrency = 16
	cfg.Requests = 200
	cfg.Mix = Mix{Webhook: 1}
	cfg.Preconnect = true

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ByStatus[200] != 200 {
		t.Fatalf("statuses %v, want 200 responses with status 200", rep.ByStatus)
	}
	if rep.Dials != 0 {
		t.Errorf("report counts %d dials during the run, want 0 after the preconnect", rep.Dials)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.healthz) != 16 {
		t.Errorf("preconnect came on %d connections, want 16", len(c.healthz))
	}
	for addr := range c.other {
		if !c.healthz[addr] {
			t.Errorf("a request came on connection %s, opened after the preconnect", addr)
		}
	}
}

func TestRunWithoutPreconnectSendsNoProbe(t *testing.T) {
	c := newConnectionCounter(t)
	cfg := testRunConfig(t, c.URL)
	cfg.Requests = 20
	cfg.Mix = Mix{Webhook: 1}

	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.healthz) != 0 || len(c.other) == 0 {
		t.Errorf("healthz on %d connections, other requests on %d; want 0 and some", len(c.healthz), len(c.other))
	}
}

func TestRunPreconnectFailureEndsRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	cfg := testRunConfig(t, "http://"+addr)
	cfg.Requests = 10
	cfg.Preconnect = true
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrPreconnect) || !strings.Contains(err.Error(), "4 of 4 connections failed") {
		t.Fatalf("error %v, want one that names the preconnect and its failures", err)
	}
	if strings.Count(err.Error(), "connection refused") != 1 {
		t.Errorf("error %q repeats the cause per connection", err)
	}
	if rep.Sent != 0 {
		t.Errorf("sent %d requests after a failed preconnect", rep.Sent)
	}
}

// TestRunPreconnectRejectsUnusableHealthz runs a preconnect against
// servers whose /healthz cannot keep a connection per probe open. Each
// must end the run before the clock starts, with an error naming why.
func TestRunPreconnectRejectsUnusableHealthz(t *testing.T) {
	for _, tc := range []struct {
		name    string
		healthz http.HandlerFunc
		want    string
	}{
		{"empty body", func(http.ResponseWriter, *http.Request) {}, "GET /healthz returned an empty body"},
		{"connection closed", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("ok\n"))
		}, "the server closes the connection after GET /healthz"},
		{"not found", http.NotFound, "GET /healthz returned status 404, want 200"},
		{"body over the read limit", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(make([]byte, maxResponseRead+1))
		}, "GET /healthz returned a body over 65536 bytes"},
		{"unavailable", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}, "GET /healthz returned status 503, want 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var others atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					// Hold every probe a little, so that all of them are in
					// flight together, as they are against a busy server.
					time.Sleep(20 * time.Millisecond)
					tc.healthz(w, r)
					return
				}
				others.Add(1)
			}))
			t.Cleanup(srv.Close)
			cfg := testRunConfig(t, srv.URL)
			cfg.Concurrency = 8
			cfg.Requests = 20
			cfg.Mix = Mix{Webhook: 1}
			cfg.Preconnect = true

			rep, err := Run(context.Background(), cfg)
			if !errors.Is(err, ErrPreconnect) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrPreconnect with %q", err, tc.want)
			}
			if rep.Sent != 0 || others.Load() != 0 {
				t.Errorf("the run went on after the preconnect failed: %d sent, %d served", rep.Sent, others.Load())
			}
		})
	}
}

// TestRunCountsDialsAfterSilentClose uses a server that closes each
// connection after its response without saying so in a header. The
// preconnect cannot see that, so the report must count the dials that
// fell inside the run.
func TestRunCountsDialsAfterSilentClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		_ = buf.Flush()
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	cfg := testRunConfig(t, srv.URL)
	cfg.Concurrency = 4
	cfg.Requests = 20
	cfg.Mix = Mix{Webhook: 1}
	cfg.Preconnect = true

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A request can get a connection the server has just closed, and
	// then fails without a retry because it is a POST. Every response
	// beyond the first 4 came on a connection dialed during the run,
	// because each connection carries one response.
	ok := rep.ByStatus[200]
	if ok < 10 {
		t.Fatalf("statuses %v, errors %v; want most of the 20 requests to get 200", rep.ByStatus, rep.ErrorSamples)
	}
	if rep.Dials < ok-4 {
		t.Errorf("report counts %d dials during the run, want at least %d for %d responses on 4 preconnected connections", rep.Dials, ok-4, ok)
	}
}
