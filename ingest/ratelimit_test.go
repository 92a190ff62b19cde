package ingest

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

func TestLimiterBurstAndRefill(t *testing.T) {
	l := newKeyedLimiter[string](2, 3, 10) // 2 tokens/s, burst 3
	t0 := time.Unix(1_700_000_000, 0)

	for i := range 3 {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("request %d of the burst rejected", i)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok {
		t.Fatal("request after the burst allowed")
	}
	if wait != 500*time.Millisecond {
		t.Errorf("wait = %s, want 500ms at 2 tokens/s", wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Error("another key shares the bucket of a")
	}
	if ok, _ := l.allow("a", t0.Add(499*time.Millisecond)); ok {
		t.Error("allowed before one token refilled")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Error("rejected after one token refilled")
	}
	// A long pause refills to the burst, not beyond.
	t1 := t0.Add(time.Hour)
	for i := range 3 {
		if ok, _ := l.allow("a", t1); !ok {
			t.Fatalf("request %d after the pause rejected", i)
		}
	}
	if ok, _ := l.allow("a", t1); ok {
		t.Error("bucket refilled beyond its burst")
	}
	// A clock going backwards neither refills nor panics.
	if ok, _ := l.allow("a", t0); ok {
		t.Error("allowed when the clock went backwards")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	f := func(wait time.Duration, want string) {
		t.Helper()
		if got := retryAfterSeconds(wait); got != want {
			t.Errorf("retryAfterSeconds(%s) = %q, want %q", wait, got, want)
		}
	}
	f(time.Nanosecond, "1")
	f(500*time.Millisecond, "1")
	f(time.Second, "1")
	f(1001*time.Millisecond, "2")
	f(0, "1")
}

func TestLimiterEvictsLeastRecentlyUsed(t *testing.T) {
	l := newKeyedLimiter[string](1, 1, 2)
	t0 := time.Unix(1_700_000_000, 0)
	l.allow("a", t0)
	l.allow("b", t0)
	l.allow("a", t0) // a is now the most recently used; its bucket is empty
	l.allow("c", t0) // evicts b

	if n := l.len(); n != 2 {
		t.Fatalf("len = %d, want 2", n)
	}
	if _, ok := l.index["b"]; ok {
		t.Error("b kept although it was the least recently used")
	}
	if ok, _ := l.allow("a", t0); ok {
		t.Error("a lost its empty bucket, so eviction reset an active key")
	}
	if got := l.evictions.Load(); got != 1 {
		t.Errorf("evictions = %d, want 1", got)
	}
	// b comes back with a full bucket: the documented cost of eviction.
	if ok, _ := l.allow("b", t0); !ok {
		t.Error("an evicted key did not start with a full bucket")
	}
}

func TestLimiterFloodStaysBounded(t *testing.T) {
	const capacity = 1000
	l := newKeyedLimiter[netip.Addr](1, 2, capacity)
	now := time.Unix(1_700_000_000, 0)
	abuser := netip.MustParseAddr("2001:db8:dead::")
	var abuserAllowed int
	base := netip.MustParseAddr("2001:db8::").As16()
	for i := range 1_000_000 {
		a := base
		// A distinct /64 per request.
		a[4], a[5], a[6], a[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		l.allow(sourceKey(netip.AddrFrom16(a)), now)
		if i%100 == 0 {
			// The abuser sends every 100 requests, so it stays recently
			// used and keeps its empty bucket.
			if ok, _ := l.allow(abuser, now); ok {
				abuserAllowed++
			}
		}
		if n := l.len(); n > capacity {
			t.Fatalf("limiter holds %d keys after %d requests, cap %d", n, i+1, capacity)
		}
	}
	if n := l.len(); n != capacity {
		t.Errorf("len = %d, want %d", n, capacity)
	}
	if len(l.index) != capacity || len(l.buckets) != capacity {
		t.Errorf("index %d and buckets %d, want %d each", len(l.index), len(l.buckets), capacity)
	}
	if abuserAllowed != 2 {
		t.Errorf("abuser allowed %d times, want its burst of 2", abuserAllowed)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := newKeyedLimiter[netip.Addr](1e9, 1e9, 100_000)
	keys := make([]netip.Addr, 4096)
	for i := range keys {
		keys[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.allow(keys[i&4095], now)
	}
}

func BenchmarkLimiterAllowNewKeys(b *testing.B) {
	l := newKeyedLimiter[netip.Addr](1, 1, 1000)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
}

// TestSourceLimiterKeyFlood floods ingest through a trusted proxy with a
// new IPv6 /64 per request while one abuser keeps sending. The limiter
// stays at its cap, no response is a 5xx, and the abuser gets no more
// than its burst.
func TestSourceLimiterKeyFlood(t *testing.T) {
	const capacity = 64
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.2"}
		c.RateLimits.Source = RateLimit{Rate: 0.001, Burst: 3}
		c.RateLimits.MaxKeys = capacity
	})
	send := func(client string) *http.Request {
		req := webhookRequest([]byte(`{}`), map[string]string{"X-Hub-Signature-256": "sha256=00"})
		req.RemoteAddr = "127.0.0.2:5000"
		req.Header.Set("X-Forwarded-For", client)
		return req
	}
	abuserOK, statuses := 0, map[int]int{}
	for i := range 2000 {
		client := "2001:db8:" + strconv.FormatInt(int64(i>>16), 16) + ":" + strconv.FormatInt(int64(i&0xffff), 16) + "::1"
		statuses[h.do(send(client)).Code]++
		if i%10 == 0 {
			rec := h.do(send("198.51.100.66"))
			statuses[rec.Code]++
			if rec.Code != http.StatusTooManyRequests {
				abuserOK++
			}
		}
		if n := h.srv.limits.source.len(); n > capacity {
			t.Fatalf("source limiter holds %d keys, cap %d", n, capacity)
		}
	}
	for code := range statuses {
		if code >= 500 {
			t.Errorf("%d responses with status %d", statuses[code], code)
		}
	}
	if abuserOK != 3 {
		t.Errorf("abuser passed the limiter %d times, want its burst of 3", abuserOK)
	}
	if got := counterWith(t, h.registry, "syncguard_ingest_ratelimit_evictions_total", map[string]string{"limiter": limiterSource}); got < 1 {
		t.Errorf("evictions metric = %g, want > 0", got)
	}
}

// TestDistinctSlash64sSeparateBuckets records that each /64 of one /48
// gets its own bucket: there is no coarser /48 limit.
func TestDistinctSlash64sSeparateBuckets(t *testing.T) {
	l := newKeyedLimiter[netip.Addr](1, 1, 100)
	now := time.Now()
	allowed := 0
	for i := range 40 {
		a := netip.MustParseAddr("2001:db8:1:" + strconv.FormatInt(int64(i), 16) + "::1")
		if ok, _ := l.allow(sourceKey(a), now); ok {
			allowed++
		}
	}
	if allowed != 40 {
		t.Errorf("%d of 40 /64s allowed, want 40 (one bucket each)", allowed)
	}
}

func TestAccountRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RateLimits.Account = RateLimit{Rate: 0.001, Burst: 3}
	})
	body := waBody("hi")
	signed := func() *http.Request {
		return webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)})
	}
	for i := range 2 {
		if rec := h.do(signed()); rec.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, body %s", i, rec.Code, rec.Body.String())
		}
	}
	// A forged request does not spend the account's budget.
	forged := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign("wrong", body)}))
	wantProblem(t, forged, http.StatusUnauthorized, schemas.ReasonInvalidSignature)
	if rec := h.do(signed()); rec.Code != http.StatusOK {
		t.Fatalf("third signed request: status %d, body %s", rec.Code, rec.Body.String())
	}
	rec := h.do(signed())
	wantProblem(t, rec, http.StatusTooManyRequests, schemas.ReasonRateLimited)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want an integer >= 1", rec.Header().Get("Retry-After"))
	}
}

func TestDeviceRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RateLimits.Device = RateLimit{Rate: 0.001, Burst: 2}
	})
	send := func(id string) *httptest.ResponseRecorder {
		t.Helper()
		body := []byte("[" + h.event(id) + "]")
		return h.do(h.syncRequest("application/json", body, h.token(h.claims())))
	}
	// A request with an invalid token does not spend the device's budget.
	bad := h.do(h.syncRequest("application/json", []byte("["+h.event("e0")+"]"), "not-a-token"))
	wantProblem(t, bad, http.StatusUnauthorized, schemas.ReasonInvalidToken)
	for i, id := range []string{"e1", "e2"} {
		if rec := send(id); rec.Code != http.StatusAccepted {
			t.Fatalf("request %d: status %d, body %s", i, rec.Code, rec.Body.String())
		}
	}
	rec := send("e3")
	wantProblem(t, rec, http.StatusTooManyRequests, schemas.ReasonRateLimited)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want an integer >= 1", rec.Header().Get("Retry-After"))
	}
}

func BenchmarkLimiterAllowParallel(b *testing.B) {
	l := newKeyedLimiter[netip.Addr](1e9, 1e9, 100_000)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
			i++
		}
	})
}
