package ingest

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

// Names of the limiters, used as the limiter label of the metrics.
const (
	limiterSource  = "source"
	limiterAccount = "account"
	limiterDevice  = "device"
)

// keyedLimiter is a set of token buckets, one per key, that holds at most
// maxKeys buckets. When it is full, a new key takes the bucket of the least
// recently used key.
//
// NOTE: an evicted key that comes back starts with a full bucket. Pure LRU
// keeps a key that sends often near the front, so pushing it out takes
// max_keys new keys between two of its requests. A flood that large does
// reset its bucket.
//
// Buckets live in one slice and form an intrusive doubly linked list by
// index, so a key costs one bucket (48 bytes for a netip.Addr key) plus one
// map entry, and the hot path allocates nothing.
type keyedLimiter[K comparable] struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	index   map[K]int32
	buckets []bucket[K]
	head    int32 // most recently used, -1 when empty
	tail    int32 // least recently used, -1 when empty
	maxKeys int

	size      atomic.Int64
	evictions atomic.Int64
}

type bucket[K comparable] struct {
	key        K
	tokens     float64
	last       int64 // Unix nanoseconds of the last refill
	prev, next int32
}

// newKeyedLimiter returns a limiter that refills rate tokens per second up
// to burst, for at most maxKeys keys.
func newKeyedLimiter[K comparable](rate float64, burst, maxKeys int) *keyedLimiter[K] {
	return &keyedLimiter[K]{
		rate:    rate,
		burst:   float64(burst),
		index:   make(map[K]int32),
		head:    -1,
		tail:    -1,
		maxKeys: maxKeys,
	}
}

// allow takes one token from the bucket of key at time now. When the
// bucket is empty it returns false and the time until a token is
// available.
func (l *keyedLimiter[K]) allow(key K, now time.Time) (bool, time.Duration) {
	ns := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()

	i, ok := l.index[key]
	if !ok {
		i = l.insert(key, ns)
	} else {
		l.moveToFront(i)
	}
	b := &l.buckets[i]

	// Refill for the time since the last call. A clock going backwards
	// adds nothing.
	if elapsed := ns - b.last; elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+float64(elapsed)*l.rate/1e9)
		b.last = ns
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / l.rate
	return false, time.Duration(math.Ceil(wait * 1e9))
}

// insert adds a full bucket for key at the front, taking the least
// recently used bucket when the limiter is full.
func (l *keyedLimiter[K]) insert(key K, ns int64) int32 {
	var i int32
	if len(l.buckets) < l.maxKeys {
		l.buckets = append(l.buckets, bucket[K]{})
		i = int32(len(l.buckets) - 1)
		l.size.Store(int64(len(l.buckets)))
	} else {
		i = l.tail
		l.unlink(i)
		delete(l.index, l.buckets[i].key)
		l.evictions.Add(1)
	}
	l.buckets[i] = bucket[K]{key: key, tokens: l.burst, last: ns, prev: -1, next: -1}
	l.index[key] = i
	l.pushFront(i)
	return i
}

func (l *keyedLimiter[K]) moveToFront(i int32) {
	if l.head == i {
		return
	}
	l.unlink(i)
	l.pushFront(i)
}

func (l *keyedLimiter[K]) unlink(i int32) {
	b := &l.buckets[i]
	if b.prev >= 0 {
		l.buckets[b.prev].next = b.next
	} else {
		l.head = b.next
	}
	if b.next >= 0 {
		l.buckets[b.next].prev = b.prev
	} else {
		l.tail = b.prev
	}
	b.prev, b.next = -1, -1
}

func (l *keyedLimiter[K]) pushFront(i int32) {
	b := &l.buckets[i]
	b.prev, b.next = -1, l.head
	if l.head >= 0 {
		l.buckets[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}

// len returns the number of keys held.
func (l *keyedLimiter[K]) len() int { return int(l.size.Load()) }

// rateLimiters are the limiters of one Server. A nil limiter is disabled.
type rateLimiters struct {
	source  *keyedLimiter[netip.Addr]
	account *keyedLimiter[string]
	device  *keyedLimiter[string]
	// inFlight counts the sync requests of each device being handled; nil
	// when device_in_flight is 0.
	inFlight *inFlightCounter
}

// inFlightCounter counts requests in progress per key, up to max each.
// A key leaves the map when its count falls to 0, so its size is bounded
// by the requests in progress.
type inFlightCounter struct {
	max   int
	mu    sync.Mutex
	count map[string]int
}

// enter counts one more request of key and reports whether it is within
// max. A request that gets false is not counted.
func (c *inFlightCounter) enter(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count[key] >= c.max {
		return false
	}
	c.count[key]++
	return true
}

// leave ends a request that enter admitted.
func (c *inFlightCounter) leave(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count[key] <= 1 {
		delete(c.count, key)
		return
	}
	c.count[key]--
}

func newRateLimiters(c RateLimitsConfig) rateLimiters {
	var l rateLimiters
	if c.Source.Rate > 0 {
		l.source = newKeyedLimiter[netip.Addr](c.Source.Rate, c.Source.Burst, c.MaxKeys)
	}
	if c.Account.Rate > 0 {
		l.account = newKeyedLimiter[string](c.Account.Rate, c.Account.Burst, c.MaxKeys)
	}
	if c.Device.Rate > 0 {
		l.device = newKeyedLimiter[string](c.Device.Rate, c.Device.Burst, c.MaxKeys)
	}
	if c.DeviceInFlight > 0 {
		l.inFlight = &inFlightCounter{max: c.DeviceInFlight, count: make(map[string]int)}
	}
	return l
}

// register adds the size, capacity and eviction metrics of each enabled
// limiter to reg.
func (l rateLimiters) register(reg prometheus.Registerer) error {
	type named struct {
		name            string
		size, evictions func() float64
		capacity        int
	}
	var all []named
	if l.source != nil {
		all = append(all, named{limiterSource, l.source.sizeMetric, l.source.evictionsMetric, l.source.maxKeys})
	}
	if l.account != nil {
		all = append(all, named{limiterAccount, l.account.sizeMetric, l.account.evictionsMetric, l.account.maxKeys})
	}
	if l.device != nil {
		all = append(all, named{limiterDevice, l.device.sizeMetric, l.device.evictionsMetric, l.device.maxKeys})
	}
	for _, n := range all {
		labels := prometheus.Labels{"limiter": n.name}
		capacity := float64(n.capacity)
		collectors := []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "syncguard_ingest_ratelimit_keys",
				Help:        "Keys that a rate limiter holds a token bucket for.",
				ConstLabels: labels,
			}, n.size),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "syncguard_ingest_ratelimit_keys_capacity",
				Help:        "Maximum number of keys of a rate limiter (ingest.rate_limits.max_keys).",
				ConstLabels: labels,
			}, func() float64 { return capacity }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "syncguard_ingest_ratelimit_evictions_total",
				Help:        "Token buckets of least recently used keys dropped because the limiter was full.",
				ConstLabels: labels,
			}, n.evictions),
		}
		for _, c := range collectors {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("register ingest rate limit metrics: %w", err)
			}
		}
	}
	return nil
}

func (l *keyedLimiter[K]) sizeMetric() float64      { return float64(l.size.Load()) }
func (l *keyedLimiter[K]) evictionsMetric() float64 { return float64(l.evictions.Load()) }

// admitAccounts rejects a webhook when any of accounts is blocked, or
// when key, the account of its record key, is over the account rate
// limit. Every account is checked against blocks, because the processors
// store each change under its own account, so a blocked account must not
// get through behind another one. Only key is rate limited, so that a
// body listing thousands of accounts cannot push every other bucket out
// of the limiter. It runs after the signature check, so that only holders
// of the app secret spend an account's budget.
func (s *Server) admitAccounts(x *exchange, key string, accounts []string) bool {
	now := time.Now()
	for _, id := range accounts {
		if s.blocks.blocked(schemas.ControlBlockAccount, id, now) {
			x.account = id
			s.fail(x, schemas.ReasonBlocked, "the account is blocked")
			return false
		}
	}
	if key == "" {
		return true
	}
	return s.admitLimit(x, s.limits.account, key, now, "too many requests for this account; retry later")
}

// admitDevice rejects a sync request for a blocked device, or one over the
// device rate limit. Call it after the token was verified and bound to
// device, so that only holders of the device's token spend its budget.
func (s *Server) admitDevice(x *exchange, device string) bool {
	now := time.Now()
	if s.blocks.blocked(schemas.ControlBlockDevice, device, now) {
		s.fail(x, schemas.ReasonBlocked, "the device is blocked")
		return false
	}
	return s.admitLimit(x, s.limits.device, device, now, "too many requests from this device; retry later")
}

// enterDevice admits a sync request of device while fewer than
// device_in_flight of its requests are in progress, and otherwise responds
// 429. When it returns true, the caller must call leaveDevice.
func (s *Server) enterDevice(x *exchange, device string) bool {
	if s.limits.inFlight == nil || s.limits.inFlight.enter(device) {
		return true
	}
	x.Header().Set("Retry-After", "1")
	s.fail(x, schemas.ReasonRateLimited, "too many requests from this device in progress; retry later")
	return false
}

// leaveDevice ends a request that enterDevice admitted.
func (s *Server) leaveDevice(device string) {
	if s.limits.inFlight != nil {
		s.limits.inFlight.leave(device)
	}
}

func (s *Server) admitLimit(x *exchange, l *keyedLimiter[string], key string, now time.Time, detail string) bool {
	if l == nil {
		return true
	}
	allowed, wait := l.allow(key, now)
	if !allowed {
		x.Header().Set("Retry-After", retryAfterSeconds(wait))
		s.fail(x, schemas.ReasonRateLimited, detail)
	}
	return allowed
}

// setupEdge builds the client address resolver, allowlists, rate limiters
// and blocklist of s, with their metrics.
func (s *Server) setupEdge(c Config, reg prometheus.Registerer) error {
	trusted, err := parsePrefixes("ingest.trusted_proxies", c.TrustedProxies)
	if err != nil {
		return err
	}
	s.resolver = addrResolver{trusted: trusted}
	if s.allow, err = newAllowlist(c.Allowlist); err != nil {
		return err
	}
	s.limits = newRateLimiters(c.RateLimits)
	if err := s.limits.register(reg); err != nil {
		return err
	}
	s.blocks = newBlocklist(c.Blocks.MaxEntries)
	if s.blockMetrics, err = newBlockMetrics(reg, s.blocks); err != nil {
		return err
	}
	s.forwardedMalformed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "syncguard_ingest_forwarded_for_malformed_total",
		Help: "Requests from a trusted proxy whose X-Forwarded-For did not parse; the proxy's address was used as the source.",
	})
	if err := reg.Register(s.forwardedMalformed); err != nil {
		return fmt.Errorf("register ingest metrics: %w", err)
	}
	s.controlLog.Interval = auditLogInterval
	return nil
}
