package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// bigEvent returns a plaintext sync event whose content has n bytes of
// text.
func bigEvent(h *harness, id string, n int) string {
	ev := h.event(id)
	return strings.Replace(ev, `"hello \u00e9"`, `"`+strings.Repeat("a", n)+`"`, 1)
}

func TestSyncEventLimitInJSONBatch(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SyncMaxLineBytes = 4096 })
	small, big := h.event("e-small"), bigEvent(h, "e-big", 5000)
	for name, body := range map[string]string{
		"array":  "[" + small + "," + big + "]",
		"object": `{"events":[` + small + "," + big + "]}",
	} {
		t.Run(name, func(t *testing.T) {
			rec := h.do(h.syncRequest("application/json", []byte(body), h.token(h.claims())))
			wantProblem(t, rec, http.StatusRequestEntityTooLarge, schemas.ReasonPayloadTooLarge)
			if !strings.Contains(rec.Body.String(), "event 1") {
				t.Errorf("body %s does not name event 1", rec.Body.String())
			}
		})
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records, want 0", n)
	}
}

func TestSyncBatchRepeatedEventsKey(t *testing.T) {
	h := newHarness(t, nil)
	a, b := h.event("e-a"), h.event("e-b")
	for name, body := range map[string]string{
		"plain":   `{"events":[` + a + `],"events":[` + b + `]}`,
		"escaped": `{"events":[` + a + `],"\u0065vents":[` + b + `]}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, h.do(h.syncRequest("application/json", []byte(body), h.token(h.claims()))),
				http.StatusBadRequest, schemas.ReasonInvalidJSON)
		})
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records, want 0", n)
	}
}

// TestRecordTooLargeForKafka checks that a record Kafka rejects for its
// size gets 413, not 503 with Retry-After, and leaves readiness alone. The
// client's batch limit replaces the broker's message.max.bytes here, because
// kgo fails such records with the same error as the broker.
func TestRecordTooLargeForKafka(t *testing.T) {
	keys := newTestKeys(t)
	cluster, kcfg, err := testKafkaConfig().StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	h := newHarnessOn(t, testConfig(keys), kcfg, keys, kgo.ProducerBatchMaxBytes(4096))
	checkRecordTooLarge(t, h)

	// kgo judges each record against its batch limit, so a small event in
	// the same batch as the big one is stored.
	batch := fmt.Sprintf("[%s,%s]", h.event("e-fits-2"), bigEvent(h, "e-big-2", 6000))
	rec := h.do(h.syncRequest("application/json", []byte(batch), h.token(h.claims())))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("mixed sync batch: status %d, want 202; body %s", rec.Code, rec.Body.String())
	}
	resp := batchResponseOf(t, rec)
	if resp.Accepted != 1 || resp.Rejected != 1 {
		t.Errorf("accepted %d, rejected %d, want 1 and 1", resp.Accepted, resp.Rejected)
	}
	if e := resp.Results[1].Error; e == nil || e.Code != schemas.ReasonPayloadTooLarge {
		t.Errorf("event 1 error = %+v, want %s", e, schemas.ReasonPayloadTooLarge)
	}
}

// TestIntegrationRecordTooLargeForKafka lets the real broker reject the
// records: the raw topic gets a max.message.bytes of 4096.
func TestIntegrationRecordTooLargeForKafka(t *testing.T) {
	kcfg := testKafkaConfig()
	kcfg.Brokers = testenv.KafkaBrokers(t)
	testenv.CreateTopics(t, kcfg)
	keys := newTestKeys(t)
	h := newHarnessOn(t, realBrokerConfig(keys), kcfg, keys)
	limit := "4096"
	resp, err := kadm.NewClient(h.client).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &limit},
	}, kcfg.Topic(schemas.TopicRaw))
	if err == nil {
		_, err = resp.On(kcfg.Topic(schemas.TopicRaw), nil)
	}
	if err != nil {
		t.Fatalf("set max.message.bytes of the raw topic: %v", err)
	}
	checkRecordTooLarge(t, h)
}

func checkRecordTooLarge(t *testing.T, h *harness) {
	t.Helper()
	body := append(waBody("x"), bytes.Repeat([]byte(" "), 8000)...)
	rec := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)}))
	wantProblem(t, rec, http.StatusRequestEntityTooLarge, schemas.ReasonPayloadTooLarge)
	if got := rec.Header().Get("Retry-After"); got != "" {
		t.Errorf("webhook: Retry-After = %q, want none", got)
	}

	rec = h.do(h.syncRequest("application/json", []byte("["+bigEvent(h, "e-big", 6000)+"]"), h.token(h.claims())))
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("sync batch of the big event: status %d, want 422; body %s", rec.Code, rec.Body.String())
	}
	if got := rec.Header().Get("Retry-After"); got != "" {
		t.Errorf("sync batch: Retry-After = %q, want none", got)
	}
	if e := batchResponseOf(t, rec).Results[0].Error; e == nil || e.Code != schemas.ReasonPayloadTooLarge {
		t.Errorf("big event error = %+v, want %s", e, schemas.ReasonPayloadTooLarge)
	}
	rec = h.do(h.syncRequest("application/json", []byte("["+h.event("e-fits")+"]"), h.token(h.claims())))
	if rec.Code != http.StatusAccepted {
		t.Errorf("sync batch of a small event: status %d, want 202; body %s", rec.Code, rec.Body.String())
	}

	if got := h.srv.lastKafkaFailure.Load(); got != 0 {
		t.Errorf("a record too large for Kafka counted as a Kafka failure at %d", got)
	}
}
