package ingest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// TestLoadLoopback compares the webhook route with a server that does
// nothing, over loopback with keep-alive connections. It runs only with
// SYNCGUARD_LOAD_TEST=1 and sends SYNCGUARD_LOAD_REQUESTS (default 20000)
// requests from SYNCGUARD_LOAD_CONCURRENCY (default 32) workers. It uses
// the real Kafka when SYNCGUARD_KAFKA_BROKERS is set, else kfake.
func TestLoadLoopback(t *testing.T) {
	if os.Getenv("SYNCGUARD_LOAD_TEST") != "1" {
		t.Skip("set SYNCGUARD_LOAD_TEST=1 to run the loopback load test")
	}
	requests := envInt(t, "SYNCGUARD_LOAD_REQUESTS", 20000)
	workers := envInt(t, "SYNCGUARD_LOAD_CONCURRENCY", 32)

	var h *harness
	if brokers := os.Getenv("SYNCGUARD_KAFKA_BROKERS"); brokers != "" {
		kcfg := testKafkaConfig()
		kcfg.Brokers = []string{brokers}
		kcfg.Partitions = 3
		testenv.CreateTopics(t, kcfg)
		keys := newTestKeys(t)
		h = newHarnessOn(t, testConfig(keys), kcfg, keys)
	} else {
		h = newHarness(t, nil)
	}
	h.srv.now = time.Now

	body := waBody("load test message")
	sig := sign(testAppSecret, body)

	// Baseline: a server that responds 200 to every request.
	nothing := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = nothing.Serve(ln) }()
	t.Cleanup(func() { nothing.Close() })
	base := load(t, "http://"+ln.Addr().String()+"/webhooks/whatsapp", body, sig, requests, workers)

	url, _ := serving(t, h)
	got := load(t, url+"/webhooks/whatsapp", body, sig, requests, workers)

	t.Logf("do-nothing server: %.0f req/s, p50 %s, p99 %s", base.rate, base.p50, base.p99)
	t.Logf("webhook route:     %.0f req/s, p50 %s, p99 %s (%.2fx)", got.rate, got.p50, got.p99, got.rate/base.rate)
	if got.failed > 0 {
		t.Fatalf("%d of %d webhook requests did not get 200", got.failed, requests)
	}
	if n := len(h.records(schemas.TopicRaw)); n != requests {
		t.Fatalf("%d raw records after %d accepted requests", n, requests)
	}
}

type loadResult struct {
	rate     float64
	p50, p99 time.Duration
	failed   int64
}

func load(t *testing.T, url string, body []byte, sig string, requests, workers int) loadResult {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var next, failed atomic.Int64
	latencies := make([]time.Duration, requests)

	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("X-Hub-Signature-256", sig)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				latencies[i] = time.Since(t0)
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()

	elapsed := time.Since(start)
	slices.Sort(latencies)
	return loadResult{
		rate:   float64(requests) / elapsed.Seconds(),
		p50:    latencies[requests/2],
		p99:    latencies[requests*99/100],
		failed: failed.Load(),
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q is not a positive integer", name, v)
	}
	return n
}
