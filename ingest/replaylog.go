package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Claim outcomes of replayLog.claim.
const (
	claimFresh  = iota // the caller holds the claim
	claimReplay        // an earlier claim holds the key
	claimFull          // too many live claims to decide
)

// errClaimLogBehind means the claim was written but the follower did not
// read up to it in time, so whether it came first is unknown.
var errClaimLogBehind = errors.New("the replay log follower did not reach the claim in time")

// replayLog is a set-if-absent store that every ingest instance shares,
// built on the replay topic. It also carries the sync events each
// instance stored, so that every instance can report a replay.
//
// A claim is a record keyed by the hashed identity. The topic's
// partitioner sends every claim of one key to the same partition, where
// Kafka orders them. Each instance reads every
// partition, so after it has read past its own record it knows every
// claim of that key that came before, and the lowest offset wins. Two
// instances racing on one key thus agree on the winner without any other
// coordination.
//
// Claims live for ttl after their writer's clock. The topic deletes its
// records after an hour, which must stay longer than ttl plus the clock
// skew between instances.
type replayLog struct {
	topic string
	// macKey authenticates the records, so that a writer to the topic
	// without the envelope key can neither clear claims nor mark events
	// stored.
	macKey   []byte
	producer *kgo.Client
	seen     *ttlCache[claimRef]
	now      func() time.Time
	wait     prometheus.Observer
	// accepted learns the events that any instance stored.
	accepted func(k cacheKey, requestID string, at time.Time)
	// publishFailed counts accepted-event records Kafka did not take.
	publishFailed func(error)
	// invalid counts records dropped for a bad MAC, format or time.
	invalid func()

	mu sync.Mutex
	// next is the offset after the last record read, per partition.
	next map[int32]int64
	// advanced is closed and replaced whenever next moves.
	advanced chan struct{}
	// started is closed once the follower's start offsets are fixed.
	// Claims wait for it: a claim written before would be skipped.
	started     chan struct{}
	startedOnce sync.Once
}

// claimRef is the position of a key's first live claim in the topic.
type claimRef struct {
	partition int32
	offset    int64
}

// The first byte of a replay record's value names its kind and format, so
// that the format can change without older followers misreading it.
const (
	// claimRecordVersion: a DPoP proof claim, keyed by the hashed (jkt,
	// jti), whose value holds the claim time.
	claimRecordVersion = 1
	// acceptedRecordVersion: the sync events one request stored, keyed by
	// the request id, whose value holds the time, the request id and the
	// hashed (device, event_id) of each event.
	acceptedRecordVersion = 2
)

// claimBodyLen is the length of the version byte and the claim's Unix time
// in nanoseconds. A record's value is its body followed by the MAC.
const claimBodyLen = 1 + 8

// replayMACLen is the length of the HMAC-SHA256 tag that ends every value.
const replayMACLen = sha256.Size

// replayMACLabel derives the replay records' MAC key from the envelope
// key, apart from the raw records' keys.
const replayMACLabel = "syncguard replay record mac v1"

func newReplayLog(topic string, producer *kgo.Client, envelopeKey []byte, ttl time.Duration, max int, now func() time.Time, wait prometheus.Observer) *replayLog {
	m := hmac.New(sha256.New, envelopeKey)
	m.Write([]byte(replayMACLabel))
	return &replayLog{
		topic:    topic,
		macKey:   m.Sum(nil),
		producer: producer,
		seen:     newTTLCache[claimRef](ttl, max, false),
		now:      now,
		wait:     wait,
		next:     make(map[int32]int64),
		advanced: make(chan struct{}),
		started:  make(chan struct{}),
	}
}

// claim reports whether k was unclaimed, and claims it if so. It fails
// closed: an error means the outcome is unknown, so the caller must reject
// the request. ctx bounds the produce and the wait for the follower.
func (l *replayLog) claim(ctx context.Context, k cacheKey) (int, error) {
	now := l.now()
	// A key this instance has already read is a replay without a round
	// trip.
	if _, ok := l.seen.get(k, now); ok {
		return claimReplay, nil
	}
	body := make([]byte, claimBodyLen)
	body[0] = claimRecordVersion
	binary.BigEndian.PutUint64(body[1:], uint64(now.UnixNano()))
	rec := &kgo.Record{Topic: l.topic, Key: append([]byte(nil), k[:]...)}
	rec.Value = l.seal(rec.Key, body)

	start := time.Now()
	select {
	case <-l.started:
	case <-ctx.Done():
		return 0, errors.New("the replay log follower has not started")
	}
	if err := produceWithin(ctx, l.producer, rec); err != nil {
		return 0, fmt.Errorf("write the claim: %w", err)
	}
	if err := l.waitPast(ctx, rec.Partition, rec.Offset); err != nil {
		return 0, err
	}
	l.wait.Observe(time.Since(start).Seconds())

	ref, ok := l.seen.get(k, now)
	switch {
	case !ok:
		// The follower read the claim but had no room to keep it.
		return claimFull, nil
	case ref == claimRef{partition: rec.Partition, offset: rec.Offset}:
		return claimFresh, nil
	default:
		return claimReplay, nil
	}
}

// isStarted reports whether the follower's start offsets are fixed.
func (l *replayLog) isStarted() bool {
	select {
	case <-l.started:
		return true
	default:
		return false
	}
}

// waitPast waits until the follower has read the record at offset of
// partition.
func (l *replayLog) waitPast(ctx context.Context, partition int32, offset int64) error {
	for {
		l.mu.Lock()
		next, advanced := l.next[partition], l.advanced
		l.mu.Unlock()
		if next > offset {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return errClaimLogBehind
		}
	}
}

// apply records one claim or stored-events record read from the topic.
// The first live claim of a key wins; later ones leave it as it is.
// Records live for the claim lifetime on this instance's clock from the
// moment they are read, so an instance whose clock runs ahead cannot
// expire the others' claims early.
func (l *replayLog) apply(r *kgo.Record) {
	if !l.applyRecord(r) && l.invalid != nil {
		l.invalid()
	}
	// Any record moves the position, so that waiters are not held up by
	// one that was dropped.
	l.mu.Lock()
	if r.Offset >= l.next[r.Partition] {
		l.next[r.Partition] = r.Offset + 1
	}
	l.mu.Unlock()
}

// applyRecord applies r and reports whether it was valid.
func (l *replayLog) applyRecord(r *kgo.Record) bool {
	body, ok := l.open(r.Key, r.Value)
	if !ok || len(body) < claimBodyLen {
		return false
	}
	// The writer's time in the body is not used: a writer whose clock is
	// off, ahead or behind, must neither expire other claims nor have its
	// own ignored.
	now := l.now()
	switch body[0] {
	case claimRecordVersion:
		if len(r.Key) != len(cacheKey{}) || len(body) != claimBodyLen {
			return false
		}
		var k cacheKey
		copy(k[:], r.Key)
		l.seen.add(k, claimRef{partition: r.Partition, offset: r.Offset}, now)
		return true
	case acceptedRecordVersion:
		requestID, events, ok := decodeAccepted(body)
		if !ok {
			return false
		}
		if l.accepted != nil {
			for _, k := range events {
				l.accepted(k, requestID, now)
			}
		}
		return true
	default:
		return false
	}
}

// mac returns the MAC of a record. It also covers the topic name and the
// record key, so that a record copied from another deployment's topic, or
// under another key, does not verify even where both share a keyring.
func (l *replayLog) mac(key, body []byte) []byte {
	m := hmac.New(sha256.New, l.macKey)
	for _, part := range [][]byte{[]byte(l.topic), key} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	m.Write(body)
	return m.Sum(nil)
}

// seal returns body followed by its MAC.
func (l *replayLog) seal(key, body []byte) []byte {
	return append(body, l.mac(key, body)...)
}

// open checks the MAC at the end of value and returns the body before it.
func (l *replayLog) open(key, value []byte) ([]byte, bool) {
	if len(value) < replayMACLen {
		return nil, false
	}
	body, tag := value[:len(value)-replayMACLen], value[len(value)-replayMACLen:]
	return body, hmac.Equal(tag, l.mac(key, body))
}

// publishAccepted publishes which events request requestID stored, so
// that a replay sent to any instance gets the original result. It does not
// wait, because the processors' dedupe still stores an event once if the
// record is late or lost.
func (l *replayLog) publishAccepted(requestID string, events []cacheKey, at time.Time) {
	if len(events) == 0 || len(requestID) > 255 {
		return
	}
	body := make([]byte, 0, claimBodyLen+1+len(requestID)+len(events)*len(cacheKey{})+replayMACLen)
	body = append(body, acceptedRecordVersion)
	body = binary.BigEndian.AppendUint64(body, uint64(at.UnixNano()))
	body = append(body, byte(len(requestID)))
	body = append(body, requestID...)
	for _, k := range events {
		body = append(body, k[:]...)
	}
	rec := &kgo.Record{Topic: l.topic, Key: []byte(requestID)}
	rec.Value = l.seal(rec.Key, body)
	l.producer.TryProduce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil && l.publishFailed != nil {
			l.publishFailed(err)
		}
	})
}

// decodeAccepted reads the body of an acceptedRecordVersion record.
func decodeAccepted(body []byte) (requestID string, events []cacheKey, ok bool) {
	const head = claimBodyLen + 1
	if len(body) < head {
		return "", nil, false
	}
	n := int(body[claimBodyLen])
	rest := body[head:]
	if len(rest) < n || (len(rest)-n)%len(cacheKey{}) != 0 {
		return "", nil, false
	}
	requestID, rest = string(rest[:n]), rest[n:]
	events = make([]cacheKey, 0, len(rest)/len(cacheKey{}))
	for len(rest) > 0 {
		var k cacheKey
		copy(k[:], rest)
		events = append(events, k)
		rest = rest[len(k):]
	}
	return requestID, events, true
}

// wake wakes the waiters after positions moved.
func (l *replayLog) wake() {
	l.mu.Lock()
	close(l.advanced)
	l.advanced = make(chan struct{})
	l.mu.Unlock()
}

// follow reads the replay topic until ctx ends.
func (l *replayLog) follow(ctx context.Context, cl *kgo.Client, warn func(error)) {
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		failed := false
		fetches.EachError(func(_ string, _ int32, err error) {
			failed = true
			warn(err)
		})
		if failed && fetches.NumRecords() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		fetches.EachRecord(l.apply)
		l.wake()
	}
}

// produceWithin produces rec and waits for its acknowledgement or for ctx.
// Unlike ProduceSync it returns when ctx ends even if the request is on
// the wire; see produceAll.
func produceWithin(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	done := make(chan error, 1)
	cl.TryProduce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replayStartSkew is how much earlier than the claims' lifetime a new
// follower starts reading, to cover clock skew between instances. A
// restarted instance thus learns only the sync events stored in the last
// few minutes. It reads no further back, so that its first DPoP claims do
// not wait for an hour of records.
const replayStartSkew = time.Minute

// newReplayLogFor creates the replay log of s with its metrics. Claims
// live for twice dpop_max_age: a proof older than dpop_max_age is refused
// for its iat anyway.
func newReplayLogFor(s *Server, reg prometheus.Registerer) (*replayLog, error) {
	wait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "syncguard_ingest_dpop_claim_seconds",
		Help:    "Time to claim a DPoP proof's jti in the shared replay log: the produce and the wait until this instance read the claim back.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
	})
	publishFailed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "syncguard_ingest_replay_publish_errors_total",
		Help: "Records of stored sync events that Kafka did not take; other instances then report a replay of those events as new.",
	})
	invalid := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "syncguard_ingest_replay_invalid_records_total",
		Help: "Records of the replay topic dropped for a bad MAC or an unknown format; any is a sign of tampering, of a record copied from another topic, or of an instance with another envelope key.",
	})
	l := newReplayLog(s.replayTopic, s.client, s.envelopeKey, 2*s.cfg.SyncAuth.DPoPMaxAge, s.cfg.SyncAuth.DPoPReplayCacheMax, s.now, wait)
	l.accepted = s.idem.remember
	l.invalid = invalid.Inc
	l.publishFailed = func(err error) {
		publishFailed.Inc()
		s.produceLog.Do(func() { s.log.Warn("kafka did not take a record of stored sync events", "err", err) })
	}
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "syncguard_ingest_dpop_replay_cache_entries",
		Help: "Live DPoP proof claims of every ingest instance, as read from the replay topic; at most ingest.sync_auth.dpop_replay_cache_max.",
	}, func() float64 { return float64(l.seen.len()) })
	for _, c := range []prometheus.Collector{wait, entries, publishFailed, invalid} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ingest DPoP metrics: %w", err)
		}
	}
	return l, nil
}

// followReplay starts reading the replay topic and returns the function
// that stops it.
func (s *Server) followReplay() (func(), error) {
	adminClient, err := s.kafkaCfg.NewClient()
	if err != nil {
		return nil, fmt.Errorf("ingest: replay topic consumer: %w", err)
	}
	warn := func(err error) {
		s.controlLog.Do(func() { s.log.Warn("reading the replay topic failed; retrying", "err", err) })
	}
	from := s.now().Add(-s.replay.seen.ttl - replayStartSkew)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer adminClient.Close()
		offsets, ok := s.replay.startOffsets(ctx, kadm.NewClient(adminClient), from, warn)
		if !ok {
			return
		}
		cl, err := s.kafkaCfg.NewClient(
			kgo.ConsumePartitions(offsets),
			// A fetch returns as soon as a claim arrives; the wait only
			// bounds idle polls.
			kgo.FetchMaxWait(500*time.Millisecond),
		)
		if err != nil {
			warn(err)
			return
		}
		defer cl.Close()
		s.replay.startedOnce.Do(func() { close(s.replay.started) })
		s.replay.follow(ctx, cl, warn)
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

// startOffsets finds, for every partition of the replay topic, the first
// record written at or after from. It retries until it succeeds or ctx
// ends.
//
// The end offsets are listed first. Listing by time alone is not enough:
// for a partition with no record after from, kadm lists the end offset
// in a second request, and a claim written in between would then lie
// before the start. Taking the lower of the two closes that gap.
func (l *replayLog) startOffsets(ctx context.Context, adm *kadm.Client, from time.Time, warn func(error)) (map[string]map[int32]kgo.Offset, bool) {
	for {
		offsets, err := l.listStart(ctx, adm, from)
		if err == nil {
			return map[string]map[int32]kgo.Offset{l.topic: offsets}, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		warn(err)
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(time.Second):
		}
	}
}

func (l *replayLog) listStart(ctx context.Context, adm *kadm.Client, from time.Time) (map[int32]kgo.Offset, error) {
	ends, err := adm.ListEndOffsets(ctx, l.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), l.topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return nil, err
	}
	if len(ends[l.topic]) == 0 {
		return nil, errors.New("the replay topic has no partitions")
	}
	offsets := make(map[int32]kgo.Offset, len(ends[l.topic]))
	for p, end := range ends[l.topic] {
		start := end.Offset
		if a, ok := after[l.topic][p]; ok && a.Offset >= 0 && a.Offset < start {
			start = a.Offset
		}
		offsets[p] = kgo.NewOffset().At(start)
	}
	return offsets, nil
}
