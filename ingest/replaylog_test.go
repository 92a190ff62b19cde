package ingest

import (
	"context"
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

// produceReplay writes one record with key and value to the replay topic
// of h and waits until h's follower has read it.
func produceReplay(t *testing.T, h *harness, key, value []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: h.kafka.Topic(schemas.TopicReplay), Key: key, Value: value}
	if err := h.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.replay.waitPast(ctx, rec.Partition, rec.Offset); err != nil {
		t.Fatal(err)
	}
}

// claimBody is the body of a claim record written at at.
func claimBody(at time.Time) []byte {
	body := make([]byte, claimBodyLen)
	body[0] = claimRecordVersion
	binary.BigEndian.PutUint64(body[1:], uint64(at.UnixNano()))
	return body
}

// TestReplayRecordsNeedMAC writes replay records without the envelope key:
// a claim of a proof's jti and a record marking a sync event stored. Both
// must be ignored, so the proof and the event are still accepted.
func TestReplayRecordsNeedMAC(t *testing.T) {
	h := dpopHarness(t, nil)
	r := newDPoPRequest(h, newECDPoPKey(t), newECDPoPKey(t), nil)
	jti, _ := r.claims["jti"].(string)
	key := keyOf(r.keyA.jkt, jti)

	forger := newReplayLog(h.kafka.Topic(schemas.TopicReplay), h.client, []byte("not the envelope key, 32 bytes!"), time.Minute, 10, time.Now, nil)
	produceReplay(t, h, key[:], forger.seal(key[:], claimBody(h.clock())))
	// A deployment with another topic prefix and the same keyring.
	neighbour := newReplayLog("other."+schemas.TopicReplay, h.client, h.envelope, time.Minute, 10, time.Now, nil)
	produceReplay(t, h, key[:], neighbour.seal(key[:], claimBody(h.clock())))
	produceReplay(t, h, key[:], append(claimBody(h.clock()), make([]byte, replayMACLen)...))
	produceReplay(t, h, key[:], claimBody(h.clock()))

	ev := h.event("evt-forged")
	stored := keyOf(testDevice, "evt-forged")
	body := append(claimBody(h.clock()), byte(len("forged-request")))
	body[0] = acceptedRecordVersion
	body = append(append(body, "forged-request"...), stored[:]...)
	produceReplay(t, h, []byte("forged-request"), forger.seal([]byte("forged-request"), body))

	if got := gaugeValue(t, h, "syncguard_ingest_replay_invalid_records_total"); got != 5 {
		t.Errorf("invalid replay records = %v, want 5", got)
	}
	if rec := h.do(r.request(r.sign())); rec.Code != http.StatusAccepted {
		t.Errorf("proof after forged claims: status = %d; body %s", rec.Code, rec.Body.String())
	}
	_, resp := h.postBatch(ev)
	checkResults(t, resp, wantResult{status: eventAccepted})
}

// TestReplayClaimsSurviveSkewedWriter checks that records from instances
// whose clocks run ahead do not expire the claims of the others, and that
// their own claims count however far off their clocks are.
func TestReplayClaimsSurviveSkewedWriter(t *testing.T) {
	h := dpopHarness(t, nil)
	r := newDPoPRequest(h, newECDPoPKey(t), newECDPoPKey(t), nil)
	first := r.sign()
	if rec := h.do(r.request(first)); rec.Code != http.StatusAccepted {
		t.Fatalf("first use: status = %d; body %s", rec.Code, rec.Body.String())
	}
	h.advance(30 * time.Second)

	log := h.srv.replay
	skewed := []time.Duration{50 * time.Second, 100 * time.Second, time.Hour, -time.Hour}
	for _, ahead := range skewed {
		other := keyOf("other-jkt", "jti-ahead-"+ahead.String())
		produceReplay(t, h, other[:], log.seal(other[:], claimBody(h.clock().Add(ahead))))
	}
	if got := gaugeValue(t, h, "syncguard_ingest_replay_invalid_records_total"); got != 0 {
		t.Errorf("invalid replay records = %v, want 0", got)
	}
	if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != float64(1+len(skewed)) {
		t.Errorf("live claims = %v, want %d: the first proof's and every skewed writer's", got, 1+len(skewed))
	}
	r.claims["iat"] = h.clock().Unix()
	wantProblem(t, h.do(r.request(r.sign())), http.StatusUnauthorized, schemas.ReasonInvalidDPoPProof)
}
