package e2e

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// startProxy forwards TCP connections from a new loopback listener on addr
// to target until the test ends, when it closes every connection.
func startProxy(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

// TestStartBeforeKafka starts syncguard while its Kafka bootstrap address
// accepts no connections, then makes Kafka reachable: the process must
// create its topics, become ready and store webhooks without a restart.
func TestStartBeforeKafka(t *testing.T) {
	seed := freeAddr(t)
	s := newStack(t, stackOptions{Brokers: []string{seed}, NotReady: true})

	// While Kafka is unreachable the process runs but is not ready.
	resp, err := http.Get(s.opsURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while Kafka is unreachable, want 503", resp.StatusCode)
	}

	startProxy(t, seed, s.brokers[0])
	waitFor(t, 90*time.Second, "syncguard to become ready", func() bool {
		resp, err := http.Get(s.opsURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	f, _ := webhookFactory(t, 31, 1)
	req := f.NextText()
	if got := s.sendGenerated(req); got.Status != http.StatusOK {
		t.Fatalf("webhook after recovery: status %d, body %s", got.Status, got.Body)
	}
	s.oneMessage(t, req.MessageIDs()[0])
}
