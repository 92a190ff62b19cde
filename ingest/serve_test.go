package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

// serving starts h.srv.Serve on a loopback port and returns its base URL
// and a function that stops it and returns Serve's error.
func serving(t *testing.T, h *harness) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, ln) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Serve did not return within 30s of cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), stop
}

// sendRaw dials addr, writes a raw HTTP/1.1 request and returns the
// connection, with a 10s deadline, and a reader for its responses.
func sendRaw(t *testing.T, addr, request string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// rawExchange writes a raw HTTP/1.1 request and reads the response.
func rawExchange(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	_, br := sendRaw(t, addr, request)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestServeOverTCP(t *testing.T) {
	h := newHarness(t, nil)
	base, stop := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	waitFor(t, "Addr to be set", func() bool { return h.srv.Addr() != "" })
	if got := h.srv.Addr(); got != addr {
		t.Errorf("Addr() = %q, want %q", got, addr)
	}

	t.Run("lower-case signature header on the wire", func(t *testing.T) {
		body := waBody("Hello from the signature format test")
		req := "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"x-hub-signature-256: " + sign(testAppSecret, body) + "\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + string(body)
		resp := rawExchange(t, addr, req)
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("handshake body is the raw challenge", func(t *testing.T) {
		resp, err := http.Get(base + "/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=734519002&hub.verify_token=" + testVerifyToken)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if body := readAllString(t, resp.Body); resp.StatusCode != 200 || body != "734519002" {
			t.Fatalf("status %d body %q, want 200 and exactly 734519002", resp.StatusCode, body)
		}
	})

	t.Run("unsigned POST after the handshake", func(t *testing.T) {
		resp, err := http.Post(base+"/webhooks/whatsapp", "application/json", strings.NewReader(string(waBody("x"))))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status = %d, want 401", resp.StatusCode)
		}
	})

	t.Run("header block over max_header_bytes", func(t *testing.T) {
		req := "POST /v1/sync/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat(".", 60000) + "\r\nContent-Length: 0\r\n\r\n"
		resp := rawExchange(t, addr, req)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status = %d, want 431", resp.StatusCode)
		}
	})

	t.Run("readyz after a ping", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz = %d after 10s", resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz = %d", resp.StatusCode)
		}
	})

	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v on a clean stop", err)
	}
	if h.srv.Ready() {
		t.Error("Ready() is true after Serve returned")
	}
	// Serve flushed the audit records of the three requests that reached
	// a handler, because net/http sends 431 itself. The client stays open
	// because the test owns it.
	if evs := h.auditEvents(3); len(evs) != 3 {
		t.Errorf("%d audit events, want 3", len(evs))
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	h := newHarness(t, nil)
	base, stop := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")

	body := waBody("sent across a shutdown")
	head := "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"X-Hub-Signature-256: " + sign(testAppSecret, body) + "\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// Send the headers and half the body, so the request is in flight.
	if _, err := io.WriteString(conn, head+string(body[:len(body)/2])); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to be in flight", func() bool { return inFlight(h) })

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// New connections are refused once shutdown began.
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})

	if _, err := conn.Write(body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("in-flight request: status %d, want 200", resp.StatusCode)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if n := len(h.records(schemas.TopicRaw)); n != 1 {
		t.Errorf("%d raw records, want 1", n)
	}
}

// inFlight reports whether a handler has begun a request and not finished
// it.
func inFlight(h *harness) bool {
	return h.srv.inFlight.Load() > 0
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadyzFollowsKafka(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.ProduceTimeout = 300 * time.Millisecond
		c.AuditFlushTimeout = 300 * time.Millisecond // the cluster is gone at shutdown
	})
	if h.srv.Ready() {
		t.Fatal("Ready() before Serve")
	}
	base, _ := serving(t, h)
	waitFor(t, "readiness", h.srv.Ready)

	h.cluster.Close()
	body := waBody("while the cluster is gone")
	wantProblem(t, h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)})), 503, schemas.ReasonUnavailable)
	if h.srv.Ready() {
		t.Error("Ready() is true right after a failed produce")
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", resp.StatusCode)
	}
}

// TestStalledBodyGetsRequestTimeout sends the headers and part of a body,
// then nothing more. The client must get 408 request_timeout once
// read_timeout passes, and the audit row must record the same, over
// HTTP/1.1 and HTTP/2.
func TestStalledBodyGetsRequestTimeout(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	h := newHarness(t, func(c *Config) {
		c.ReadTimeout = 400 * time.Millisecond
		c.WriteTimeout = c.ReadTimeout + c.ProduceTimeout + minResponseTime
		c.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	})
	base, _ := serving(t, h)
	base = strings.Replace(base, "http://", "https://", 1)
	token := h.token(h.claims())

	// partialGzip is the start of a gzip stream: the header and the first
	// compressed bytes of a batch, without its end.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("[" + strings.Repeat(h.event("e-1")+",", 50)))
	_ = zw.Flush()
	partialGzip := gz.Bytes()[:40]

	stalled := func(t *testing.T, route string, proto int, body []byte) *http.Response {
		t.Helper()
		pr, pw := io.Pipe()
		// Without a response, the HTTP/1.1 client would wait for the body
		// forever. Ending the body later makes that a failure, not a hang.
		giveUp := time.AfterFunc(5*time.Second, func() { pw.CloseWithError(errors.New("no response within 5s")) })
		t.Cleanup(func() { giveUp.Stop(); pw.Close() })
		req, err := http.NewRequest(http.MethodPost, base+route, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1000
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", sign(testAppSecret, []byte("x")))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Device-ID", testDevice)
		if body[0] == 0x1f { // the first byte of a gzip stream
			req.Header.Set("Content-Encoding", "gzip")
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: proto == 2}
		if proto == 1 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		go func() { _, _ = pw.Write(body) }()
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("no response to a stalled body: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.ProtoMajor != proto {
			t.Fatalf("protocol = %s, want HTTP/%d", resp.Proto, proto)
		}
		return resp
	}

	seen := 0
	plain := []byte(`{"entry":[`)
	for _, tc := range []struct {
		name, route, auditRoute string
		proto                   int
		body                    []byte
	}{
		{"webhook over HTTP/1.1", "/webhooks/whatsapp", routeWebhook, 1, plain},
		{"sync over HTTP/1.1", "/v1/sync/events", routeSync, 1, plain},
		{"gzip sync over HTTP/1.1", "/v1/sync/events", routeSync, 1, partialGzip},
		{"webhook over HTTP/2", "/webhooks/whatsapp", routeWebhook, 2, plain},
		{"sync over HTTP/2", "/v1/sync/events", routeSync, 2, plain},
		{"gzip sync over HTTP/2", "/v1/sync/events", routeSync, 2, partialGzip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := stalled(t, tc.route, tc.proto, tc.body)
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status = %d, want 408", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != contentTypeProblem {
				t.Errorf("Content-Type = %q, want %s", ct, contentTypeProblem)
			}
			if body := readAllString(t, resp.Body); !strings.Contains(body, `"code":"request_timeout"`) {
				t.Errorf("body %s lacks the code request_timeout", body)
			}
			if tc.proto == 1 && !resp.Close {
				t.Error("the HTTP/1.1 connection stays open with an unread body on it")
			}
			seen++
			evs := h.auditEvents(seen)
			ev := evs[len(evs)-1]
			if ev.Route != tc.auditRoute || ev.Reason != schemas.ReasonRequestTimeout || ev.Status != http.StatusRequestTimeout {
				t.Errorf("audit event route %q reason %q status %d, want %q request_timeout 408", ev.Route, ev.Reason, ev.Status, tc.auditRoute)
			}
			if ev.Detail != "reading body: timed out" {
				t.Errorf("audit detail = %q, want the timeout alone", ev.Detail)
			}
			if ev.BytesIn != len(tc.body) {
				t.Errorf("audit bytes_in = %d, want the %d bytes that arrived", ev.BytesIn, len(tc.body))
			}
		})
	}
}

// TestEarlyRejectionSkipsStalledBody checks that a request rejected before
// its body is read gets its response within bodyDrainWait, although the
// client stalls in the middle of the body. net/http would otherwise try to
// read the rest of the body first and send the response only after
// read_timeout. A body that has fully arrived must keep the connection.
func TestEarlyRejectionSkipsStalledBody(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.ReadTimeout = 20 * time.Second
		c.WriteTimeout = c.ReadTimeout + c.ProduceTimeout + minResponseTime
		c.WebhookMaxBodyBytes = 64 << 10
	})
	base, _ := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"webhook without signature", "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"entry\":[", http.StatusUnauthorized},
		{"sync without token", "POST /v1/sync/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Device-ID: dev-42\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"a\"\r\n", http.StatusUnauthorized},
		{"no such route", "POST /v2/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[", http.StatusNotFound},
		{"expect 100-continue", "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n", http.StatusUnauthorized},
		{"health check with a body", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[", http.StatusOK},
		{"handshake with a body", "GET /webhooks/whatsapp?hub.mode=subscribe&hub.challenge=42&hub.verify_token=" + testVerifyToken + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[", http.StatusOK},
		{"webhook over the body limit", "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\nContent-Length: 100000\r\n\r\n[", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// rawExchange waits at most 10s, half of read_timeout.
			resp := rawExchange(t, addr, tc.request)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if !resp.Close {
				t.Error("the response leaves the connection open with an unread body on it")
			}
		})
	}

	for name, req := range map[string]string{
		"stalled rejection closes the socket":   "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
		"body over the limit closes the socket": "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
		"expect 100-continue closes the socket": "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
		"health check closes the socket":        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[",
	} {
		t.Run(name, func(t *testing.T) {
			_, br := sendRaw(t, addr, req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			// read_timeout is 20s: a server that held the socket until
			// then would make this read time out after 10s instead.
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after the %d response: %v, want the server to have closed the connection", resp.StatusCode, err)
			}
		})
	}

	t.Run("signed webhook with expect is stored", func(t *testing.T) {
		body := waBody("sent after 100 Continue")
		head := "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" +
			"X-Hub-Signature-256: " + sign(testAppSecret, body) + "\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
		conn, br := sendRaw(t, addr, head)

		cont, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cont.StatusCode != http.StatusContinue {
			t.Fatalf("first response: status %d, want 100", cont.StatusCode)
		}
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}

		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Errorf("final response: status %d, close %v; want 200 on a kept connection", resp.StatusCode, resp.Close)
		}
	})

	t.Run("complete body keeps the connection", func(t *testing.T) {
		// Two pipelined requests: a rejected webhook whose body has fully
		// arrived, then a health check. Both must get a response on the one
		// connection.
		req := "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" +
			"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		_, br := sendRaw(t, addr, req)

		first, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, first.Body)
		if first.StatusCode != http.StatusUnauthorized || first.Close {
			t.Fatalf("first response: status %d, close %v; want 401 on a kept connection", first.StatusCode, first.Close)
		}

		second, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no response to the pipelined request: %v", err)
		}
		if second.StatusCode != http.StatusOK {
			t.Errorf("pipelined /healthz: status %d, want 200", second.StatusCode)
		}
	})
}

// TestDeviceInFlightCap holds device_in_flight sync requests of one device
// open with stalled bodies. The next request of that device gets 429 at
// once, another device is not affected, and the slots come back when the
// stalled requests end.
func TestDeviceInFlightCap(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.ReadTimeout = time.Second
		c.WriteTimeout = c.ReadTimeout + c.ProduceTimeout + minResponseTime
		c.RateLimits.DeviceInFlight = 2
	})
	base, _ := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	token := h.token(h.claims())
	stalledHead := "POST /v1/sync/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Authorization: Bearer " + token + "\r\nX-Device-ID: " + testDevice + "\r\nContent-Length: 1000\r\n\r\n["

	var stalled []net.Conn
	for range 2 {
		conn, _ := sendRaw(t, addr, stalledHead)
		stalled = append(stalled, conn)
	}
	// The stalled requests must be in their handlers before the next one.
	waitFor(t, "two requests in flight", func() bool {
		h.srv.limits.inFlight.mu.Lock()
		defer h.srv.limits.inFlight.mu.Unlock()
		return h.srv.limits.inFlight.count[testDevice] == 2
	})

	body := []byte("[" + h.event("cap-1") + "]")
	rec := h.do(h.syncRequest("application/json", body, token))
	wantProblem(t, rec, http.StatusTooManyRequests, schemas.ReasonRateLimited)
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}

	claims := h.claims()
	claims["device_id"] = "dev-other"
	other := h.syncRequest("application/json", []byte("["+strings.Replace(h.event("cap-2"), testDevice, "dev-other", 1)+"]"), h.token(claims))
	other.Header.Set("X-Device-ID", "dev-other")
	if rec := h.do(other); rec.Code != http.StatusAccepted {
		t.Errorf("another device: status %d, want 202: %s", rec.Code, rec.Body)
	}

	// The stalled requests end with 408 after read_timeout, which frees
	// their slots.
	for _, conn := range stalled {
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled request: status %d, want 408", resp.StatusCode)
		}
	}
	waitFor(t, "the slots to be freed", func() bool {
		h.srv.limits.inFlight.mu.Lock()
		defer h.srv.limits.inFlight.mu.Unlock()
		return len(h.srv.limits.inFlight.count) == 0
	})
	if rec := h.do(h.syncRequest("application/json", body, token)); rec.Code != http.StatusAccepted {
		t.Errorf("after the stalled requests ended: status %d, want 202: %s", rec.Code, rec.Body)
	}
}
