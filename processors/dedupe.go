package processors

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
)

// Namespaces of dedupe keys, so that ids of different kinds never collide.
const (
	dedupeWhatsAppMessage = "whatsapp/message"
	dedupeWhatsAppStatus  = "whatsapp/status"
	dedupeSyncEvent       = "sync/event"
)

// dedupeKey is the first 16 bytes of a SHA-256 over a namespace and the ids
// that identify one routed item. 128 bits keep collisions out of reach while
// a million entries per partition fit in a few tens of megabytes.
type dedupeKey [16]byte

func newDedupeKey(namespace string, ids ...string) dedupeKey {
	h := sha256.New()
	var n [4]byte
	for _, part := range append([]string{namespace}, ids...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	var k dedupeKey
	copy(k[:], h.Sum(nil))
	return k
}

// dedupeMarker is the value of a record in the dedupe topic. Only its
// presence matters; the fields help an operator trace it back.
type dedupeMarker struct {
	RawOffset int64     `json:"raw_offset"`
	RoutedAt  time.Time `json:"routed_at"`
}

// dedupeState holds the dedupe set of every raw partition this processor
// owns. Only the processing loop uses it. A partition without a set is not
// ready: its set must be rebuilt from the dedupe topic before any of its
// records is processed.
type dedupeState struct {
	maxEntries int
	sets       map[int32]*boundedMap[dedupeKey, struct{}]
}

func newDedupeState(maxEntries int) *dedupeState {
	return &dedupeState{maxEntries: maxEntries, sets: make(map[int32]*boundedMap[dedupeKey, struct{}])}
}

func (d *dedupeState) ready(partition int32) bool {
	_, ok := d.sets[partition]
	return ok
}

func (d *dedupeState) has(partition int32, k dedupeKey) bool {
	set, ok := d.sets[partition]
	if !ok {
		panic(fmt.Sprintf("BUG: dedupe lookup on partition %d before its set was rebuilt", partition))
	}
	_, dup := set.get(k)
	return dup
}

func (d *dedupeState) add(partition int32, k dedupeKey) {
	set, ok := d.sets[partition]
	if !ok {
		panic(fmt.Sprintf("BUG: dedupe insert on partition %d before its set was rebuilt", partition))
	}
	set.put(k, struct{}{})
}

// drop deletes the set of a partition that was revoked or reassigned.
func (d *dedupeState) drop(partition int32) { delete(d.sets, partition) }

func (d *dedupeState) entries() int {
	n := 0
	for _, set := range d.sets {
		n += set.len()
	}
	return n
}

// rebuildDedupe reads one partition of the dedupe topic from its start to
// its last stable offset and returns the set of keys it holds, bounded to
// the newest maxEntries. It uses a short-lived client of its own that
// consumes the partition directly, outside the consumer group.
func (p *Processor) rebuildDedupe(ctx context.Context, partition int32) (*boundedMap[dedupeKey, struct{}], error) {
	topic := p.topics.dedupe
	cl, err := p.kafka.NewClient(append(readerOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			topic: {partition: kgo.NewOffset().AtStart()},
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("rebuild dedupe set of partition %d: %w", partition, err)
	}
	defer cl.Close()

	ends, err := kafkaclient.ReadEnds(ctx, kadm.NewClient(cl), topic, partition)
	if err != nil {
		return nil, fmt.Errorf("rebuild dedupe set of partition %d: %w", partition, err)
	}
	set := newBoundedMap[dedupeKey, struct{}](p.cfg.DedupeMaxEntries)
	err = consumeToEnd(ctx, cl, topic, ends, func(r *kgo.Record) error {
		var k dedupeKey
		if len(r.Key) != hex.EncodedLen(len(k)) {
			return nil // not a marker this processor wrote
		}
		if _, err := hex.Decode(k[:], r.Key); err != nil {
			return nil
		}
		if r.Value == nil {
			set.delete(k)
			return nil
		}
		set.put(k, struct{}{})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild dedupe set of partition %d: %w", partition, err)
	}
	return set, nil
}
