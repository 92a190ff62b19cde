package ingest

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// postBatch posts events as a JSON array for testDevice.
func (h *harness) postBatch(events ...string) (int, batchResponse) {
	h.t.Helper()
	rec := h.do(h.syncRequest("application/json", []byte("["+strings.Join(events, ",")+"]"), h.token(h.claims())))
	if rec.Code != http.StatusAccepted && rec.Code != http.StatusUnprocessableEntity {
		h.t.Fatalf("status = %d; body %s", rec.Code, rec.Body.String())
	}
	return rec.Code, batchResponseOf(h.t, rec)
}

type wantResult struct {
	status   string
	replayed bool
	origReq  string
}

func checkResults(t *testing.T, got batchResponse, want ...wantResult) {
	t.Helper()
	if len(got.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got.Results), len(want), got)
	}
	for i, w := range want {
		r := got.Results[i]
		if r.Index != i || r.Status != w.status || r.Replayed != w.replayed || r.OriginalRequestID != w.origReq {
			t.Errorf("result %d = %+v, want %+v", i, r, w)
		}
	}
}

func TestSyncEventReplay(t *testing.T) {
	h := newHarness(t, nil)
	a, b, c := h.event("evt-a"), h.event("evt-b"), h.event("evt-c")

	_, first := h.postBatch(a, b)
	checkResults(t, first, wantResult{status: eventAccepted}, wantResult{status: eventAccepted})

	// A replay of a with a new event: a keeps its original result.
	_, second := h.postBatch(a, c)
	checkResults(t, second,
		wantResult{status: eventAccepted, replayed: true, origReq: first.RequestID},
		wantResult{status: eventAccepted})
	if second.Accepted != 2 || second.Rejected != 0 {
		t.Errorf("second batch: accepted %d, rejected %d", second.Accepted, second.Rejected)
	}

	// A batch of replays alone is still accepted, not 422.
	code, third := h.postBatch(b, a)
	if code != http.StatusAccepted {
		t.Errorf("replay-only batch: status = %d, want 202", code)
	}
	checkResults(t, third,
		wantResult{status: eventAccepted, replayed: true, origReq: first.RequestID},
		wantResult{status: eventAccepted, replayed: true, origReq: first.RequestID})

	// A duplicate within one batch stays a duplicate, and an invalid
	// event is rejected before the cache is asked.
	_, fourth := h.postBatch(c, c, `{"event_id":"evt-a"}`)
	checkResults(t, fourth,
		wantResult{status: eventAccepted, replayed: true, origReq: second.RequestID},
		wantResult{status: eventRejected},
		wantResult{status: eventRejected})
	if fourth.Results[1].Error.Code != schemas.ReasonDuplicate || fourth.Results[2].Error.Code != schemas.ReasonInvalidEvent {
		t.Errorf("fourth batch errors: %+v, %+v", fourth.Results[1].Error, fourth.Results[2].Error)
	}

	if got := len(h.records(schemas.TopicRaw)); got != 3 {
		t.Errorf("%d raw records, want 3 (a, b, c once each)", got)
	}
	audit := h.auditEvents(4)
	details := make(map[string]bool, len(audit))
	for _, ev := range audit {
		details[ev.RequestID+" "+ev.Detail] = true
	}
	for _, want := range []string{
		first.RequestID + " accepted=2 rejected=0",
		second.RequestID + " accepted=2 rejected=0 replayed=1",
		third.RequestID + " accepted=2 rejected=0 replayed=2",
	} {
		if !details[want] {
			t.Errorf("no audit event with request and detail %q", want)
		}
	}
	if got := gaugeValue(t, h, "syncguard_ingest_sync_idempotency_cache_entries"); got != 3 {
		t.Errorf("idempotency gauge = %v, want 3", got)
	}
}

// TestSyncEventReplayPerDevice checks that event ids are keys per device.
func TestSyncEventReplayPerDevice(t *testing.T) {
	h := newHarness(t, nil)
	h.postBatch(h.event("evt-a"))

	const other = "dev-43"
	c := h.claims()
	c["device_id"] = other
	ev := strings.Replace(h.event("evt-a"), `"device_id":"`+testDevice+`"`, `"device_id":"`+other+`"`, 1)
	req := h.syncRequest("application/json", []byte("["+ev+"]"), h.token(c))
	req.Header.Set("X-Device-ID", other)
	rec := h.do(req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body.String())
	}
	checkResults(t, batchResponseOf(t, rec), wantResult{status: eventAccepted})
	if got := len(h.records(schemas.TopicRaw)); got != 2 {
		t.Errorf("%d raw records, want 2", got)
	}
}

// TestSyncRejectedBatchIsNotRemembered reproduces A24's follow-up: events
// of a rejected request were not stored, so they are new next time.
func TestSyncRejectedBatchIsNotRemembered(t *testing.T) {
	h := newHarness(t, nil)
	line1 := h.event("evt-1")
	huge := `{"event_id":"evt-2","pad":"` + strings.Repeat("x", 2<<20) + `"}`
	body := line1 + "\n" + huge + "\n" + h.event("evt-3") + "\n"
	rec := h.do(h.syncRequest("application/x-ndjson", []byte(body), h.token(h.claims())))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge middle line: status = %d, want 413", rec.Code)
	}
	rec = h.do(h.syncRequest("application/x-ndjson", []byte(line1+"\n"), h.token(h.claims())))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("line 1 alone: status = %d; body %s", rec.Code, rec.Body.String())
	}
	checkResults(t, batchResponseOf(t, rec), wantResult{status: eventAccepted})
	if got := len(h.records(schemas.TopicRaw)); got != 1 {
		t.Errorf("%d raw records, want 1", got)
	}
}

// TestSyncReplayWindow checks how long a replay is remembered: at most
// 24 hours, and never past sync_max_event_age, after which the event is
// out of its window anyway.
func TestSyncReplayWindow(t *testing.T) {
	t.Run("forgotten after 24h", func(t *testing.T) {
		h := newHarness(t, nil)
		ev := h.event("evt-a")
		h.postBatch(ev)
		h.advance(maxIdempotencyTTL - time.Second)
		_, resp := h.postBatch(ev)
		if !resp.Results[0].Replayed {
			t.Fatalf("replay just under 24h: %+v", resp.Results[0])
		}
		h.advance(time.Second)
		_, resp = h.postBatch(ev)
		checkResults(t, resp, wantResult{status: eventAccepted})
		if got := len(h.records(schemas.TopicRaw)); got != 2 {
			t.Errorf("%d raw records, want 2", got)
		}
	})
	t.Run("out of window before it is forgotten", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.SyncMaxEventAge = time.Hour })
		ev := h.event("evt-a")
		h.postBatch(ev)
		h.advance(time.Hour)
		code, resp := h.postBatch(ev)
		if code != http.StatusUnprocessableEntity || resp.Results[0].Error == nil || resp.Results[0].Error.Code != schemas.ReasonEventOutOfWindow {
			t.Fatalf("status %d, result %+v; want 422 event_out_of_window", code, resp.Results[0])
		}
	})
}

func TestTTLCache(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	k := func(i int) cacheKey { return keyOf("dev", strconv.Itoa(i)) }

	t.Run("set if absent and expiry", func(t *testing.T) {
		c := newTTLCache[int](time.Minute, 10, false)
		if got := c.add(k(1), 1, t0); got != cacheAdded {
			t.Fatalf("add = %d", got)
		}
		if got := c.add(k(1), 2, t0.Add(59*time.Second)); got != cachePresent {
			t.Fatalf("second add = %d, want present", got)
		}
		if v, ok := c.get(k(1), t0.Add(59*time.Second)); !ok || v != 1 {
			t.Fatalf("get = %d, %v", v, ok)
		}
		if _, ok := c.get(k(1), t0.Add(time.Minute)); ok {
			t.Fatal("entry alive at its expiry")
		}
		if got := c.add(k(1), 3, t0.Add(time.Minute)); got != cacheAdded {
			t.Fatalf("add after expiry = %d", got)
		}
		if c.len() != 1 {
			t.Fatalf("len = %d, want 1", c.len())
		}
	})
	t.Run("full refuses", func(t *testing.T) {
		c := newTTLCache[int](time.Minute, 3, false)
		for i := range 3 {
			c.add(k(i), i, t0)
		}
		if got := c.add(k(9), 9, t0.Add(time.Second)); got != cacheFull {
			t.Fatalf("add to a full cache = %d, want full", got)
		}
		if _, ok := c.get(k(0), t0.Add(time.Second)); !ok {
			t.Fatal("a live entry was dropped")
		}
		if got := c.add(k(9), 9, t0.Add(time.Minute)); got != cacheAdded || c.len() != 1 {
			t.Fatalf("add after expiry = %d, len %d", got, c.len())
		}
	})
	t.Run("full evicts the oldest", func(t *testing.T) {
		c := newTTLCache[int](time.Hour, 3, true)
		for i := range 5 {
			if got := c.add(k(i), i, t0.Add(time.Duration(i)*time.Second)); got != cacheAdded {
				t.Fatalf("add %d = %d", i, got)
			}
		}
		now := t0.Add(10 * time.Second)
		for i := range 5 {
			_, ok := c.get(k(i), now)
			if ok != (i >= 2) {
				t.Errorf("entry %d present = %v", i, ok)
			}
		}
	})
	t.Run("re-added key keeps its new slot", func(t *testing.T) {
		c := newTTLCache[int](time.Minute, 100, false)
		c.add(k(1), 1, t0)
		c.add(k(2), 2, t0.Add(30*time.Second))
		// k(1) expired but its slot is still queued behind nothing older.
		if _, ok := c.get(k(1), t0.Add(61*time.Second)); ok {
			t.Fatal("k(1) alive after expiry")
		}
		c.add(k(1), 10, t0.Add(61*time.Second))
		// Expiring k(2) must not drop the new k(1).
		c.add(k(3), 3, t0.Add(95*time.Second))
		if v, ok := c.get(k(1), t0.Add(95*time.Second)); !ok || v != 10 {
			t.Fatalf("k(1) = %d, %v after k(2) expired", v, ok)
		}
	})
	t.Run("grows past its first ring", func(t *testing.T) {
		const n = 3000
		c := newTTLCache[int](time.Minute, n, false)
		for i := range n {
			if got := c.add(k(i), i, t0); got != cacheAdded {
				t.Fatalf("add %d = %d", i, got)
			}
		}
		if c.len() != n {
			t.Fatalf("len = %d", c.len())
		}
		if got := c.add(k(n), n, t0); got != cacheFull {
			t.Fatalf("add past max = %d", got)
		}
		// All expire together; the next add clears them.
		if got := c.add(k(n), n, t0.Add(time.Minute)); got != cacheAdded || c.len() != 1 {
			t.Fatalf("after expiry: add = %d, len = %d", got, c.len())
		}
	})
}

func TestKeyOfSeparatesParts(t *testing.T) {
	if keyOf("ab", "c") == keyOf("a", "bc") {
		t.Fatal("keyOf does not separate its parts")
	}
	first, second := keyOf("a", "b"), keyOf("a", "b")
	if first != second {
		t.Fatal("keyOf is not deterministic")
	}
}

// TestTTLCacheConcurrentAdd checks that set-if-absent holds under
// concurrent adds of the same key: exactly one wins.
func TestTTLCacheConcurrentAdd(t *testing.T) {
	c := newTTLCache[int](time.Minute, 1000, false)
	now := time.Unix(1_700_000_000, 0)
	var added atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if c.add(keyOf("dev", "jti-1"), g, now) == cacheAdded {
					added.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := added.Load(); got != 1 {
		t.Fatalf("%d adds won, want 1", got)
	}
}

// TestSyncEventReplayAcrossInstances checks that an event stored through
// one instance is reported as a replay by another, on the in-process Kafka
// and on the real broker.
func TestSyncEventReplayAcrossInstances(t *testing.T) {
	h := newHarness(t, nil)
	checkEventReplayAcrossInstances(t, h, secondInstance(t, h))
}

func TestIntegrationSyncEventReplayAcrossInstances(t *testing.T) {
	kcfg := testKafkaConfig()
	kcfg.Brokers = testenv.KafkaBrokers(t)
	testenv.CreateTopics(t, kcfg)
	keys := newTestKeys(t)
	h := newHarnessOn(t, realBrokerConfig(keys), kcfg, keys)
	checkEventReplayAcrossInstances(t, h, secondInstance(t, h))
}

func checkEventReplayAcrossInstances(t *testing.T, a, b *harness) {
	ev := a.event("evt-" + newID())
	_, first := a.postBatch(ev)
	checkResults(t, first, wantResult{status: eventAccepted})

	// Instance B learns the event from the replay topic.
	waitFor(t, "instance B to learn the stored event", func() bool {
		return gaugeValue(t, b, "syncguard_ingest_sync_idempotency_cache_entries") == 1
	})
	_, again := b.postBatch(ev)
	checkResults(t, again, wantResult{status: eventAccepted, replayed: true, origReq: first.RequestID})
	if got := len(a.records(schemas.TopicRaw)); got != 1 {
		t.Errorf("%d raw records, want 1: the replay to instance B was produced again", got)
	}
}
