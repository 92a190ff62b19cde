package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/schemas"
)

// webhookFactory returns signed webhooks for the stack's app secret.
func webhookFactory(t *testing.T, seed int64, accounts int) (*loadgen.WebhookFactory, []loadgen.Account) {
	t.Helper()
	acc := loadgen.ExampleAccounts(config.Secret(appSecret), accounts)
	f, err := loadgen.NewWebhookFactory(seed, acc)
	if err != nil {
		t.Fatal(err)
	}
	return f, acc
}

func TestForgedRawRecordsRejected(t *testing.T) {
	s := newStack(t, stackOptions{})
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"299"},"messages":[{"from":"15550009999","id":"wamid.FORGED-1","timestamp":"1760000000","type":"text","text":{"body":"injected straight into kafka"}}]}}]}]}`)
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	goodSignature := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	sealer, err := schemas.NewRawSealer(s.ring.EnvelopeKey())
	if err != nil {
		t.Fatal(err)
	}
	record := func(id string, value []byte, signature string) *kgo.Record {
		return &kgo.Record{
			Topic: s.topic(schemas.TopicRaw),
			Key:   []byte("299"),
			Value: value,
			Headers: []kgo.RecordHeader{
				{Key: schemas.HeaderKind, Value: []byte(schemas.KindWhatsApp)},
				{Key: schemas.HeaderRequestID, Value: []byte(id)},
				{Key: schemas.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
				{Key: schemas.HeaderSource, Value: []byte("203.0.113.9")},
				{Key: schemas.HeaderApp, Value: []byte("main")},
				{Key: schemas.HeaderSignature, Value: []byte(signature)},
			},
		}
	}
	// An attacker with write access to the raw topic but without the keys:
	// a body with a valid app signature but not sealed, and a body sealed
	// (with the stolen envelope key) but signed with a guessed secret.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	results := s.kafka.ProduceSync(ctx,
		record("forged-1", body, goodSignature),
		record("forged-2", sealer.Seal(schemas.KindWhatsApp, "forged-2", []byte("299"), body), "sha256="+strings.Repeat("ab", 32)),
	)
	if err := results.FirstErr(); err != nil {
		t.Fatal(err)
	}

	s.waitCount(2, 30*time.Second, "SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND action = 'verify' AND outcome = 'rejected'")
	s.waitCount(1, 5*time.Second, "SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND reason = 'verify_failed' AND request_id = 'forged-1'")
	s.waitCount(1, 5*time.Second, "SELECT count() FROM {db}.audit_log WHERE stage = 'processor' AND reason = 'invalid_signature' AND request_id = 'forged-2'")
	if n := s.count("SELECT count() FROM {db}.messages"); n != 0 {
		t.Errorf("%d message rows after forged raw records, want 0", n)
	}
	if dl := s.readTopic(schemas.TopicDLQ); len(dl) != 2 {
		t.Errorf("%d dead letters, want 2", len(dl))
	}
}

func TestForgedWebhookAudited(t *testing.T) {
	s := newStack(t, stackOptions{})
	f, _ := webhookFactory(t, 11, 1)
	req := f.Forged()
	got := s.sendGenerated(req)
	if got.Status != http.StatusUnauthorized {
		t.Fatalf("forged webhook: status %d, want 401; body %s", got.Status, got.Body)
	}
	if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if !strings.Contains(string(got.Body), `"code":"invalid_signature"`) && !strings.Contains(string(got.Body), `"code":"missing_signature"`) {
		t.Errorf("problem body %s lacks a signature error code", got.Body)
	}
	s.waitCount(1, 30*time.Second, "SELECT count() FROM {db}.audit_log WHERE stage = 'ingest' AND outcome = 'rejected' AND status = 401")
	s.settle()
	if n := s.count("SELECT count() FROM {db}.messages"); n != 0 {
		t.Errorf("%d message rows after a forged webhook, want 0", n)
	}
	if n := len(s.readTopic(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records after a forged webhook, want 0", n)
	}
}

// TestKillMidStream kills syncguard with SIGKILL while webhooks stream in,
// restarts it, and checks that every acknowledged message is stored exactly
// once and the audit chain still verifies.
func TestKillMidStream(t *testing.T) {
	s := newStack(t, stackOptions{})
	f, _ := webhookFactory(t, time.Now().UnixNano(), 3)

	type result struct {
		report loadgen.Report
		err    error
	}
	done := make(chan result, 1)
	go func() {
		r, err := loadgen.Run(context.Background(), loadgen.Config{
			Target: s.ingestURL, Rate: 200, Duration: 12 * time.Second, Concurrency: 8,
			Timeout: 5 * time.Second, Mix: loadgen.Mix{Webhook: 1}, Webhooks: f,
		})
		done <- result{r, err}
	}()

	// Kill once some messages are stored, so the crash hits the whole
	// pipeline mid-stream, then start again on the same state.
	waitFor(t, 30*time.Second, "the first stored messages", func() bool {
		return s.count("SELECT count() FROM {db}.messages") >= 100
	})
	s.kill()
	time.Sleep(time.Second)
	s.start("all", false)

	res := <-done
	if res.err != nil {
		t.Fatalf("load: %v", res.err)
	}
	if res.report.Errors == 0 {
		t.Log("no request failed during the restart; the kill may have come between requests")
	}
	var acked []string
	for _, a := range res.report.Acks {
		if a.Kind == loadgen.KindWebhook && a.Status == "" {
			acked = append(acked, a.ID)
		}
	}
	if len(acked) < 500 {
		t.Fatalf("only %d acknowledged messages; the load did not run", len(acked))
	}

	// Every acknowledged message is stored, exactly once. A consumer that
	// restarts may wait for its group to rebalance, so allow a minute.
	missing := func() int {
		n := 0
		for i := 0; i < len(acked); i += 500 {
			batch := acked[i:min(i+500, len(acked))]
			n += len(batch) - int(s.count("SELECT uniqExact(message_id) FROM {db}.messages WHERE has(?, message_id)", batch))
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	if m := missing(); m > 0 {
		t.Errorf("%d of %d acknowledged messages are not stored", m, len(acked))
	}
	s.settle()
	if n := s.count("SELECT count() FROM (SELECT message_id FROM {db}.messages GROUP BY message_id HAVING count() > 1)"); n != 0 {
		t.Errorf("%d message ids stored more than once", n)
	}
	if n := s.count("SELECT count() FROM (SELECT kafka_partition, kafka_offset FROM {db}.audit_log GROUP BY kafka_partition, kafka_offset HAVING count() > 1)"); n != 0 {
		t.Errorf("%d audit offsets stored more than once", n)
	}
	out := s.mustRun("audit", "verify", "--config", s.configPath)
	if !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify after the crash: %s", out)
	}
	t.Logf("%d acknowledged messages, %d load errors during the restart", len(acked), res.report.Errors)
}

// TestAuditVerifyDetectsTampering changes one stored audit row and expects
// `syncguard audit verify` to fail and name it.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	s := newStack(t, stackOptions{})
	f, _ := webhookFactory(t, 21, 1)
	for range 5 {
		req := f.Next()
		if got := s.sendGenerated(req); got.Status != http.StatusOK {
			t.Fatalf("webhook: status %d", got.Status)
		}
	}
	s.settle()
	if out := s.mustRun("audit", "verify", "--config", s.configPath); !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify before tampering: %s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// mutations_sync is not on 18.16, so wait for the mutation to apply.
	if err := s.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.audit_log UPDATE detail = concat(detail, ' tampered') WHERE kafka_offset = 0", s.database)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the mutation", func() bool {
		return s.count("SELECT count() FROM system.mutations WHERE database = ? AND table = 'audit_log' AND is_done = 0", s.database) == 0
	})

	cmd := exec.Command(binary, "audit", "verify", "--config", s.configPath)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("audit verify passed after a row was changed:\n%s", out)
	}
	if !strings.Contains(string(out), "audit chain broken") {
		t.Errorf("audit verify output does not report the break:\n%s", out)
	}
}

// TestSameEventIDOnTwoDevices sends one event id from two users' devices:
// sync event ids are unique per device only, so both events stay stored,
// even after ClickHouse merges the table.
func TestSameEventIDOnTwoDevices(t *testing.T) {
	s := newStack(t, stackOptions{})
	send := func(device, subject string) {
		t.Helper()
		token, _, err := s.signer.SignToken(subject, device)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`[{"event_id":"evt-1","type":"note.updated","occurred_at":%q,"device_id":%q,"conversation_id":"c1","content":{"text":"note of %s"}}]`,
			time.Now().UTC().Format(time.RFC3339), device, device)
		got := s.send(http.MethodPost, "/v1/sync/events", [][2]string{
			{"Authorization", "Bearer " + token}, {"X-Device-ID", device}, {"Content-Type", "application/json"},
		}, []byte(body))
		if got.Status != http.StatusAccepted {
			t.Fatalf("%s: status %d, body %s", device, got.Status, got.Body)
		}
	}
	send("dev-victim", "user-a")
	send("dev-other", "user-b")

	s.waitCount(2, 30*time.Second, "SELECT count() FROM {db}.messages FINAL WHERE message_id = 'evt-1'")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ch.Exec(ctx, "OPTIMIZE TABLE "+s.database+".messages FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("SELECT uniqExact(device) FROM {db}.messages WHERE message_id = 'evt-1'"); n != 2 {
		t.Errorf("%d devices keep event evt-1 after the merge, want 2", n)
	}
}

func secretOf(s string) config.Secret { return config.Secret(s) }
