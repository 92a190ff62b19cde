package processors

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// TestKafkaRestartDropsRedelivery runs against the real Kafka: a processor
// routes a message and stops, a new processor in the same group gets the
// same message again and must drop it, because it rebuilt its dedupe set
// from the dedupe topic. It also checks that outputs are transactional and
// that records of an aborted raw transaction are never processed.
func TestKafkaRestartDropsRedelivery(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	h := newBrokerHarness(t, brokers)
	body := readMeta(t, "text_simple.json")

	first := h.startProcessor(h.config())
	raw := h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.out.waitUntil("first copy routed", func() bool { return h.out.countLocked(schemas.TopicMessages, nil) >= 1 })
	first.stop(t)

	// A raw record in an aborted transaction must stay invisible.
	txn, err := h.kafka.NewClient(kgo.TransactionalID("raw-aborter-" + h.kafka.TopicPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	aborted := whatsAppRecord(readMeta(t, "reaction.json"), testAppName, testAppSecret)
	aborted.Topic = h.kafka.Topic(schemas.TopicRaw)
	if err := txn.ProduceSync(ctx, aborted).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}

	second := h.startProcessor(h.config())
	redelivered := h.produceRaw(whatsAppRecord(body, testAppName, testAppSecret))
	h.produceRaw(whatsAppRecord(readMeta(t, "image.json"), testAppName, testAppSecret))
	h.out.waitUntil("redelivery and new message audited", func() bool {
		return h.out.countLocked(schemas.TopicAudit, nil) >= 3
	})
	second.stop(t)
	h.out.settle()

	msgs := h.out.all(schemas.TopicMessages)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2: the first copy and the image, not the redelivery", len(msgs))
	}
	for _, m := range msgs {
		if id := string(m.Key); id == "wamid.RkFLRS1DMTUtcjE=" {
			t.Error("the record of an aborted raw transaction was processed")
		}
	}
	dups := h.out.audits(func(ev schemas.AuditEvent) bool { return ev.Outcome == schemas.OutcomeDuplicate })
	if len(dups) != 1 || dups[0].ID != auditID(redelivered, 0) {
		t.Errorf("duplicate audit events = %+v, want one for the redelivery", dups)
	}
	if n := len(h.out.all(schemas.TopicKeys)); n != 1 {
		t.Errorf("got %d key records, want 1: the restarted processor reuses the subject's key", n)
	}
	markers := h.out.all(schemas.TopicDedupe)
	if len(markers) != 2 {
		t.Fatalf("got %d dedupe markers, want 2", len(markers))
	}
	if markers[0].Partition != raw.Partition {
		t.Errorf("dedupe marker in partition %d, want the raw partition %d", markers[0].Partition, raw.Partition)
	}
	for _, suffix := range outputSuffixes {
		for _, r := range h.out.all(suffix) {
			if !r.Attrs.IsTransactional() {
				t.Errorf("%s record at offset %d was not written in a transaction", suffix, r.Offset)
			}
		}
	}
	h.assertNoPlaintext(t, "Is my order", "Rechnung", "15550002222", "Test User")
}
