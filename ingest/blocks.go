package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// blockPruneInterval is how often expired blocks are dropped from memory.
// Lookups ignore expired blocks in between.
const blockPruneInterval = 10 * time.Second

// blockKinds lists the control record kinds that ingest enforces.
var blockKinds = []string{
	schemas.ControlBlockSource, schemas.ControlBlockDevice,
	schemas.ControlBlockAccount, schemas.ControlRevokeToken,
}

// blocklist is the set of active blocks. A block expires at its time, or
// never when the time is zero. It holds at most max entries over all
// kinds; blocks beyond that are not held and are counted as dropped.
type blocklist struct {
	mu      sync.RWMutex
	max     int
	sources map[netip.Prefix]time.Time
	// sourceLengths counts the source prefixes per prefix length, so that
	// a lookup masks the address once per length present.
	sourceLengths map[int]int
	byKind        map[string]map[string]time.Time // device, account, token

	dropped atomic.Int64
}

func newBlocklist(max int) *blocklist {
	b := &blocklist{
		max:           max,
		sources:       make(map[netip.Prefix]time.Time),
		sourceLengths: make(map[int]int),
		byKind:        make(map[string]map[string]time.Time, 3),
	}
	for _, k := range []string{schemas.ControlBlockDevice, schemas.ControlBlockAccount, schemas.ControlRevokeToken} {
		b.byKind[k] = make(map[string]time.Time)
	}
	return b
}

// errBadControlRecord marks a control record that ingest cannot apply.
var errBadControlRecord = errors.New("invalid control record")

// apply applies one record of the control topic at time now: a tombstone
// or an inactive or expired record lifts the block of its key, any other
// record sets it.
func (b *blocklist) apply(key, value []byte, now time.Time) error {
	kind, target, ok := strings.Cut(string(key), "/")
	if !ok || !knownBlockKind(kind) {
		return fmt.Errorf("%w: key %q is not <kind>/<value> with a known kind", errBadControlRecord, clip(string(key)))
	}
	if value == nil {
		return b.remove(kind, target)
	}
	var rec schemas.ControlRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return fmt.Errorf("%w: key %q: %w", errBadControlRecord, clip(string(key)), err)
	}
	if rec.Kind != kind || rec.Value != target {
		return fmt.Errorf("%w: key %q does not match kind %q and value %q", errBadControlRecord, clip(string(key)), clip(rec.Kind), clip(rec.Value))
	}
	if !rec.Active || (!rec.ExpiresAt.IsZero() && !rec.ExpiresAt.After(now)) {
		return b.remove(kind, target)
	}
	// The same checks as for publishing, so that a record written to the
	// topic by other means (an empty revocation, a non-canonical prefix)
	// is not enforced either.
	if err := ValidateControlRecord(rec); err != nil {
		return fmt.Errorf("%w: key %q: %w", errBadControlRecord, clip(string(key)), err)
	}
	return b.set(kind, target, rec.ExpiresAt)
}

func knownBlockKind(kind string) bool {
	for _, k := range blockKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// set adds or renews a block. A new block is dropped when the list is
// full; renewing one already held always works.
func (b *blocklist) set(kind, target string, expires time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if kind == schemas.ControlBlockSource {
		p, err := parsePrefix(target)
		if err != nil {
			return fmt.Errorf("%w: block_source: %w", errBadControlRecord, err)
		}
		if _, ok := b.sources[p]; !ok {
			if b.lenLocked() >= b.max {
				b.dropped.Add(1)
				return nil
			}
			b.sourceLengths[p.Bits()]++
		}
		b.sources[p] = expires
		return nil
	}
	m := b.byKind[kind]
	if _, ok := m[target]; !ok && b.lenLocked() >= b.max {
		b.dropped.Add(1)
		return nil
	}
	m[target] = expires
	return nil
}

func (b *blocklist) remove(kind, target string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if kind == schemas.ControlBlockSource {
		p, err := parsePrefix(target)
		if err != nil {
			return fmt.Errorf("%w: block_source: %w", errBadControlRecord, err)
		}
		b.removeSourceLocked(p)
		return nil
	}
	delete(b.byKind[kind], target)
	return nil
}

func (b *blocklist) removeSourceLocked(p netip.Prefix) {
	if _, ok := b.sources[p]; !ok {
		return
	}
	delete(b.sources, p)
	if b.sourceLengths[p.Bits()]--; b.sourceLengths[p.Bits()] == 0 {
		delete(b.sourceLengths, p.Bits())
	}
}

func (b *blocklist) lenLocked() int {
	n := len(b.sources)
	for _, m := range b.byKind {
		n += len(m)
	}
	return n
}

func active(expires, now time.Time) bool {
	return expires.IsZero() || expires.After(now)
}

// sourceBlocked reports whether an active block_source covers a.
func (b *blocklist) sourceBlocked(a netip.Addr, now time.Time) bool {
	a = a.Unmap()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if len(b.sources) == 0 {
		return false
	}
	for bits := range b.sourceLengths {
		if bits > a.BitLen() {
			continue
		}
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if exp, ok := b.sources[p]; ok && active(exp, now) {
			return true
		}
	}
	return false
}

// blocked reports whether an active block of kind (block_device,
// block_account or revoke_token) names target.
func (b *blocklist) blocked(kind, target string, now time.Time) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	exp, ok := b.byKind[kind][target]
	return ok && active(exp, now)
}

// prune drops the blocks that expired before now.
func (b *blocklist) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, exp := range b.sources {
		if !active(exp, now) {
			b.removeSourceLocked(p)
		}
	}
	for _, m := range b.byKind {
		for k, exp := range m {
			if !active(exp, now) {
				delete(m, k)
			}
		}
	}
}

// counts returns the number of blocks held per kind.
func (b *blocklist) counts() map[string]int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := map[string]int{schemas.ControlBlockSource: len(b.sources)}
	for k, m := range b.byKind {
		out[k] = len(m)
	}
	return out
}

// blockMetrics are the gauges and counters of the blocklist.
type blockMetrics struct {
	entries  *prometheus.GaugeVec
	capacity prometheus.Gauge
	dropped  prometheus.CounterFunc
	invalid  prometheus.Counter
}

func newBlockMetrics(reg prometheus.Registerer, list *blocklist) (*blockMetrics, error) {
	m := &blockMetrics{
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncguard_ingest_blocks",
			Help: "Blocks read from the control topic and held in memory, by kind; expired ones are dropped within 10s.",
		}, []string{"kind"}),
		capacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncguard_ingest_blocks_capacity",
			Help: "Maximum number of blocks held in memory over all kinds (ingest.blocks.max_entries).",
		}),
		dropped: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "syncguard_ingest_blocks_dropped_total",
			Help: "New blocks that were not enforced because the blocklist was full.",
		}, func() float64 { return float64(list.dropped.Load()) }),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncguard_ingest_control_records_invalid_total",
			Help: "Control topic records that ingest could not apply: unknown kind, bad key or value.",
		}),
	}
	m.capacity.Set(float64(list.max))
	for _, k := range blockKinds {
		m.entries.WithLabelValues(k).Set(0)
	}
	for _, c := range []prometheus.Collector{m.entries, m.capacity, m.dropped, m.invalid} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ingest block metrics: %w", err)
		}
	}
	return m, nil
}

// controlConsumerOpts are the options of the client that reads the control
// topic. It consumes without a group, so every ingest instance reads every
// partition from the start.
func controlConsumerOpts(topic string, maxWait time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(maxWait),
		// Detectors publish blocks inside transactions: a block of an
		// aborted transaction must not count, and the commit markers that
		// end each partition must be seen to know the end was reached.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}
}

// followControl reads the control topic from the start until ctx ends and
// applies each record to s.blocks. It sets s.blocksLoaded once every
// partition was read up to the end offset it had at the start.
func (s *Server) followControl(ctx context.Context, cl *kgo.Client) {
	var ends map[int32]int64
	for ends == nil {
		var err error
		if ends, err = kafkaclient.ReadEnds(ctx, kadm.NewClient(cl), s.controlTopic); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.controlLog.Do(func() { s.log.Warn("control topic not readable; retrying", "err", err) })
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	s.markLoadedIf(len(ends) == 0)

	lastPrune := time.Now()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		failed := false
		fetches.EachError(func(topic string, p int32, err error) {
			failed = true
			s.controlLog.Do(func() {
				s.log.Warn("fetching the control topic failed; retrying", "topic", topic, "partition", p, "err", err)
			})
		})
		if failed && fetches.NumRecords() == 0 {
			// Errors return at once, so wait before polling again.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := ends[r.Partition]; ok && r.Offset >= end-1 {
				delete(ends, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			if err := s.blocks.apply(r.Key, r.Value, now); err != nil {
				s.blockMetrics.invalid.Inc()
				s.controlLog.Do(func() {
					s.log.Warn("control record ignored", "partition", r.Partition, "offset", r.Offset, "err", err)
				})
			}
		})
		if now.Sub(lastPrune) >= blockPruneInterval {
			s.blocks.prune(now)
			lastPrune = now
		}
		for kind, n := range s.blocks.counts() {
			s.blockMetrics.entries.WithLabelValues(kind).Set(float64(n))
		}
		s.markLoadedIf(len(ends) == 0)
	}
}

func (s *Server) markLoadedIf(done bool) {
	if done && !s.blocksLoaded.Swap(true) {
		counts := s.blocks.counts()
		s.log.Info("control topic read to its end; blocks enforced",
			"block_source", counts[schemas.ControlBlockSource],
			"block_device", counts[schemas.ControlBlockDevice],
			"block_account", counts[schemas.ControlBlockAccount],
			"revoke_token", counts[schemas.ControlRevokeToken])
	}
}

// tokenRevoked reports whether a revoke_token record currently names the
// token id jti. Tokens without a jti are never revoked.
func (s *Server) tokenRevoked(jti string) bool {
	return jti != "" && s.blocks.blocked(schemas.ControlRevokeToken, jti, time.Now())
}

// ValidateControlRecord checks that rec is a control record that ingest
// can enforce: a known kind, a value of that kind (an IP address or CIDR
// prefix for block_source) and a reason.
func ValidateControlRecord(rec schemas.ControlRecord) error {
	if !knownBlockKind(rec.Kind) {
		return fmt.Errorf("kind %q: must be one of %s", rec.Kind, strings.Join(blockKinds, ", "))
	}
	switch rec.Kind {
	case schemas.ControlBlockSource:
		p, err := parsePrefix(rec.Value)
		if err != nil {
			return fmt.Errorf("value: %w", err)
		}
		// The record key is the value as written, so only one spelling of
		// a prefix may exist: otherwise removing 127.0.0.8/30 would leave
		// a block written as 127.0.0.9/30 in the compacted topic.
		canonical := p.Masked().String()
		if p.IsSingleIP() {
			canonical = p.Addr().String()
		}
		if rec.Value != canonical {
			return fmt.Errorf("value: write %q as %q", rec.Value, canonical)
		}
		if min := minBlockPrefix(p); p.Bits() < min {
			return fmt.Errorf("value: %q blocks too many addresses; the shortest prefix allowed is /%d", rec.Value, min)
		}
	case schemas.ControlRevokeToken:
		if rec.Value == "" || len(rec.Value) > maxKeyIDLen || strings.ContainsAny(rec.Value, " \t\r\n") {
			return fmt.Errorf("value: a token id must be 1 to %d characters without white space", maxKeyIDLen)
		}
	default:
		if !validID(rec.Value, maxIDLen) {
			return fmt.Errorf("value: %q must be 1 to %d characters of A-Z a-z 0-9 . _ : -", rec.Value, maxIDLen)
		}
	}
	return nil
}

// PublishControl produces rec to the control topic, keyed by
// schemas.ControlKey, and waits until every in-sync replica acknowledged
// it. A record with Active false lifts the block of the same kind and
// value.
func PublishControl(ctx context.Context, kafka kafkaclient.Config, rec schemas.ControlRecord) error {
	if err := ValidateControlRecord(rec); err != nil {
		return err
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode control record: %w", err)
	}
	cl, err := kafka.NewClient(kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	topic := kafka.Topic(schemas.TopicControl)
	r := &kgo.Record{Topic: topic, Key: []byte(schemas.ControlKey(rec.Kind, rec.Value)), Value: value}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("produce control record to %s: %w", topic, err)
	}
	return nil
}

// ListControl reads the control topic to its end and returns the blocks
// active at now, the latest record per key.
func ListControl(ctx context.Context, kafka kafkaclient.Config, now time.Time) ([]schemas.ControlRecord, error) {
	topic := kafka.Topic(schemas.TopicControl)
	cl, err := kafka.NewClient(controlConsumerOpts(topic, 500*time.Millisecond)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kafkaclient.ReadEnds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return nil, err
	}

	// Keep the latest record per key, in the order keys first appear.
	latest := make(map[string]*schemas.ControlRecord)
	var order []string
	for len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s to its end: %w", topic, err)
		}
		if err := fetches.Err0(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := ends[r.Partition]; ok && r.Offset >= end-1 {
				delete(ends, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			key := string(r.Key)
			if _, seen := latest[key]; !seen {
				order = append(order, key)
			}
			if r.Value == nil {
				latest[key] = nil
				return
			}
			// Only records that ingest would enforce are listed.
			var rec schemas.ControlRecord
			if json.Unmarshal(r.Value, &rec) != nil || schemas.ControlKey(rec.Kind, rec.Value) != key || ValidateControlRecord(rec) != nil {
				latest[key] = nil
				return
			}
			latest[key] = &rec
		})
	}

	var out []schemas.ControlRecord
	for _, key := range order {
		rec := latest[key]
		if rec != nil && rec.Active && active(rec.ExpiresAt, now) {
			out = append(out, *rec)
		}
	}
	return out, nil
}

// minBlockPrefix is the shortest prefix a source block may have: /8 for
// IPv4 and /32 for IPv6, so that one mistyped block cannot shut out every
// client.
func minBlockPrefix(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 8
	}
	return 32
}
