package processors

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/schemas"
)

// maxHeaderEcho is the maximum length of a header value copied into audit
// events and dead letters. Raw records written by others may carry
// arbitrary headers, and these copies must stay small.
const maxHeaderEcho = 128

// Content is the plaintext that EncryptedMessage.Ciphertext seals when the
// processor encrypted it: this struct as JSON, sealed with AES-256-GCM under
// the subject's data key with the message id as additional data.
type Content struct {
	// Type is the message or event type, repeated so that the plaintext
	// can be read on its own.
	Type string `json:"type"`
	// Body is the content as received. For a WhatsApp message it is the
	// object named after the type, such as the "text" object of a text
	// message. For unsupported types it is the whole message minus from,
	// id, timestamp and type. For a sync event it is the content object.
	Body json.RawMessage `json:"body,omitempty"`
	// Extra holds a WhatsApp message's other fields (context, referral,
	// identity and the like) as one object.
	Extra json.RawMessage `json:"extra,omitempty"`
	// ProfileName is the customer's WhatsApp profile name, if sent.
	ProfileName string `json:"profile_name,omitempty"`
}

// batch collects what one transaction produces and the state it would
// create. The state is applied only after the transaction commits.
type batch struct {
	now     time.Time
	records []*kgo.Record
	// dedupeKeys are the keys this batch marked, per raw partition, in
	// order; dedupeSeen indexes them to catch duplicates within the batch.
	dedupeKeys map[int32][]dedupeKey
	dedupeSeen map[int32]map[dedupeKey]bool
	// newKeys are the data keys this batch created, by subject, and
	// newKeyOrder their subjects in order of creation.
	newKeys     map[string]*dataKey
	newKeyOrder []string
	outcomes    map[string]int
}

// maxOutputValueBytes bounds the value of one output record. A larger one
// could exceed franz-go's default batch limit (1,000,012 bytes) or Kafka's
// default message.max.bytes (1,048,588), and a record Kafka rejects aborts
// every transaction that contains it.
const maxOutputValueBytes = 900 << 10

// errOutputTooLarge means that an output record exceeds
// maxOutputValueBytes. Content escaping and encryption can make an output
// several times larger than its raw payload.
var errOutputTooLarge = errors.New("output record too large for Kafka")

// batchMark is the state of a batch before one raw record was processed.
type batchMark struct {
	partition       int32
	records, dedupe int
	newKeys         int
}

// mark returns the state of b before a raw record of partition is
// processed.
func (b *batch) mark(partition int32) batchMark {
	return batchMark{
		partition: partition,
		records:   len(b.records),
		dedupe:    len(b.dedupeKeys[partition]),
		newKeys:   len(b.newKeyOrder),
	}
}

// rollback drops the output records, dedupe keys and data keys added
// since m was taken.
func (b *batch) rollback(m batchMark) {
	clear(b.records[m.records:])
	b.records = b.records[:m.records]
	if keys := b.dedupeKeys[m.partition]; len(keys) > m.dedupe {
		for _, k := range keys[m.dedupe:] {
			delete(b.dedupeSeen[m.partition], k)
		}
		b.dedupeKeys[m.partition] = keys[:m.dedupe]
	}
	for _, subject := range b.newKeyOrder[m.newKeys:] {
		delete(b.newKeys, subject)
	}
	b.newKeyOrder = b.newKeyOrder[:m.newKeys]
}

func newBatch(now time.Time) *batch {
	return &batch{
		now:        now,
		dedupeKeys: make(map[int32][]dedupeKey),
		dedupeSeen: make(map[int32]map[dedupeKey]bool),
		newKeys:    make(map[string]*dataKey),
		outcomes:   make(map[string]int),
	}
}

// add appends an output record with a JSON value. An empty key leaves the
// record unkeyed.
func (b *batch) add(topic, key string, value any) error {
	v, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", topic, err)
	}
	if len(v) > maxOutputValueBytes {
		return fmt.Errorf("%s record of %d bytes, over %d: %w", topic, len(v), maxOutputValueBytes, errOutputTooLarge)
	}
	r := &kgo.Record{Topic: topic, Value: v}
	if key != "" {
		r.Key = []byte(key)
	}
	b.records = append(b.records, r)
	return nil
}

// rawRecord is a raw record being processed, with its headers looked up.
type rawRecord struct {
	*kgo.Record
	headers map[string]string
	// duplicated names a header that appears more than once, which makes
	// the record ambiguous and therefore rejected.
	duplicated string
	// requestID and source are for audit events, shortened to
	// maxHeaderEcho bytes.
	requestID, source string
	receivedAt        time.Time
	// auditEvents counts the audit events emitted so far; it numbers them.
	auditEvents int
}

func newRawRecord(r *kgo.Record) *rawRecord {
	rr := &rawRecord{Record: r, headers: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		if _, seen := rr.headers[h.Key]; seen && rr.duplicated == "" {
			rr.duplicated = h.Key
		}
		rr.headers[h.Key] = string(h.Value)
	}
	rr.requestID = truncate(rr.headers[schemas.HeaderRequestID], maxHeaderEcho)
	rr.source = truncate(rr.headers[schemas.HeaderSource], maxHeaderEcho)
	if t, err := time.Parse(time.RFC3339Nano, rr.headers[schemas.HeaderReceivedAt]); err == nil {
		rr.receivedAt = t.UTC()
	}
	return rr
}

// processRecord routes one raw record and returns its outcome. An error
// means the batch cannot be produced. A record whose outputs Kafka would
// reject for their size is dead-lettered instead, with its other outputs
// dropped, so that it cannot abort every later batch.
func (p *Processor) processRecord(b *batch, r *kgo.Record) (string, error) {
	m := b.mark(r.Partition)
	outcome, err := p.routeRecord(b, r)
	if !errors.Is(err, errOutputTooLarge) {
		return outcome, err
	}
	b.rollback(m)
	return outcomeRejected, p.reject(b, newRawRecord(r), schemas.ActionRoute, schemas.ReasonPayloadTooLarge, err.Error())
}

// routeRecord does the work of processRecord.
func (p *Processor) routeRecord(b *batch, r *kgo.Record) (string, error) {
	rr := newRawRecord(r)
	if rr.duplicated != "" {
		return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonVerifyFailed,
			"header "+truncate(rr.duplicated, maxHeaderEcho)+" appears more than once")
	}
	kind := rr.headers[schemas.HeaderKind]
	if problem := p.checkPlacement(r); problem != "" {
		return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonVerifyFailed, problem)
	}
	if kind == schemas.KindWhatsApp || kind == schemas.KindSync {
		// Ingest seals every raw value under a key derived from the
		// envelope key, so a value that does not open was written by
		// someone else or altered in Kafka.
		plain, err := p.sealer.Open(kind, rr.headers[schemas.HeaderRequestID], r.Key, r.Value)
		if err != nil {
			return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonVerifyFailed,
				"value does not open with the envelope key")
		}
		// Ingest never writes a larger payload, so a larger one came from
		// another writer or an older version.
		if len(plain) > schemas.MaxRawPayloadBytes {
			return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonPayloadTooLarge,
				"payload of "+strconv.Itoa(len(plain))+" bytes is over "+strconv.Itoa(schemas.MaxRawPayloadBytes))
		}
		opened := *r
		opened.Value = plain
		rr.Record = &opened
	}
	switch kind {
	case schemas.KindWhatsApp:
		return p.processWhatsApp(b, rr)
	case schemas.KindSync:
		return p.processSync(b, rr)
	default:
		return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonVerifyFailed,
			"unknown record kind in header "+schemas.HeaderKind)
	}
}

// reject dead-letters a whole raw record and audits the step that
// rejected it.
func (p *Processor) reject(b *batch, rr *rawRecord, action, reason, detail string) error {
	if err := p.deadLetter(b, rr, reason, detail); err != nil {
		return err
	}
	return p.audit(b, rr, schemas.AuditEvent{
		Action:  action,
		Outcome: schemas.OutcomeRejected,
		Reason:  reason,
		Route:   schemas.TopicDLQ,
		Detail:  detail,
	})
}

// deadLetter writes a DeadLetter that locates rr. It never copies the raw
// value, which may hold plaintext content.
func (p *Processor) deadLetter(b *batch, rr *rawRecord, reason, detail string) error {
	return b.add(p.topics.dlq, string(rr.Key), schemas.DeadLetter{
		Reason:    reason,
		Detail:    detail,
		Topic:     rr.Topic,
		Partition: rr.Partition,
		Offset:    rr.Offset,
		RequestID: rr.requestID,
		FailedAt:  b.now,
	})
}

// audit emits one audit event for rr. Its id is derived from the raw
// record's position and the event's index, so a batch replayed after a
// crash produces the same ids and the sink can drop the copies.
func (p *Processor) audit(b *batch, rr *rawRecord, ev schemas.AuditEvent) error {
	ev.ID = "processor/" + rr.Topic + "/" + strconv.FormatInt(int64(rr.Partition), 10) + "/" +
		strconv.FormatInt(rr.Offset, 10) + "/" + strconv.Itoa(rr.auditEvents)
	rr.auditEvents++
	ev.Time = b.now
	ev.Stage = schemas.StageProcessor
	ev.Source = rr.source
	ev.RequestID = rr.requestID
	key := ev.Account
	if key == "" {
		key = ev.Source
	}
	return b.add(p.topics.audit, key, ev)
}

// isDuplicate reports whether k was routed before from this raw partition,
// in a committed batch or earlier in this one.
func (p *Processor) isDuplicate(b *batch, partition int32, k dedupeKey) bool {
	return b.dedupeSeen[partition][k] || p.dedupe.has(partition, k)
}

// markRouted writes the dedupe marker of k into the dedupe partition with
// the raw record's partition number and remembers k for this batch.
func (p *Processor) markRouted(b *batch, rr *rawRecord, k dedupeKey) error {
	v, err := json.Marshal(dedupeMarker{RawOffset: rr.Offset, RoutedAt: b.now})
	if err != nil {
		return fmt.Errorf("encode dedupe marker: %w", err)
	}
	b.records = append(b.records, &kgo.Record{
		Topic:     p.topics.dedupe,
		Partition: rr.Partition,
		Key:       []byte(hex.EncodeToString(k[:])),
		Value:     v,
	})
	if b.dedupeSeen[rr.Partition] == nil {
		b.dedupeSeen[rr.Partition] = make(map[dedupeKey]bool)
	}
	b.dedupeSeen[rr.Partition][k] = true
	b.dedupeKeys[rr.Partition] = append(b.dedupeKeys[rr.Partition], k)
	return nil
}

// dataKeyFor returns the data key to encrypt subject's content with. A
// subject without a key gets a new one, whose wrapped form goes to the keys
// topic in this batch's transaction, so that no committed message ever
// refers to a key that was not stored.
func (p *Processor) dataKeyFor(b *batch, subject string) (*dataKey, error) {
	if k, ok := b.newKeys[subject]; ok {
		return k, nil
	}
	if k := p.keys.get(subject); k != nil {
		return k, nil
	}
	k := newDataKey(subject, b.now)
	w, err := p.ring.WrapKey(subject, k.id, k.dek, k.createdAt)
	if err != nil {
		return nil, fmt.Errorf("wrap new data key: %w", err)
	}
	if err := b.add(p.topics.keys, keyRecordKey(subject, k.id), w); err != nil {
		return nil, err
	}
	b.newKeys[subject] = k
	b.newKeyOrder = append(b.newKeyOrder, subject)
	return k, nil
}

// seal encrypts content for subject with the message id as additional data
// and returns the key id, nonce and ciphertext.
func (p *Processor) seal(b *batch, subject, messageID string, content Content) (keyID string, nonce, ciphertext []byte, err error) {
	plaintext, err := json.Marshal(content)
	if err != nil {
		return "", nil, nil, fmt.Errorf("encode content: %w", err)
	}
	k, err := p.dataKeyFor(b, subject)
	if err != nil {
		return "", nil, nil, err
	}
	nonce, ciphertext, err = keys.Seal(k.dek, plaintext, []byte(messageID))
	if err != nil {
		return "", nil, nil, fmt.Errorf("encrypt content: %w", err)
	}
	return k.id, nonce, ciphertext, nil
}

// recordOutcome combines the outcomes of the items of one raw record.
type recordOutcome struct{ accepted, duplicate, rejected int }

func (o *recordOutcome) add(outcome string) {
	switch outcome {
	case outcomeAccepted:
		o.accepted++
	case outcomeDuplicate:
		o.duplicate++
	case outcomeRejected:
		o.rejected++
	}
}

// result is accepted when any item was routed or there was nothing to
// route, duplicate when every routable item was a duplicate, and rejected
// when every item was dead-lettered.
func (o recordOutcome) result() string {
	switch {
	case o.accepted > 0:
		return outcomeAccepted
	case o.duplicate > 0:
		return outcomeDuplicate
	case o.rejected > 0:
		return outcomeRejected
	}
	return outcomeAccepted
}

// joinDetail builds a dead-letter detail from its parts.
func joinDetail(parts ...string) string { return strings.Join(parts, ": ") }

// truncate shortens s to at most n bytes, on a UTF-8 boundary, for audit
// events and dead-letter details.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// keyPlacement computes the partition that a keyed record gets from
// ingest's producer: franz-go hashes keys with Kafka's murmur2, whichever
// of its partitioners ingest uses. It is made once because ForTopic seeds a
// new random source each time. For keyed records its Partition only
// hashes the key, so it is safe for concurrent use (franz-go v1.22.3,
// stickyKeyTopicPartitioner).
var keyPlacement = kgo.StickyKeyPartitioner(nil).ForTopic("")

// checkPlacement returns the reason a raw record is not where ingest would
// have written it, or "". Deduplication is per raw partition, so a genuine
// record copied into another partition would otherwise be routed again.
// The seal binds the value to its key, and the key fixes the partition.
//
// NOTE: records written before the raw topic gained partitions fail this
// check if they are ever read again, for example after an offset reset.
func (p *Processor) checkPlacement(r *kgo.Record) string {
	n := int(p.rawPartitions.Load())
	if n == 0 {
		return ""
	}
	if len(r.Key) == 0 {
		return "record has no key"
	}
	if want := keyPlacement.Partition(r, n); int32(want) != r.Partition {
		return fmt.Sprintf("record is in partition %d, but its key maps to partition %d", r.Partition, want)
	}
	return ""
}
