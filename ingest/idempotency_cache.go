package ingest

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cacheKey is the first 128 bits of the SHA-256 of an entry's identity.
// Hashing bounds the memory of an entry whatever the length of the
// identifiers, and 128 bits make an accidental collision negligible.
type cacheKey [16]byte

// keyOf hashes parts, each followed by a NUL byte so that the boundaries
// between parts cannot shift.
func keyOf(parts ...string) cacheKey {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	var k cacheKey
	copy(k[:], h.Sum(sum[:0]))
	return k
}

// ttlCache is a bounded map whose entries live for one fixed TTL. Because
// every entry gets the same TTL, insertion order is expiry order, and a
// FIFO queue finds the expired entries without scanning.
type ttlCache[V any] struct {
	ttl time.Duration
	max int
	// evictLive selects what add does when the cache is full of live
	// entries: drop the oldest (true), or reject the new entry (false).
	evictLive bool

	mu      sync.Mutex
	entries map[cacheKey]ttlEntry[V]
	// queue is a ring of keys with their expiry in insertion order: head
	// is the oldest and count the number queued. It grows by doubling up
	// to max.
	queue []queued
	head  int
	count int
}

type ttlEntry[V any] struct {
	expires int64 // Unix nanoseconds
	value   V
}

type queued struct {
	key     cacheKey
	expires int64
}

func newTTLCache[V any](ttl time.Duration, max int, evictLive bool) *ttlCache[V] {
	return &ttlCache[V]{
		ttl:       ttl,
		max:       max,
		evictLive: evictLive,
		entries:   make(map[cacheKey]ttlEntry[V]),
		queue:     make([]queued, min(max, 1024)),
	}
}

// get returns the live value of k.
func (c *ttlCache[V]) get(k cacheKey, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || e.expires <= now.UnixNano() {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Results of ttlCache.add.
const (
	cacheAdded   = iota // k was absent or expired and now holds the value
	cachePresent        // k holds a live value, left unchanged
	cacheFull           // the cache is full of live entries; nothing changed
)

// add stores v under k unless k holds a live value: an atomic
// set-if-absent.
func (c *ttlCache[V]) add(k cacheKey, v V, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := now.UnixNano()
	c.expireLocked(t)
	if e, ok := c.entries[k]; ok && e.expires > t {
		return cachePresent
	}
	if c.count >= c.max {
		if !c.evictLive {
			return cacheFull
		}
		c.popLocked()
	}
	e := ttlEntry[V]{expires: t + int64(c.ttl), value: v}
	c.entries[k] = e
	c.pushLocked(queued{key: k, expires: e.expires})
	return cacheAdded
}

// len returns the number of entries.
func (c *ttlCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// expireLocked removes the expired entries at the head of the queue.
func (c *ttlCache[V]) expireLocked(now int64) {
	for c.count > 0 && c.queue[c.head].expires <= now {
		c.popLocked()
	}
}

// popLocked dequeues the oldest slot and deletes its entry, unless the
// entry was rewritten after the slot was queued: an expired entry can be
// written again before its slot reaches the head, and then the newer slot
// owns it.
func (c *ttlCache[V]) popLocked() {
	q := c.queue[c.head]
	c.queue[c.head] = queued{}
	c.head = (c.head + 1) % len(c.queue)
	c.count--
	if e, ok := c.entries[q.key]; ok && e.expires == q.expires {
		delete(c.entries, q.key)
	}
}

// pushLocked queues q as the newest slot, growing the ring when needed.
func (c *ttlCache[V]) pushLocked(q queued) {
	if c.count == len(c.queue) {
		grown := make([]queued, min(2*len(c.queue), c.max))
		if len(grown) <= c.count {
			panic("BUG: ttlCache queue is full below its maximum")
		}
		for i := 0; i < c.count; i++ {
			grown[i] = c.queue[(c.head+i)%len(c.queue)]
		}
		c.queue, c.head = grown, 0
	}
	c.queue[(c.head+c.count)%len(c.queue)] = q
	c.count++
}
