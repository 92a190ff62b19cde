package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

// controlValue encodes a control record, failing the test on error.
func controlValue(t *testing.T, rec schemas.ControlRecord) ([]byte, []byte) {
	t.Helper()
	v, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(schemas.ControlKey(rec.Kind, rec.Value)), v
}

func TestBlocklistApply(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	b := newBlocklist(100)
	apply := func(rec schemas.ControlRecord) {
		t.Helper()
		k, v := controlValue(t, rec)
		if err := b.apply(k, v, now); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.MustParseAddr

	apply(schemas.ControlRecord{Kind: schemas.ControlBlockSource, Value: "203.0.113.7", Active: true})
	apply(schemas.ControlRecord{Kind: schemas.ControlBlockSource, Value: "198.51.100.0/24", Active: true, ExpiresAt: now.Add(time.Hour)})
	apply(schemas.ControlRecord{Kind: schemas.ControlBlockSource, Value: "2001:db8:1::/48", Active: true})
	apply(schemas.ControlRecord{Kind: schemas.ControlBlockDevice, Value: "dev-1", Active: true})
	apply(schemas.ControlRecord{Kind: schemas.ControlRevokeToken, Value: "jti-1", Active: true})
	apply(schemas.ControlRecord{Kind: schemas.ControlBlockAccount, Value: "123", Active: true, ExpiresAt: now.Add(-time.Second)})

	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"exact address", b.sourceBlocked(addr("203.0.113.7"), now), true},
		{"mapped address", b.sourceBlocked(addr("::ffff:203.0.113.7"), now), true},
		{"neighbour address", b.sourceBlocked(addr("203.0.113.8"), now), false},
		{"inside cidr", b.sourceBlocked(addr("198.51.100.200"), now), true},
		{"cidr after expiry", b.sourceBlocked(addr("198.51.100.200"), now.Add(2*time.Hour)), false},
		{"inside ipv6 prefix", b.sourceBlocked(addr("2001:db8:1:ff::1"), now), true},
		{"outside ipv6 prefix", b.sourceBlocked(addr("2001:db8:2::1"), now), false},
		{"device", b.blocked(schemas.ControlBlockDevice, "dev-1", now), true},
		{"other device", b.blocked(schemas.ControlBlockDevice, "dev-2", now), false},
		{"token", b.blocked(schemas.ControlRevokeToken, "jti-1", now), true},
		{"already expired account", b.blocked(schemas.ControlBlockAccount, "123", now), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: blocked = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Lift by an inactive record, by a tombstone, and by expiry.
	apply(schemas.ControlRecord{Kind: schemas.ControlBlockSource, Value: "203.0.113.7", Active: false})
	if b.sourceBlocked(addr("203.0.113.7"), now) {
		t.Error("inactive record did not lift the block")
	}
	if err := b.apply([]byte("block_device/dev-1"), nil, now); err != nil {
		t.Fatal(err)
	}
	if b.blocked(schemas.ControlBlockDevice, "dev-1", now) {
		t.Error("tombstone did not lift the block")
	}
	if err := b.apply([]byte("block_source/2001:db8:1::/48"), nil, now); err != nil {
		t.Fatal(err)
	}
	if b.sourceBlocked(addr("2001:db8:1::1"), now) {
		t.Error("tombstone of a CIDR key did not lift the block")
	}
	b.prune(now.Add(2 * time.Hour))
	counts := b.counts()
	if counts[schemas.ControlBlockSource] != 0 || counts[schemas.ControlRevokeToken] != 1 {
		t.Errorf("after prune counts = %v, want no sources and one token", counts)
	}
}

func TestBlocklistRejectsBadRecords(t *testing.T) {
	b := newBlocklist(10)
	now := time.Now()
	tests := []struct {
		name       string
		key, value []byte
	}{
		{"unknown kind", []byte("block_everything/x"), []byte(`{}`)},
		{"no slash", []byte("block_source"), nil},
		{"bad json", []byte("block_device/d"), []byte(`{`)},
		{"key and value differ", []byte("block_device/d"), []byte(`{"kind":"block_device","value":"e","active":true}`)},
		{"bad address", []byte("block_source/not-an-ip"), []byte(`{"kind":"block_source","value":"not-an-ip","active":true}`)},
	}
	for _, tt := range tests {
		if err := b.apply(tt.key, tt.value, now); err == nil {
			t.Errorf("%s: apply accepted the record", tt.name)
		}
	}
	if counts := b.counts(); counts[schemas.ControlBlockDevice] != 0 {
		t.Errorf("counts = %v after bad records", counts)
	}
}

func TestBlocklistCap(t *testing.T) {
	b := newBlocklist(2)
	now := time.Now()
	for _, d := range []string{"d1", "d2", "d3"} {
		if err := b.set(schemas.ControlBlockDevice, d, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.set(schemas.ControlBlockSource, "192.0.2.1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if b.blocked(schemas.ControlBlockDevice, "d3", now) || b.sourceBlocked(netip.MustParseAddr("192.0.2.1"), now) {
		t.Error("blocks beyond the cap were held")
	}
	if got := b.dropped.Load(); got != 2 {
		t.Errorf("dropped = %d, want 2", got)
	}
	// Renewing a held block works when the list is full.
	if err := b.set(schemas.ControlBlockDevice, "d1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !b.blocked(schemas.ControlBlockDevice, "d1", now) || b.dropped.Load() != 2 {
		t.Error("renewing a held block failed when full")
	}
}

func TestBlocksEnforced(t *testing.T) {
	h := newHarness(t, nil)
	set := func(kind, value string) {
		t.Helper()
		k, v := controlValue(t, schemas.ControlRecord{Kind: kind, Value: value, Active: true})
		if err := h.srv.blocks.apply(k, v, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	body := waBody("blocked")
	signed := func() *http.Request {
		return webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)})
	}

	set(schemas.ControlBlockAccount, "200000000000002")
	wantProblem(t, h.do(signed()), http.StatusForbidden, schemas.ReasonBlocked)

	set(schemas.ControlBlockSource, "192.0.2.0/24") // httptest's RemoteAddr is 192.0.2.1
	wantProblem(t, h.do(signed()), http.StatusForbidden, schemas.ReasonBlocked)

	claims := h.claims()
	claims["jti"] = "revoked-1"
	req := h.syncRequest("application/json", []byte(`[`+h.event("e1")+`]`), h.token(claims))
	req.RemoteAddr = "198.51.100.1:1000"
	set(schemas.ControlRevokeToken, "revoked-1")
	rec := h.do(req)
	wantProblem(t, rec, http.StatusUnauthorized, schemas.ReasonInvalidToken)
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	if !h.srv.tokenRevoked("revoked-1") || h.srv.tokenRevoked("") || h.srv.tokenRevoked("other") {
		t.Error("tokenRevoked does not follow the revoke_token blocks")
	}

	set(schemas.ControlBlockDevice, testDevice)
	req = h.syncRequest("application/json", []byte(`[`+h.event("e2")+`]`), h.token(h.claims()))
	req.RemoteAddr = "198.51.100.1:1000"
	wantProblem(t, h.do(req), http.StatusForbidden, schemas.ReasonBlocked)

	// Without a valid token, a blocked device gets the same 401 as any
	// other, so a prober cannot learn which devices are blocked.
	for _, token := range []string{"", "not.a.token"} {
		probe := h.syncRequest("application/json", []byte(`[`+h.event("e3")+`]`), token)
		probe.RemoteAddr = "198.51.100.2:1000"
		wantProblem(t, h.do(probe), http.StatusUnauthorized, schemas.ReasonInvalidToken)
	}

	// Audit records are keyed by source, so their order across
	// partitions is not the request order.
	found := false
	for _, ev := range h.auditEvents(6) {
		if ev.Route == routeSync && ev.Reason == schemas.ReasonBlocked {
			found = true
			if ev.Device != testDevice || ev.Source != "198.51.100.1" {
				t.Errorf("device block audit event: device %q source %q, want %s from 198.51.100.1", ev.Device, ev.Source, testDevice)
			}
		}
	}
	if !found {
		t.Error("no audit event for the blocked device")
	}
}

// TestAdmitDevice covers the device checks meant to run after the token
// check of the sync handler.
func TestAdmitDevice(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RateLimits.Device = RateLimit{Rate: 0.001, Burst: 1}
	})
	admit := func(device string) (*exchange, bool) {
		x := &exchange{w: httptest.NewRecorder(), requestID: "r"}
		return x, h.srv.admitDevice(x, device)
	}
	if _, ok := admit("dev-a"); !ok {
		t.Fatal("first request of a device rejected")
	}
	x, ok := admit("dev-a")
	if ok || x.reason != schemas.ReasonRateLimited || x.status != http.StatusTooManyRequests {
		t.Errorf("second request: ok %v reason %q status %d, want 429 rate_limited", ok, x.reason, x.status)
	}
	k, v := controlValue(t, schemas.ControlRecord{Kind: schemas.ControlBlockDevice, Value: "dev-b", Active: true})
	if err := h.srv.blocks.apply(k, v, time.Now()); err != nil {
		t.Fatal(err)
	}
	x, ok = admit("dev-b")
	if ok || x.reason != schemas.ReasonBlocked {
		t.Errorf("blocked device: ok %v reason %q, want blocked", ok, x.reason)
	}
}

// TestReadyAfterControlTopic checks that Ready waits for the control topic
// and that a published block reaches a serving instance.
func TestReadyAfterControlTopic(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := PublishControl(ctx, h.kafka, schemas.ControlRecord{Kind: schemas.ControlBlockDevice, Value: "old", Active: true, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if h.srv.Ready() {
		t.Fatal("Ready before Serve")
	}
	serving(t, h)
	waitFor(t, "readiness", h.srv.Ready)
	if !h.srv.blocks.blocked(schemas.ControlBlockDevice, "old", time.Now()) {
		t.Error("ready before the existing block was applied")
	}
	if got := gaugeWith(t, h, "syncguard_ingest_blocks", schemas.ControlBlockDevice); got != 1 {
		t.Errorf("syncguard_ingest_blocks{kind=block_device} = %g, want 1", got)
	}
}

func gaugeWith(t *testing.T, h *harness, name, kind string) float64 {
	t.Helper()
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "kind" && lp.GetValue() == kind {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// TestIntegrationBlocksReachEveryInstance runs two servers on the real
// Kafka. A block published with PublishControl, the code behind
// "syncguard block add", turns both away within 2s, and lifting it lets
// requests through again.
func TestIntegrationBlocksReachEveryInstance(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	kcfg := testKafkaConfig()
	kcfg.Brokers = brokers
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	testenv.CreateTopics(t, kcfg)

	keys := newTestKeys(t)
	var bases []string
	for i := range 2 {
		srv, err := New(Options{Config: testConfig(keys), Kafka: kcfg, EnvelopeKey: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- srv.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-ran; err != nil {
				t.Errorf("server %d: Run = %v", i, err)
			}
		})
		waitFor(t, "the server to be ready", srv.Ready)
		bases = append(bases, "http://"+srv.Addr())
	}

	body := waBody("integration block")
	status := func(base string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webhooks/whatsapp", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Hub-Signature-256", sign(testAppSecret, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, base := range bases {
		if got := status(base); got != http.StatusOK {
			t.Fatalf("%s before the block: status %d", base, got)
		}
	}

	publishAndWait(t, ctx, kcfg, bases, status, true, http.StatusForbidden)
	publishAndWait(t, ctx, kcfg, bases, status, false, http.StatusOK)
}

// publishAndWait publishes a block_source for 127.0.0.1 (active or lifted)
// and waits until every base responds with status want, failing after 2s.
func publishAndWait(t *testing.T, ctx context.Context, kcfg kafkaclient.Config, bases []string, status func(string) int, active bool, want int) {
	t.Helper()
	rec := schemas.ControlRecord{
		Kind: schemas.ControlBlockSource, Value: "127.0.0.1", Active: active,
		Reason: "integration test", Actor: "test", CreatedAt: time.Now().UTC(),
	}
	if err := PublishControl(ctx, kcfg, rec); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	for _, base := range bases {
		for {
			got := status(base)
			if got == want {
				break
			}
			if time.Since(acked) > 2*time.Second {
				t.Fatalf("%s answers %d 2s after the control record was acknowledged, want %d", base, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("all instances answer %d %s after the acknowledgement", want, time.Since(acked).Round(time.Millisecond))

	listed, err := ListControl(ctx, kcfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantListed := 0
	if active {
		wantListed = 1
	}
	if len(listed) != wantListed {
		t.Errorf("ListControl = %+v, want %d blocks", listed, wantListed)
	}
}

func TestValidateControlRecordPrefixes(t *testing.T) {
	f := func(value, wantErr string) {
		t.Helper()
		err := ValidateControlRecord(schemas.ControlRecord{Kind: schemas.ControlBlockSource, Value: value, Active: true, Reason: "test"})
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%q: %v, want it accepted", value, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%q: error %v, want one containing %q", value, err, wantErr)
		}
	}
	f("127.0.0.9", "")
	f("127.0.0.8/30", "")
	f("2001:db8::/48", "")
	f("127.0.0.9/30", `as "127.0.0.8/30"`)
	f("127.0.0.9/32", `as "127.0.0.9"`)
	f("0.0.0.0/0", "shortest prefix allowed is /8")
	f("::/0", "shortest prefix allowed is /32")
}

// TestDeviceMismatchAuditsTokenDevice sends a valid token for one device
// with another device's X-Device-ID: the audit event must name the token's
// device, so that failures counted per device cannot be pinned on the
// device named in the header.
func TestDeviceMismatchAuditsTokenDevice(t *testing.T) {
	h := newHarness(t, nil)
	req := h.syncRequest("application/json", []byte("["+h.event("e1")+"]"), h.token(h.claims()))
	req.Header.Set("X-Device-ID", "dev-victim")
	rec := h.do(req)
	wantProblem(t, rec, http.StatusForbidden, schemas.ReasonDeviceMismatch)
	evs := h.auditEvents(1)
	last := evs[len(evs)-1]
	if last.Device != testDevice {
		t.Errorf("audit Device = %q, want the token's device %q", last.Device, testDevice)
	}
	if !strings.Contains(last.Detail, "dev-victim") {
		t.Errorf("audit Detail = %q, want it to name the header's device", last.Detail)
	}
}

func TestBlocklistIgnoresInvalidActiveRecords(t *testing.T) {
	now := time.Now()
	f := func(kind, value string) {
		t.Helper()
		b := newBlocklist(100)
		rec := schemas.ControlRecord{Kind: kind, Value: value, Active: true, Reason: "test"}
		v, _ := json.Marshal(rec)
		if err := b.apply([]byte(schemas.ControlKey(kind, value)), v, now); err == nil {
			t.Errorf("%s %q applied, want it rejected", kind, value)
		}
		if b.blocked(kind, value, now) {
			t.Errorf("%s %q is enforced", kind, value)
		}
	}
	f(schemas.ControlRevokeToken, "")
	f(schemas.ControlBlockSource, "127.0.0.9/30")
	f(schemas.ControlBlockSource, "0.0.0.0/0")
}
