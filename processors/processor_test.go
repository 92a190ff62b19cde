package processors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// assertNoPlaintext fails when any collected output record carries one of
// the given strings in its key, value or headers.
func (h *harness) assertNoPlaintext(t *testing.T, secrets ...string) {
	t.Helper()
	for _, suffix := range outputSuffixes {
		for _, r := range h.out.all(suffix) {
			parts := [][]byte{r.Key, r.Value}
			for _, hd := range r.Headers {
				parts = append(parts, []byte(hd.Key), hd.Value)
			}
			for _, part := range parts {
				for _, s := range secrets {
					if bytes.Contains(part, []byte(s)) {
						t.Errorf("%s record at offset %d contains plaintext %q", suffix, r.Offset, s)
					}
				}
			}
		}
	}
}

// metricValue returns the value of a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatal("metric is neither a counter nor a gauge")
	return 0
}

func auditID(raw *kgo.Record, index int) string {
	return fmt.Sprintf("processor/%s/%d/%d/%d", raw.Topic, raw.Partition, raw.Offset, index)
}

func TestProcessorRoutesSignedWhatsAppText(t *testing.T) {
	h := newKfakeHarness(t)
	p := h.startProcessor(h.config())
	raw := h.produceRaw(whatsAppRecord(readMeta(t, "text_escaped.json"), testAppName, testAppSecret))

	h.out.waitUntil("message and audit event", func() bool {
		return h.out.countLocked(schemas.TopicMessages, nil) >= 1 && h.out.countLocked(schemas.TopicAudit, nil) >= 1
	})
	h.out.settle()

	const messageID = "wamid.RkFLRS1DMDEtMQ=="
	subject := h.ring.Pseudonym("15550002222")

	msgs := h.out.all(schemas.TopicMessages)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	if string(msgs[0].Key) != messageID {
		t.Errorf("message key = %q, want the message id", msgs[0].Key)
	}
	m := decodeJSONRecord[schemas.EncryptedMessage](t, msgs[0])
	if m.MessageID != messageID || m.Kind != schemas.KindWhatsApp || m.Type != "text" {
		t.Errorf("message id, kind, type = %q, %q, %q", m.MessageID, m.Kind, m.Type)
	}
	if m.Account != testAccount {
		t.Errorf("Account = %q, want the phone number id %s", m.Account, testAccount)
	}
	if m.Subject != subject {
		t.Errorf("Subject = %q, want the pseudonym of the sender %q", m.Subject, subject)
	}
	if want := time.Date(2025, 10, 9, 8, 53, 20, 0, time.UTC); !m.SentAt.Equal(want) {
		t.Errorf("SentAt = %v, want %v", m.SentAt, want)
	}
	if want := time.Date(2025, 10, 9, 8, 53, 21, 123456789, time.UTC); !m.ReceivedAt.Equal(want) {
		t.Errorf("ReceivedAt = %v, want %v", m.ReceivedAt, want)
	}
	if m.ClientEncrypted || len(m.Nonce) != 12 || m.KeyID == "" {
		t.Errorf("ClientEncrypted, nonce size, KeyID = %v, %d, %q", m.ClientEncrypted, len(m.Nonce), m.KeyID)
	}
	if m.RequestID == "" {
		t.Error("RequestID dropped")
	}

	content := h.decryptMessage(t, m)
	var text struct{ Body string }
	if err := stdjson.Unmarshal(content.Body, &text); err != nil {
		t.Fatal(err)
	}
	if want := "Contact me at test.user@example.com or https://example.com/help?id=42"; text.Body != want {
		t.Errorf("decrypted body = %q, want %q", text.Body, want)
	}
	if content.ProfileName != "Test User" || content.Type != "text" {
		t.Errorf("decrypted profile, type = %q, %q", content.ProfileName, content.Type)
	}

	audits := h.out.audits(nil)
	if len(audits) != 1 {
		t.Fatalf("got %d audit events, want 1: %+v", len(audits), audits)
	}
	ev := audits[0]
	want := schemas.AuditEvent{
		ID: auditID(raw, 0), Time: ev.Time, Stage: schemas.StageProcessor, Action: schemas.ActionRoute,
		Route: schemas.TopicMessages, Outcome: schemas.OutcomeAccepted, Reason: schemas.ReasonOK,
		Source: "127.0.0.1", Account: testAccount, Subject: subject, MessageID: messageID, RequestID: m.RequestID,
	}
	if ev != want {
		t.Errorf("audit event = %+v\nwant %+v", ev, want)
	}
	if key := string(h.out.all(schemas.TopicAudit)[0].Key); key != testAccount {
		t.Errorf("audit key = %q, want the account", key)
	}

	keyRecords := h.out.all(schemas.TopicKeys)
	if len(keyRecords) != 1 {
		t.Fatalf("got %d key records, want 1", len(keyRecords))
	}
	if got, want := string(keyRecords[0].Key), subject+"/"+m.KeyID; got != want {
		t.Errorf("key record key = %q, want %q", got, want)
	}
	markers := h.out.all(schemas.TopicDedupe)
	if len(markers) != 1 {
		t.Fatalf("got %d dedupe markers, want 1", len(markers))
	}
	if markers[0].Partition != raw.Partition {
		t.Errorf("dedupe marker in partition %d, want the raw partition %d", markers[0].Partition, raw.Partition)
	}
	if n := len(h.out.all(schemas.TopicDLQ)); n != 0 {
		t.Errorf("got %d dead letters, want 0", n)
	}

	h.assertNoPlaintext(t, "Contact me", "test.user", "example.com/help", `test.user\u0040`, "Test User", "15550002222")

	if got := metricValue(t, p.metrics.records.WithLabelValues(outcomeAccepted)); got != 1 {
		t.Errorf("records_total{outcome=accepted} = %v, want 1", got)
	}
	if got := metricValue(t, p.metrics.dedupeEntries); got != 1 {
		t.Errorf("dedupe_entries = %v, want 1", got)
	}
}

func TestProcessorStoresRedeliveriesOnce(t *testing.T) {
	h := newKfakeHarness(t)
	p := h.startProcessor(h.config())
	body := readMeta(t, "text_simple.json")
	status := readMeta(t, "status_delivered_no_profile.json")

	// Two copies in one batch, then more copies after the first committed.
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(status, testAppName, testAppSecret))
	h.out.waitUntil("first copies audited", func() bool { return h.out.countLocked(schemas.TopicAudit, nil) >= 3 })
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(status, testAppName, testAppSecret))
	h.out.waitUntil("every copy audited", func() bool { return h.out.countLocked(schemas.TopicAudit, nil) >= 5 })
	h.out.settle()

	if n := len(h.out.all(schemas.TopicMessages)); n != 1 {
		t.Errorf("got %d messages from 3 copies, want 1", n)
	}
	if n := len(h.out.all(schemas.TopicStatuses)); n != 1 {
		t.Errorf("got %d statuses from 2 copies, want 1", n)
	}
	if n := len(h.out.all(schemas.TopicDedupe)); n != 2 {
		t.Errorf("got %d dedupe markers, want 2", n)
	}
	dups := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Outcome == schemas.OutcomeDuplicate })
	if len(dups) != 3 {
		t.Fatalf("got %d duplicate audit events, want 3", len(dups))
	}
	for _, ev := range dups {
		if ev.Reason != schemas.ReasonDuplicate || ev.Route != "" || ev.Account != testAccount || ev.Subject == "" {
			t.Errorf("duplicate audit event = %+v", ev)
		}
	}
	if got := metricValue(t, p.metrics.records.WithLabelValues(outcomeDuplicate)); got != 3 {
		t.Errorf("records_total{outcome=duplicate} = %v, want 3", got)
	}
}

// TestProcessorRejectsCopyInOtherPartition copies a genuine sealed raw
// record into another partition, as someone with write access to Kafka
// could: deduplication is per partition, so the copy must be rejected by
// its placement rather than routed a second time.
func TestProcessorRejectsCopyInOtherPartition(t *testing.T) {
	h := newKfakeHarness(t)
	h.startProcessor(h.config())
	body := readMeta(t, "text_simple.json")

	original := h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.out.waitUntil("the original routed", func() bool { return h.out.countLocked(schemas.TopicMessages, nil) == 1 })

	manual, err := h.kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	copied := &kgo.Record{
		Topic:     original.Topic,
		Key:       original.Key,
		Value:     original.Value,
		Headers:   original.Headers,
		Partition: (original.Partition + 1) % h.kafka.Partitions,
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := manual.ProduceSync(ctx, copied).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h.out.waitUntil("the copy dead-lettered", func() bool { return h.out.countLocked(schemas.TopicDLQ, nil) == 1 })
	h.out.settle()

	if n := len(h.out.all(schemas.TopicMessages)); n != 1 {
		t.Errorf("got %d messages from a record and its copy, want 1", n)
	}
	dl := decodeJSONRecord[schemas.DeadLetter](t, h.out.all(schemas.TopicDLQ)[0])
	if dl.Reason != schemas.ReasonVerifyFailed || dl.Partition != copied.Partition {
		t.Errorf("dead letter = %+v, want verify_failed for partition %d", dl, copied.Partition)
	}
}

func TestProcessorRejectsForgedWhatsAppRecords(t *testing.T) {
	h := newKfakeHarness(t)
	h.startProcessor(h.config())
	body := readMeta(t, "text_simple.json")

	tampered := whatsAppRecord(body, testAppName, testAppSecret)
	tampered.Value = bytes.Replace(bytes.Clone(body), []byte("shipped yet?"), []byte("shipped yet!!"), 1)

	truncated := whatsAppRecord(body, testAppName, testAppSecret)
	prefixless := whatsAppRecord(body, testAppName, testAppSecret)
	doubled := whatsAppRecord(body, testAppName, testAppSecret)
	for i, hd := range truncated.Headers {
		if hd.Key == schemas.HeaderSignature {
			truncated.Headers[i].Value = hd.Value[:len("sha256=")+32]
			prefixless.Headers[i].Value = hd.Value[len("sha256="):]
			doubled.Headers = append(doubled.Headers, kgo.RecordHeader{Key: schemas.HeaderSignature, Value: []byte("sha256=00")})
		}
	}
	noKind := whatsAppRecord(body, testAppName, testAppSecret)
	noKind.Headers = noKind.Headers[1:]
	otherKind := whatsAppRecord(body, testAppName, testAppSecret)
	otherKind.Headers[0].Value = []byte("email")

	// Signed correctly but written without the envelope key: in the clear,
	// or sealed under another key.
	otherSealer, err := schemas.NewRawSealer(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	foreignSealed := whatsAppRecord(body, testAppName, testAppSecret)
	requestID := ""
	for _, hd := range foreignSealed.Headers {
		if hd.Key == schemas.HeaderRequestID {
			requestID = string(hd.Value)
		}
	}
	foreignSealed.Value = otherSealer.Seal(schemas.KindWhatsApp, requestID, foreignSealed.Key, body)

	// Signed and sealed, but over the payload limit that ingest enforces.
	oversized := append(append([]byte{}, body...), bytes.Repeat([]byte(" "), schemas.MaxRawPayloadBytes)...)

	cases := []struct {
		name     string
		record   *kgo.Record
		reason   string
		unsealed bool
	}{
		{"over the payload limit", whatsAppRecord(oversized, testAppName, testAppSecret), schemas.ReasonPayloadTooLarge, false},
		{"signed but not sealed", whatsAppRecord(body, testAppName, testAppSecret), schemas.ReasonVerifyFailed, true},
		{"sealed with another key", foreignSealed, schemas.ReasonVerifyFailed, true},
		{"unsigned", whatsAppRecord(body, testAppName, ""), schemas.ReasonInvalidSignature, false},
		{"signed with the verify token", whatsAppRecord(body, testAppName, "fake_verify_token_4711"), schemas.ReasonInvalidSignature, false},
		{"signed with an access token", whatsAppRecord(body, testAppName, "EAAFAKEACCESSTOKEN0000000000"), schemas.ReasonInvalidSignature, false},
		{"tampered body", tampered, schemas.ReasonInvalidSignature, false},
		{"truncated digest", truncated, schemas.ReasonInvalidSignature, false},
		{"digest without prefix", prefixless, schemas.ReasonInvalidSignature, false},
		{"unknown app", whatsAppRecord(body, "other-app", testAppSecret), schemas.ReasonInvalidSignature, false},
		{"signature header twice", doubled, schemas.ReasonVerifyFailed, false},
		{"no kind header", noKind, schemas.ReasonVerifyFailed, false},
		{"unknown kind", otherKind, schemas.ReasonVerifyFailed, false},
	}
	raws := make(map[int64]string)
	var partition int32
	for _, c := range cases {
		produce := h.produceRaw
		if c.unsealed {
			produce = h.produceUnsealed
		}
		r := produce(c.record)
		raws[r.Offset] = c.name
		partition = r.Partition
	}
	h.out.waitUntil("every forged record dead-lettered", func() bool {
		return h.out.countLocked(schemas.TopicDLQ, nil) >= len(cases) && h.out.countLocked(schemas.TopicAudit, nil) >= len(cases)
	})
	h.out.settle()

	for _, suffix := range []string{schemas.TopicMessages, schemas.TopicStatuses, schemas.TopicKeys, schemas.TopicDedupe} {
		if n := len(h.out.all(suffix)); n != 0 {
			t.Errorf("forged records produced %d %s records, want 0", n, suffix)
		}
	}
	letters := h.out.all(schemas.TopicDLQ)
	if len(letters) != len(cases) {
		t.Fatalf("got %d dead letters, want %d", len(letters), len(cases))
	}
	reasons := make(map[string]string)
	for _, r := range letters {
		dl := decodeJSONRecord[schemas.DeadLetter](t, r)
		name, ok := raws[dl.Offset]
		if !ok || dl.Topic != h.kafka.Topic(schemas.TopicRaw) || dl.Partition != partition {
			t.Errorf("dead letter %+v does not locate a raw record", dl)
			continue
		}
		reasons[name] = dl.Reason
		if dl.Detail == "" {
			t.Errorf("%s: dead letter without detail", name)
		}
	}
	audits := h.out.audits(nil)
	if len(audits) != len(cases) {
		t.Fatalf("got %d audit events, want %d", len(audits), len(cases))
	}
	for _, ev := range audits {
		if ev.Action != schemas.ActionVerify || ev.Outcome != schemas.OutcomeRejected || ev.Route != schemas.TopicDLQ {
			t.Errorf("audit event = %+v, want a rejected verify step", ev)
		}
		if ev.Source != "127.0.0.1" {
			t.Errorf("audit Source = %q, want the source header", ev.Source)
		}
	}
	for _, c := range cases {
		if reasons[c.name] != c.reason {
			t.Errorf("%s: dead letter reason = %q, want %q", c.name, reasons[c.name], c.reason)
		}
	}
	h.assertNoPlaintext(t, "Is my order", "shipped yet", "15550002222", "Test User")
}

func TestProcessorWhatsAppShapes(t *testing.T) {
	h := newKfakeHarness(t)
	h.startProcessor(h.config())

	invalidItem := wrapMessages(`{"from":"15550002222","timestamp":"5","type":"text","text":{"body":"no id here"}},` +
		`{"from":"15550002222","id":"wamid.VALID","timestamp":"6","type":"text","text":{"body":"valid next to it"}}`)
	notWhatsApp := []byte(`{"object":"page","entry":[]}`)
	notJSON := []byte(`{"object":"whatsapp_business_account","entry":[`)
	for _, body := range [][]byte{
		readMeta(t, "statuses_failed.json"),
		readMeta(t, "unsupported.json"),
		readMeta(t, "multi_entry.json"),
		readMeta(t, "value_errors.json"),
		readMeta(t, "numeric_ids.json"),
		readMeta(t, "reaction_removed.json"),
		invalidItem, notWhatsApp, notJSON,
	} {
		h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	}
	// Messages: unsupported, 2 of multi_entry, numeric_ids, reaction, the
	// valid one next to the invalid one. Statuses: 2 failed, 1 sent, 1 read.
	h.out.waitUntil("every body routed", func() bool {
		return h.out.countLocked(schemas.TopicMessages, nil) >= 6 && h.out.countLocked(schemas.TopicStatuses, nil) >= 4 &&
			h.out.countLocked(schemas.TopicDLQ, nil) >= 3
	})
	h.out.settle()

	if n := len(h.out.all(schemas.TopicMessages)); n != 6 {
		t.Errorf("got %d messages, want 6", n)
	}
	statuses := map[string]schemas.Status{}
	for _, r := range h.out.all(schemas.TopicStatuses) {
		s := decodeJSONRecord[schemas.Status](t, r)
		statuses[s.MessageID] = s
	}
	failed := statuses["wamid.RkFLRS1DMDktb3V0LTI="]
	if failed.Status != "failed" || failed.Recipient != h.ring.Pseudonym("15550003333") || failed.Account != testAccount {
		t.Errorf("failed status = %+v", failed)
	}
	if !bytes.Contains(failed.Errors, []byte(`131026`)) {
		t.Errorf("failed status errors = %s, want code 131026 kept", failed.Errors)
	}
	sent := statuses["wamid.RkFLRS1NVUxULW91dA=="]
	if sent.Conversation != "CONVERSATION_FAKE_ID_1" || sent.Account != "200000000000008" || !bytes.Contains(sent.Pricing, []byte("CBP")) {
		t.Errorf("sent status = %+v", sent)
	}

	messages := map[string]schemas.EncryptedMessage{}
	for _, r := range h.out.all(schemas.TopicMessages) {
		m := decodeJSONRecord[schemas.EncryptedMessage](t, r)
		messages[m.MessageID] = m
	}
	unsupported := messages["wamid.RkFLRS1DMTQtMQ=="]
	if unsupported.Type != "unsupported" || !bytes.Contains(unsupported.Errors, []byte("131051")) {
		t.Errorf("unsupported message = %+v, want type kept and errors kept", unsupported)
	}
	if c := h.decryptMessage(t, unsupported); !bytes.Contains(c.Body, []byte("131051")) {
		t.Errorf("unsupported content = %s, want the whole message minus its envelope", c.Body)
	}
	big := messages["wamid.RkFLRS1OVU0tMQ=="]
	if big.Account != "123456789012345678901" || big.Subject != h.ring.Pseudonym("98765432109876543210") {
		t.Errorf("numeric ids message = %+v, want exact large ids", big)
	}
	removed := h.decryptMessage(t, messages["wamid.RkFLRS1DMTUtcjI="])
	if bytes.Contains(removed.Body, []byte("emoji")) || !bytes.Contains(removed.Body, []byte("wamid.RkFLRS1DMTUtb3V0LTE=")) {
		t.Errorf("removed reaction content = %s", removed.Body)
	}

	unsupportedAudit := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.MessageID == "wamid.RkFLRS1DMTQtMQ==" })
	if len(unsupportedAudit) != 1 || unsupportedAudit[0].Reason != schemas.ReasonUnsupportedType || unsupportedAudit[0].Outcome != schemas.OutcomeAccepted {
		t.Errorf("unsupported message audit = %+v, want accepted with unsupported_type", unsupportedAudit)
	}
	template := h.out.audits(func(ev schemas.AuditEvent) bool {
		return strings.Contains(ev.Detail, "message_template_status_update")
	})
	if len(template) != 1 || template[0].Reason != schemas.ReasonUnsupportedType {
		t.Errorf("template change audit = %+v, want one unsupported_type event", template)
	}
	errorsAudit := h.out.audits(func(ev schemas.AuditEvent) bool { return strings.Contains(ev.Detail, "131000") })
	if len(errorsAudit) != 1 {
		t.Errorf("value errors audit = %+v, want one event naming code 131000", errorsAudit)
	}

	reasons := map[string]int{}
	for _, r := range h.out.all(schemas.TopicDLQ) {
		reasons[decodeJSONRecord[schemas.DeadLetter](t, r).Reason]++
	}
	want := map[string]int{schemas.ReasonInvalidEvent: 2, schemas.ReasonInvalidJSON: 1}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Errorf("dead letter reasons = %v, want %v", reasons, want)
	}
	if _, ok := messages["wamid.VALID"]; !ok {
		t.Error("the valid message next to an invalid one was not routed")
	}

	// One key per subject: multi_entry has two senders, the others share
	// 15550002222 or use the numeric sender.
	subjects := map[string]bool{}
	for _, r := range h.out.all(schemas.TopicKeys) {
		w := decodeJSONRecord[schemas.WrappedKey](t, r)
		if subjects[w.Subject] {
			t.Errorf("subject %s got a second data key", w.Subject)
		}
		subjects[w.Subject] = true
	}
	if len(subjects) != 3 {
		t.Errorf("got keys for %d subjects, want 3", len(subjects))
	}
	h.assertNoPlaintext(t, "First of a batch", "Second of a batch", "Numbers instead", "no id here", "valid next to it",
		"15550002222", "15550003333", "98765432109876543210", "Big Number")
}

func TestProcessorSyncEvents(t *testing.T) {
	h := newKfakeHarness(t)
	h.startProcessor(h.config())
	envKey := h.ring.EnvelopeKey()

	plain := []byte(`{"event_id":"ev-1","type":"note.updated","occurred_at":"2025-10-09T08:53:20Z","device_id":"dev-42","conversation_id":"conv-9","content":{"title":"Secret groceries"}}`)
	plainOther := bytes.Replace(plain, []byte(`"dev-42"`), []byte(`"dev-43"`), 1)
	ciphertext := bytes.Repeat([]byte{7}, 40)
	sum := sha256.Sum256(ciphertext)
	e2e := []byte(`{"event_id":"ev-2","type":"note.updated","occurred_at":"2025-10-09T08:53:20Z","device_id":"dev-42","encrypted":{"alg":"XCHACHA20-POLY1305","key_id":"client-key-1","iv":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 24)) + `","ciphertext":"` + base64.StdEncoding.EncodeToString(ciphertext) +
		`","checksum":"sha256:` + hex.EncodeToString(sum[:]) + `"}}`)
	badIV := bytes.Replace(e2e, []byte(`"ev-2"`), []byte(`"ev-3"`), 1)
	badIV = bytes.Replace(badIV, []byte("XCHACHA20-POLY1305"), []byte("A256GCM"), 1)

	forged := syncRecord(plain, "dev-42", "user-7", "req-4", envKey)
	forged.Value = bytes.Replace(bytes.Clone(plain), []byte("Secret"), []byte("Forged"), 1)

	h.produceRaw(syncRecord(plain, "dev-42", "user-7", "req-1", envKey))
	h.produceRaw(syncRecord(e2e, "dev-42", "user-7", "req-2", envKey))
	h.produceRaw(syncRecord(plain, "dev-42", "user-7", "req-3", envKey))                                     // replay: duplicate
	h.produceRaw(syncRecord(plainOther, "dev-43", "user-7", "req-5", envKey))                                // same id, other device
	h.produceRaw(syncRecord(plain, "dev-42", "user-7", "req-6", []byte("wrong key, wrong key, wrong key!"))) // bad MAC
	h.produceRaw(forged)                                                                                     // value changed after the MAC
	h.produceRaw(syncRecord(badIV, "dev-42", "user-7", "req-7", envKey))                                     // bad client structure
	h.produceRaw(syncRecord([]byte(`{"event_id":`), "dev-42", "user-7", "req-8", envKey))
	h.produceRaw(syncRecord(plain, "dev-44", "user-7", "req-9", envKey)) // device_id is dev-42

	h.out.waitUntil("every sync record audited", func() bool { return h.out.countLocked(schemas.TopicAudit, nil) >= 9 })
	h.out.settle()

	syncs := h.out.all(schemas.TopicSync)
	if len(syncs) != 3 {
		t.Fatalf("got %d sync records, want 3 (ev-1 twice from two devices, ev-2)", len(syncs))
	}
	subject := h.ring.Pseudonym("user-7")
	byDevice := map[string]schemas.EncryptedMessage{}
	for _, r := range syncs {
		m := decodeJSONRecord[schemas.EncryptedMessage](t, r)
		if string(r.Key) != m.Device {
			t.Errorf("sync record key = %q, want the device %q", r.Key, m.Device)
		}
		if m.Account != subject || m.Subject != subject || m.Kind != schemas.KindSync {
			t.Errorf("sync record = %+v, want account and subject %s", m, subject)
		}
		byDevice[m.Device+"/"+m.MessageID] = m
	}
	first := byDevice["dev-42/ev-1"]
	if c := h.decryptMessage(t, first); !bytes.Contains(c.Body, []byte("Secret groceries")) || c.Type != "note.updated" {
		t.Errorf("decrypted sync content = %+v", c)
	}
	client := byDevice["dev-42/ev-2"]
	if !client.ClientEncrypted || client.ClientAlg != AlgXChaCha20Poly1305 || client.KeyID != "client-key-1" ||
		!bytes.Equal(client.Ciphertext, ciphertext) || client.ClientIV != base64.StdEncoding.EncodeToString(make([]byte, 24)) {
		t.Errorf("client-encrypted record = %+v, want it stored as received", client)
	}
	if _, ok := byDevice["dev-43/ev-1"]; !ok {
		t.Error("the same event id from another device was dropped")
	}

	reasons := map[string]int{}
	for _, r := range h.out.all(schemas.TopicDLQ) {
		reasons[decodeJSONRecord[schemas.DeadLetter](t, r).Reason]++
	}
	want := map[string]int{schemas.ReasonInvalidMAC: 2, schemas.ReasonInvalidEvent: 1, schemas.ReasonInvalidJSON: 1, schemas.ReasonDeviceMismatch: 1}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Errorf("dead letter reasons = %v, want %v", reasons, want)
	}
	if first.Conversation != "conv-9" {
		t.Errorf("Conversation = %q, want conv-9", first.Conversation)
	}
	dups := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Outcome == schemas.OutcomeDuplicate })
	if len(dups) != 1 || dups[0].MessageID != "ev-1" || dups[0].Device != "dev-42" {
		t.Errorf("duplicate audit events = %+v, want one for ev-1 from dev-42", dups)
	}
	macAudits := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Reason == schemas.ReasonInvalidMAC })
	for _, ev := range macAudits {
		if ev.Action != schemas.ActionVerify || ev.Outcome != schemas.OutcomeRejected {
			t.Errorf("MAC audit event = %+v, want a rejected verify step", ev)
		}
	}
	h.assertNoPlaintext(t, "Secret groceries", "Forged groceries", "user-7")
}

func TestProcessorRestartKeepsDedupeAndKeys(t *testing.T) {
	h := newKfakeHarness(t)
	first := h.startProcessor(h.config())
	body := readMeta(t, "text_simple.json")
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.out.waitUntil("first copy routed", func() bool { return h.out.countLocked(schemas.TopicMessages, nil) >= 1 })
	first.stop(t)

	second := h.startProcessor(h.config())
	if got := second.keys.len(); got != 1 {
		t.Errorf("restarted processor loaded %d data keys, want 1", got)
	}
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(readMeta(t, "reaction.json"), testAppName, testAppSecret))
	h.out.waitUntil("redelivery and new message audited", func() bool {
		return h.out.countLocked(schemas.TopicAudit, nil) >= 3
	})
	h.out.settle()

	if n := len(h.out.all(schemas.TopicMessages)); n != 2 {
		t.Errorf("got %d messages, want 2 (the redelivery dropped after restart)", n)
	}
	if n := len(h.out.all(schemas.TopicKeys)); n != 1 {
		t.Errorf("got %d key records, want 1: the restarted processor must reuse the subject's key", n)
	}
	dups := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Outcome == schemas.OutcomeDuplicate })
	if len(dups) != 1 {
		t.Errorf("got %d duplicate audit events, want 1", len(dups))
	}
}

func TestProcessorRetriesAbortedBatch(t *testing.T) {
	h := newKfakeHarness(t)
	// The first offset commit of a transaction fails as if the group had
	// moved on, so the session must abort the whole batch.
	var failed atomic.Bool
	h.cluster.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		commit := req.(*kmsg.TxnOffsetCommitRequest)
		resp := commit.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, topic := range commit.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = topic.Topic
			for _, part := range topic.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition = part.Partition
				rp.ErrorCode = kerr.IllegalGeneration.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		failed.Store(true)
		return resp, nil, true
	})
	p := h.startProcessor(h.config())
	h.produceRaw(whatsAppRecord(readMeta(t, "text_simple.json"), testAppName, testAppSecret))

	h.out.waitUntil("message routed after the retry", func() bool { return h.out.countLocked(schemas.TopicMessages, nil) >= 1 })
	h.out.settle()
	if !failed.Load() {
		t.Fatal("the offset commit was never intercepted")
	}
	if got := metricValue(t, p.metrics.transactions.WithLabelValues("aborted")); got < 1 {
		t.Errorf("transactions_total{result=aborted} = %v, want at least 1", got)
	}

	// The aborted attempt created a data key and a dedupe entry. Neither may
	// survive: the retry must route the message instead of calling it a
	// duplicate, under a key that the keys topic holds.
	for suffix, want := range map[string]int{
		schemas.TopicMessages: 1, schemas.TopicKeys: 1, schemas.TopicDedupe: 1, schemas.TopicAudit: 1,
	} {
		if n := len(h.out.all(suffix)); n != want {
			t.Errorf("got %d %s records, want %d", n, suffix, want)
		}
	}
	m := decodeJSONRecord[schemas.EncryptedMessage](t, h.out.all(schemas.TopicMessages)[0])
	if c := h.decryptMessage(t, m); !bytes.Contains(c.Body, []byte("Is my order shipped yet?")) {
		t.Errorf("decrypted body = %s", c.Body)
	}
	if dups := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Outcome == schemas.OutcomeDuplicate }); len(dups) != 0 {
		t.Errorf("the retried batch was audited as duplicate: %+v", dups)
	}
}

func TestProcessorWaitsForTopics(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := kafkaclient.Defaults()
	cfg.Brokers = cluster.ListenAddrs()
	cfg.TopicPrefix = randomPrefix(t)
	h := newHarness(t, cfg)

	p, err := New(Options{Config: h.config(), Kafka: cfg, Keyring: h.ring})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// Without topics the processor keeps retrying and stays unready.
	select {
	case err := <-done:
		t.Fatalf("Run returned %v without topics, want it to wait", err)
	case <-time.After(2 * retryBackoff):
	}
	if p.Ready() {
		t.Fatal("Ready() is true before the topics exist")
	}

	tctx, tcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer tcancel()
	if err := cfg.EnsureTopics(tctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "processor ready after the topics appeared", p.Ready)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v on a clean stop, want nil", err)
	}
}

func TestProcessorRejectsTooFewDedupePartitions(t *testing.T) {
	cfg := kafkaclient.Defaults()
	cfg.TopicPrefix = randomPrefix(t)
	var topics []string
	for _, s := range schemas.AllTopics {
		if s != schemas.TopicDedupe {
			topics = append(topics, cfg.Topic(s))
		}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...), kfake.SeedTopics(1, cfg.Topic(schemas.TopicDedupe)))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg.Brokers = cluster.ListenAddrs()

	p, err := New(Options{Config: DefaultConfig(), Kafka: cfg, Keyring: keys.Generate()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = p.Run(ctx)
	var partitions *PartitionCountError
	if !errors.As(err, &partitions) {
		t.Fatalf("Run error = %v, want a PartitionCountError", err)
	}
	if partitions.Have != 1 || partitions.RawHave != 3 {
		t.Errorf("PartitionCountError = %+v, want 1 dedupe partition against 3 raw", partitions)
	}
	if !strings.Contains(err.Error(), "add partitions") {
		t.Errorf("error %q does not say how to fix it", err)
	}
}

// TestProcessorDeadLettersOversizedOutput checks that a record whose
// encrypted output Kafka would reject is dead-lettered with nothing else
// of it kept, and that the records after it are still routed. Each '<'
// becomes six bytes in the encoded content, so 200 KiB of them outgrow
// every output limit although the raw payload is within ingest's.
func TestProcessorDeadLettersOversizedOutput(t *testing.T) {
	checkOversizedOutput(t, newKfakeHarness(t))
}

// TestIntegrationOversizedOutput runs the same check on the real broker,
// whose default message.max.bytes would reject the unchecked record.
func TestIntegrationOversizedOutput(t *testing.T) {
	checkOversizedOutput(t, newBrokerHarness(t, testenv.KafkaBrokers(t)))
}

func checkOversizedOutput(t *testing.T, h *harness) {
	t.Helper()
	h.startProcessor(h.config())
	body := readMeta(t, "text_simple.json")
	big := bytes.Replace(bytes.Clone(body), []byte("shipped yet?"), bytes.Repeat([]byte("<"), 200<<10), 1)
	if len(big) > schemas.MaxRawPayloadBytes {
		t.Fatalf("test payload of %d bytes is over the raw limit", len(big))
	}

	h.produceRaw(whatsAppRecord(big, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.out.waitUntil("the oversized record dead-lettered and the next one routed", func() bool {
		return h.out.countLocked(schemas.TopicDLQ, nil) >= 1 && h.out.countLocked(schemas.TopicMessages, nil) >= 1
	})
	h.out.settle()

	letters := h.out.all(schemas.TopicDLQ)
	if len(letters) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(letters))
	}
	if dl := decodeJSONRecord[schemas.DeadLetter](t, letters[0]); dl.Reason != schemas.ReasonPayloadTooLarge {
		t.Errorf("dead letter reason = %q, want %q", dl.Reason, schemas.ReasonPayloadTooLarge)
	}
	if n := len(h.out.all(schemas.TopicMessages)); n != 1 {
		t.Errorf("%d message records, want only the one of the second webhook", n)
	}
	// The data key the oversized message created was dropped with it, so
	// the second message's key is in the keys topic exactly once.
	if n := len(h.out.all(schemas.TopicKeys)); n != 1 {
		t.Errorf("%d data key records, want 1", n)
	}
	rejected := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Reason == schemas.ReasonPayloadTooLarge })
	if len(rejected) != 1 || rejected[0].Outcome != schemas.OutcomeRejected {
		t.Errorf("audit events for the oversized record = %+v, want one rejection", rejected)
	}
}
