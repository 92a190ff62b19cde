package ingest

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// TestIntegrationWebhookToKafka runs the server with its own client against
// the real Kafka: a signed webhook gets 200 and its raw record reads
// back byte for byte.
func TestIntegrationWebhookToKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	kcfg := testKafkaConfig()
	kcfg.Brokers = brokers
	kcfg.Partitions = 1
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	testenv.CreateTopics(t, kcfg)

	cfg := testConfig(newTestKeys(t))
	srv, err := New(Options{Config: cfg, Kafka: kcfg, EnvelopeKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(runCtx) }()
	waitFor(t, "the server to listen", func() bool { return srv.Addr() != "" })
	waitFor(t, "the server to be ready", srv.Ready)

	body := waBody(`Real Kafka \u00e9 https:\/\/example.com`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.Addr()+"/webhooks/whatsapp", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Hub-Signature-256", sign(testAppSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	requestID := resp.Header.Get("X-Request-Id")

	stop()
	if err := <-ran; err != nil {
		t.Fatalf("Run = %v", err)
	}

	consumer, err := kcfg.NewClient(
		kgo.ConsumeTopics(kcfg.Topic(schemas.TopicRaw), kcfg.Topic(schemas.TopicAudit)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var raw, audit []*kgo.Record
	for len(raw) < 1 || len(audit) < 1 {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d raw and %d audit records before the deadline", len(raw), len(audit))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Topic == kcfg.Topic(schemas.TopicRaw) {
				raw = append(raw, r)
			} else {
				audit = append(audit, r)
			}
		})
	}
	raw[0].Value = openRaw(t, make([]byte, 32), raw[0])
	if !bytes.Equal(raw[0].Value, body) {
		t.Errorf("raw value differs:\n got %s\nwant %s", raw[0].Value, body)
	}
	if got := header(t, raw[0], schemas.HeaderRequestID); got != requestID {
		t.Errorf("request id header = %q, want %q", got, requestID)
	}
	if string(raw[0].Key) != "200000000000002" {
		t.Errorf("key = %q", raw[0].Key)
	}
	if !bytes.Contains(audit[0].Value, []byte(requestID)) {
		t.Errorf("audit record %s does not name request %s", audit[0].Value, requestID)
	}
}
