package detectors

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// maxOpenWindows bounds the windows one key keeps open at once. A window
// stays open until the watermark passes its end, so a key has more than two
// open windows only when partitions or clocks disagree by more than a
// window. The oldest window is then closed early, and later events for it
// are dropped as late.
const maxOpenWindows = 4

// maxClockSkew is how far ahead of the local clock an event time may move
// the watermark. Without the bound, one event stamped by a clock that runs
// an hour fast would close every window and blind the rules for an hour.
// The event still counts in its own window.
const maxClockSkew = time.Minute

// maxKeyBytes bounds the size of a key, which can come from a client (a
// device id). Longer keys keep a prefix and a hash of the whole key, so
// that they stay distinct.
const maxKeyBytes = 128

// maxHistory caps the count of closed windows behind a baseline. Only the
// comparison with volume.min_baseline_windows reads it.
const maxHistory = 1 << 30

// windowStart returns the start of the window of the given size that
// contains t. Both are Unix nanoseconds; t may be negative.
func windowStart(t, size int64) int64 {
	offset := t % size
	if offset < 0 {
		offset += size
	}
	return t - offset
}

// boundKey returns key unchanged when it is short enough, and otherwise a
// prefix of it, cut at a character boundary, followed by "~" and 16 hex
// digits of its SHA-256.
func boundKey(key string) string {
	if len(key) <= maxKeyBytes {
		return key
	}
	cut := maxKeyBytes - 17
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	sum := sha256.Sum256([]byte(key))
	return key[:cut] + "~" + hex.EncodeToString(sum[:8])
}

// window is the count of one key in one tumbling window. Times are Unix
// nanoseconds.
type window struct {
	start int64
	count int64
	first int64 // earliest counted event time
	last  int64 // latest counted event time
	// raised is the highest severity raised for this window, and suppressed
	// the highest one the cooldown held back, so that each is judged once.
	raised     severity
	suppressed severity
}

func (w *window) add(at int64) {
	if w.count == 0 || at < w.first {
		w.first = at
	}
	if w.count == 0 || at > w.last {
		w.last = at
	}
	w.count++
}

// entry is the state of one key of one rule: its open windows, its
// baseline and its cooldown. Entries form a doubly linked list in order of
// their last update, for eviction.
type entry struct {
	key     string
	windows []window // open windows, sorted by start
	// baseline is the exponentially weighted moving average of the counts
	// of the closed windows, empty windows included.
	baseline float64
	// history is the number of closed windows folded into baseline.
	history int
	// lastClosed is the start of the newest closed window; it is valid
	// when history > 0.
	lastClosed int64
	cooldown   cooldown
	prev, next *entry
}

// table holds the entries of one rule, at most maxKeys of them. When it is
// full, a new key evicts the key updated least recently.
type table struct {
	size    int64 // window size in nanoseconds
	alpha   float64
	maxKeys int
	entries map[string]*entry
	// lru is the sentinel of a circular list: lru.next is the entry updated
	// most recently and lru.prev the one updated least recently.
	lru       entry
	keys      prometheus.Gauge
	evictions prometheus.Counter
}

func newTable(size time.Duration, alpha float64, maxKeys int, keys prometheus.Gauge, evictions prometheus.Counter) *table {
	t := &table{
		size:      int64(size),
		alpha:     alpha,
		maxKeys:   maxKeys,
		keys:      keys,
		evictions: evictions,
	}
	t.reset()
	return t
}

// reset drops every entry.
func (t *table) reset() {
	t.entries = make(map[string]*entry)
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	t.keys.Set(0)
}

// touch returns the entry of key and marks it updated most recently. A new
// key evicts the entry updated least recently when the table is full.
func (t *table) touch(key string) *entry {
	if e, ok := t.entries[key]; ok {
		t.unlink(e)
		t.pushFront(e)
		return e
	}

	if len(t.entries) >= t.maxKeys {
		oldest := t.lru.prev
		t.unlink(oldest)
		delete(t.entries, oldest.key)
		t.evictions.Inc()
	}

	e := &entry{key: key}
	t.entries[key] = e
	t.pushFront(e)
	t.keys.Set(float64(len(t.entries)))
	return e
}

func (t *table) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (t *table) pushFront(e *entry) {
	e.prev = &t.lru
	e.next = t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

// window returns the open window of e that starts at start, opening it when
// needed. It returns nil when e has already closed that window, which makes
// the event late for this key.
func (t *table) window(e *entry, start int64) *window {
	if e.history > 0 && start <= e.lastClosed {
		return nil
	}

	i := 0
	for i < len(e.windows) && e.windows[i].start < start {
		i++
	}
	if i < len(e.windows) && e.windows[i].start == start {
		return &e.windows[i]
	}

	if len(e.windows) == maxOpenWindows {
		// Make room by closing the oldest window, unless the new window
		// would be older still.
		if i == 0 {
			return nil
		}
		t.fold(e, e.windows[0])
		e.windows = slices.Delete(e.windows, 0, 1)
		i--
	}
	e.windows = slices.Insert(e.windows, i, window{start: start})
	return &e.windows[i]
}

// closeUpTo closes every window that ends at or before watermark and folds
// its count into the key's baseline. It visits every entry, so callers run
// it once per window boundary the watermark crosses, not per event.
func (t *table) closeUpTo(watermark int64) {
	for _, e := range t.entries {
		n := 0
		for n < len(e.windows) && e.windows[n].start+t.size <= watermark {
			t.fold(e, e.windows[n])
			n++
		}
		switch {
		case n == len(e.windows):
			e.windows = nil
		case n > 0:
			e.windows = slices.Delete(e.windows, 0, n)
		}
	}
}

// fold adds the count of a closed window to the baseline of e. Windows in
// which the key had no events count as zero, so a key that went quiet has a
// low baseline when it comes back.
func (t *table) fold(e *entry, w window) {
	count := float64(w.count)
	if e.history == 0 {
		e.baseline = count
	} else {
		if empty := (w.start-e.lastClosed)/t.size - 1; empty > 0 {
			e.baseline *= math.Pow(1-t.alpha, float64(empty))
			e.history = int(min(int64(e.history)+empty, maxHistory))
		}
		e.baseline = t.alpha*count + (1-t.alpha)*e.baseline
	}
	e.history = min(e.history+1, maxHistory)
	e.lastClosed = w.start
}

// watermark tracks event-time progress per Kafka partition. Its value is the
// smallest newest event time among the partitions that are still
// delivering, minus the allowed lateness, so that a partition read behind
// the others does not see its events dropped as late. A partition that
// delivered nothing for idleAfter of wall-clock time stops holding the
// watermark back. When every partition is idle, the newest event time of
// all of them counts. The value never moves back, except on reset.
type watermark struct {
	lateness  int64
	idleAfter int64
	streams   map[int32]*stream
	// current is the watermark in Unix nanoseconds, math.MinInt64 until
	// the first event.
	current int64
}

// stream is the progress of one partition, in Unix nanoseconds.
type stream struct {
	newest    int64 // newest event time, math.MinInt64 before the first event
	delivered int64 // wall-clock time of the last event, or of assignment
}

func newWatermark(lateness time.Duration) watermark {
	return watermark{
		lateness:  int64(lateness),
		idleAfter: int64(max(lateness, time.Second)),
		streams:   make(map[int32]*stream),
		current:   math.MinInt64,
	}
}

// track registers an assigned partition before it delivers, so that it
// holds the watermark back from the start.
func (w *watermark) track(partition int32, now int64) {
	if _, ok := w.streams[partition]; !ok {
		w.streams[partition] = &stream{newest: math.MinInt64, delivered: now}
	}
}

func (w *watermark) forget(partition int32) {
	delete(w.streams, partition)
}

// reset clears all progress but keeps the tracked partitions.
func (w *watermark) reset(now int64) {
	for _, s := range w.streams {
		s.newest, s.delivered = math.MinInt64, now
	}
	w.current = math.MinInt64
}

// observe records an event of partition at event time t.
func (w *watermark) observe(partition int32, t, now int64) {
	s, ok := w.streams[partition]
	if !ok {
		s = &stream{newest: math.MinInt64}
		w.streams[partition] = s
	}
	s.delivered = now
	s.newest = max(s.newest, min(t, now+int64(maxClockSkew)))
	w.advance(now)
}

func (w *watermark) advance(now int64) {
	low, high := int64(math.MaxInt64), int64(math.MinInt64)
	active := false
	for _, s := range w.streams {
		high = max(high, s.newest)
		if now-s.delivered > w.idleAfter {
			continue
		}
		active = true
		low = min(low, s.newest)
	}
	if !active {
		low = high
	}
	if low == math.MinInt64 {
		return
	}
	w.current = max(w.current, low-w.lateness)
}
