package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/testenv"
)

func randomName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("SYNCGUARD_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// testClickHouse connects to the test ClickHouse and returns a config
// naming a fresh database, which is dropped when the test ends.
func testClickHouse(t testing.TB) (driver.Conn, ClickHouseConfig) {
	t.Helper()
	cfg := DefaultClickHouseConfig()
	cfg.Addr = testenv.ClickHouseAddr(t)
	cfg.Database = "sgtest_" + randomName(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := OpenClickHouse(ctx, cfg)
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
			t.Errorf("drop test database %s: %v", cfg.Database, err)
		}
		conn.Close()
	})
	return conn, cfg
}

// migratedClickHouse is testClickHouse with the migrations applied.
func migratedClickHouse(t testing.TB) (driver.Conn, ClickHouseConfig) {
	t.Helper()
	conn, cfg := testClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Migrate(ctx, conn, cfg.Database, testLogger(t)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return conn, cfg
}

// testKafka returns a Kafka config with a fresh topic prefix whose topics
// exist; they are deleted when the test ends.
func testKafka(t testing.TB) kafkaclient.Config {
	t.Helper()
	cfg := kafkaclient.Defaults()
	cfg.Brokers = testenv.KafkaBrokers(t)
	cfg.TopicPrefix = "t-" + randomName(t) + "."
	cfg.ClientID = "sinks-test"
	cfg.Partitions = 2

	testenv.CreateTopics(t, cfg)
	return cfg
}

// testRecord is a value to produce to a topic suffix.
type testRecord struct {
	suffix string
	key    string
	value  any // marshalled to JSON unless it is []byte
}

func produce(t testing.TB, kcfg kafkaclient.Config, records ...testRecord) {
	t.Helper()
	cl, err := kcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	rs := make([]*kgo.Record, 0, len(records))
	for _, r := range records {
		value, ok := r.value.([]byte)
		if !ok {
			value, err = json.Marshal(r.value)
			if err != nil {
				t.Fatalf("marshal %T: %v", r.value, err)
			}
		}
		rs = append(rs, &kgo.Record{Topic: kcfg.Topic(r.suffix), Key: []byte(r.key), Value: value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// runningWriter is a Writer whose Run goroutine the test owns.
type runningWriter struct {
	*Writer
	registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// startWriter starts a Writer with a fast flush interval; the test stops
// it, or cleanup does.
func startWriter(t testing.TB, ch ClickHouseConfig, kcfg kafkaclient.Config, group string, tweak func(*Writer)) *runningWriter {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ClickHouse = ch
	cfg.Group = group
	cfg.FlushInterval = 100 * time.Millisecond
	reg := prometheus.NewRegistry()
	w, err := New(Options{Config: cfg, Kafka: kcfg, Logger: testLogger(t), Registry: reg})
	if err != nil {
		t.Fatalf("new writer: %v", err)
	}
	if tweak != nil {
		tweak(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWriter{Writer: w, registry: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(func() { rw.stop(t) })
	return rw
}

func (rw *runningWriter) stop(t testing.TB) {
	t.Helper()
	rw.stopOnce.Do(func() {
		rw.cancel()
		select {
		case err := <-rw.done:
			if err != nil {
				t.Errorf("writer Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("writer did not stop within 20s")
		}
	})
}

// metric returns the value of the counter or gauge name whose labels
// include labels (name, value pairs), or 0 when it has no such series.
func (rw *runningWriter) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	families, err := rw.registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := make(map[string]string)
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitFor polls cond until it returns true or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countRows(t testing.TB, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func exec(t testing.TB, conn driver.Conn, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// chProxy forwards TCP connections to ClickHouse while it is up and
// rejects them while it is down, to act out an outage.
type chProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *chProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chProxy{ln: ln, target: target, up: true, conns: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *chProxy) addr() string { return p.ln.Addr().String() }

func (p *chProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		if up {
			p.conns[c] = true
		}
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *chProxy) forward(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	p.conns[s] = true
	p.mu.Unlock()

	var upstream sync.WaitGroup
	upstream.Add(1)
	go func() {
		defer upstream.Done()
		io.Copy(s, c)
		p.drop(s)
		p.drop(c)
	}()
	io.Copy(c, s)
	p.drop(c)
	p.drop(s)
	upstream.Wait()
}

func (p *chProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// setUp switches the proxy; going down also cuts every open connection.
func (p *chProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *chProxy) close() {
	p.ln.Close()
	p.setUp(false)
	p.wg.Wait()
}
