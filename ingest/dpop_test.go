package ingest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

const (
	testOrigin   = "https://ingest.test.invalid"
	testSyncPath = "/v1/sync/events"
)

// dpopKey is a device's proof key.
type dpopKey struct {
	alg    string
	method jwt.SigningMethod
	priv   any
	jwk    map[string]any
	jkt    string
}

func newECDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ecDPoPKeyOf(t, priv)
}

func ecDPoPKeyOf(t testing.TB, priv *ecdsa.PrivateKey) *dpopKey {
	t.Helper()
	point, err := priv.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := b64(point[1:33]), b64(point[33:])
	return &dpopKey{
		alg: algES256, method: jwt.SigningMethodES256, priv: priv,
		jwk: map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y},
		jkt: thumbprintOf(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`),
	}
}

func newEdDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edDPoPKeyOf(priv)
}

func edDPoPKeyOf(priv ed25519.PrivateKey) *dpopKey {
	x := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	return &dpopKey{
		alg: algEdDSA, method: jwt.SigningMethodEdDSA, priv: priv,
		jwk: map[string]any{"kty": "OKP", "crv": "Ed25519", "x": x},
		jkt: thumbprintOf(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`),
	}
}

// dpopRequest is one DPoP request under construction. A case edits the
// token claims, then the proof and the request.
type dpopRequest struct {
	h          *harness
	keyA, keyB *dpopKey
	token      string
	scheme     string
	method     string
	target     string
	header     map[string]any // proof header
	claims     jwt.MapClaims  // proof claims
	signer     *dpopKey
	// proofs turns the signed proof into the DPoP header values.
	proofs  func(proof string) []string
	devices []string
	extra   http.Header
}

// athOf is the ath claim for token.
func athOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// newDPoPRequest returns a valid request bound to keyA, after editToken
// changed the access token's claims.
func newDPoPRequest(h *harness, keyA, keyB *dpopKey, editToken func(h *harness, c jwt.MapClaims)) *dpopRequest {
	c := h.claims()
	c["cnf"] = map[string]any{"jkt": keyA.jkt}
	if editToken != nil {
		editToken(h, c)
	}
	tok := h.token(c)
	return &dpopRequest{
		h: h, keyA: keyA, keyB: keyB, token: tok,
		scheme: "DPoP", method: http.MethodPost, target: testSyncPath,
		header: map[string]any{"typ": "dpop+jwt", "alg": keyA.alg, "jwk": keyA.jwk},
		claims: jwt.MapClaims{
			"jti": newID(),
			"htm": http.MethodPost,
			"htu": testOrigin + testSyncPath,
			"iat": h.clock().Unix(),
			"ath": athOf(tok),
		},
		signer: keyA,
		proofs: func(p string) []string { return []string{p} },
	}
}

// sign returns the proof signed by r.signer with r.header as given.
func (r *dpopRequest) sign() string {
	r.h.t.Helper()
	alg, _ := r.header["alg"].(string)
	method := jwt.GetSigningMethod(alg)
	if method == nil || method.Alg() != r.signer.alg {
		// The header names another alg than the signer's: sign with the
		// signer's method and keep the header as the case wrote it.
		method = r.signer.method
	}
	tok := jwt.NewWithClaims(method, r.claims)
	tok.Header = r.header
	s, err := tok.SignedString(r.signer.priv)
	if err != nil {
		r.h.t.Fatal(err)
	}
	return s
}

// request builds the HTTP request with proof as the signed proof.
func (r *dpopRequest) request(proof string) *http.Request {
	h := r.h
	req := h.syncRequest("application/json", []byte("["+h.event("e-"+newID())+"]"), "")
	req.Method = r.method
	req.URL.RawQuery = ""
	if path, query, ok := strings.Cut(r.target, "?"); ok {
		req.URL.Path, req.URL.RawQuery = path, query
	} else {
		req.URL.Path = r.target
	}
	req.RequestURI = r.target
	if r.scheme != "" {
		req.Header.Set("Authorization", r.scheme+" "+r.token)
	}
	if proofs := r.proofs(proof); proofs != nil {
		req.Header["Dpop"] = proofs
	}
	if r.devices != nil {
		req.Header["X-Device-Id"] = r.devices
	}
	for k, v := range r.extra {
		if k == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	return req
}

type dpopCase struct {
	name      string
	editToken func(h *harness, c jwt.MapClaims)
	edit      func(r *dpopRequest)
	// post changes the signed proof.
	post   func(r *dpopRequest, proof string) string
	status int
	code   string
}

// highS returns an ES256 JWS with its signature's s replaced by n - s: a
// different, still valid signature over the same bytes.
func highS(proof string) string {
	i := strings.LastIndexByte(proof, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(proof[i+1:])
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	out := append([]byte{}, sig[:32]...)
	out = append(out, s.FillBytes(make([]byte, 32))...)
	return proof[:i+1] + base64.RawURLEncoding.EncodeToString(out)
}

func runDPoPCases(t *testing.T, h *harness, keyA, keyB *dpopKey, cases []dpopCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := newDPoPRequest(h, keyA, keyB, tt.editToken)
			if tt.edit != nil {
				tt.edit(r)
			}
			proof := r.sign()
			if tt.post != nil {
				proof = tt.post(r, proof)
			}
			rec := h.do(r.request(proof))
			if tt.status == http.StatusAccepted {
				if rec.Code != http.StatusAccepted {
					t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body.String())
				}
				return
			}
			wantProblem(t, rec, tt.status, tt.code)
			challenge := rec.Header().Get("WWW-Authenticate")
			switch tt.code {
			case schemas.ReasonInvalidDPoPProof:
				if challenge != `DPoP error="invalid_dpop_proof"` {
					t.Errorf("WWW-Authenticate = %q", challenge)
				}
			case schemas.ReasonInvalidToken:
				if challenge != `DPoP error="invalid_token"` && challenge != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", challenge)
				}
			}
		})
	}
}

func dpopHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	return newHarness(t, func(c *Config) {
		c.PublicOrigin = testOrigin
		if edit != nil {
			edit(c)
		}
	})
}

// TestDPoP reproduces the DPoP cases A13 (htu and htm matching) and A14
// (key binding, proof shape, device binding).
func TestDPoP(t *testing.T) {
	h := dpopHarness(t, nil)
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	const proof401 = schemas.ReasonInvalidDPoPProof
	htu := func(v string) func(r *dpopRequest) { return func(r *dpopRequest) { r.claims["htu"] = v } }
	cases := []dpopCase{
		{name: "control", status: 202},
		{name: "control EdDSA proof key", edit: func(r *dpopRequest) {
			ed := newEdDPoPKey(t)
			*r = *newDPoPRequest(h, ed, keyB, nil)
		}, status: 202},

		// A13: htu and htm.
		{name: "request has a query, htu has none", edit: func(r *dpopRequest) { r.target = testSyncPath + "?x=1" }, status: 202},
		{name: "request and htu have the same query", edit: func(r *dpopRequest) {
			r.target = testSyncPath + "?x=1"
			r.claims["htu"] = testOrigin + testSyncPath + "?x=1"
		}, status: 202},
		{name: "htu scheme and host upper-case", edit: htu("HTTPS://INGEST.TEST.INVALID" + testSyncPath), status: 202},
		{name: "htu with default port", edit: htu("https://ingest.test.invalid:443" + testSyncPath), status: 202},
		{name: "htu with fragment", edit: htu(testOrigin + testSyncPath + "#frag"), status: 202},
		{name: "htu trailing slash", edit: htu(testOrigin + testSyncPath + "/"), status: 401, code: proof401},
		{name: "htu path upper-case", edit: htu(testOrigin + "/V1/SYNC/EVENTS"), status: 401, code: proof401},
		{name: "htu dot segments", edit: htu(testOrigin + "/v1/x/../sync/events"), status: 401, code: proof401},
		{name: "htu percent-encoded unreserved", edit: htu(testOrigin + "/v1/sync/%65vents"), status: 401, code: proof401},
		{name: "htu other host", edit: htu("https://evil.test.invalid" + testSyncPath), status: 401, code: proof401},
		{name: "htu other port", edit: htu("https://ingest.test.invalid:8443" + testSyncPath), status: 401, code: proof401},
		{name: "htu http scheme", edit: htu("http://ingest.test.invalid" + testSyncPath), status: 401, code: proof401},
		{name: "htu other path", edit: htu(testOrigin + "/v1/sync/other"), status: 401, code: proof401},
		{name: "htu userinfo", edit: htu("https://user@ingest.test.invalid" + testSyncPath), status: 401, code: proof401},
		{name: "htu relative", edit: htu(testSyncPath), status: 401, code: proof401},
		{name: "htu not a string", edit: func(r *dpopRequest) { r.claims["htu"] = 1 }, status: 401, code: proof401},
		{name: "htm lower-case post", edit: func(r *dpopRequest) { r.claims["htm"] = "post" }, status: 401, code: proof401},
		{name: "htm GET", edit: func(r *dpopRequest) { r.claims["htm"] = "GET" }, status: 401, code: proof401},
		{name: "Host header spoofed to match htu", edit: func(r *dpopRequest) {
			r.claims["htu"] = "https://evil.test.invalid" + testSyncPath
			r.extra = http.Header{"Host": {"evil.test.invalid"}}
		}, status: 401, code: proof401},
		{name: "X-Forwarded-Host and -Proto spoofed", edit: func(r *dpopRequest) {
			r.claims["htu"] = "http://evil.test.invalid" + testSyncPath
			r.extra = http.Header{"X-Forwarded-Host": {"evil.test.invalid"}, "X-Forwarded-Proto": {"http"}}
		}, status: 401, code: proof401},
		{name: "proof without htu", edit: func(r *dpopRequest) { delete(r.claims, "htu") }, status: 401, code: proof401},
		{name: "proof without htm", edit: func(r *dpopRequest) { delete(r.claims, "htm") }, status: 401, code: proof401},
		{name: "proof without iat", edit: func(r *dpopRequest) { delete(r.claims, "iat") }, status: 401, code: proof401},

		// A14: key binding and scheme.
		{name: "stolen token, proof by attacker key", edit: func(r *dpopRequest) {
			r.header["jwk"], r.signer = keyB.jwk, keyB
		}, status: 401, code: proof401},
		{name: "bound token as Bearer without proof", edit: func(r *dpopRequest) {
			r.scheme = "Bearer"
			r.proofs = func(string) []string { return nil }
		}, status: 401, code: schemas.ReasonInvalidToken},
		{name: "bound token as Bearer with proof", edit: func(r *dpopRequest) { r.scheme = "Bearer" }, status: 401, code: schemas.ReasonInvalidToken},
		{name: "bound token without proof", edit: func(r *dpopRequest) {
			r.proofs = func(string) []string { return nil }
		}, status: 401, code: proof401},
		{name: "unbound token with DPoP scheme", editToken: func(_ *harness, c jwt.MapClaims) { delete(c, "cnf") }, status: 401, code: schemas.ReasonInvalidToken},
		{name: "proof without Authorization", edit: func(r *dpopRequest) { r.scheme = "" }, status: 401, code: schemas.ReasonInvalidToken},
		{name: "jwk with private d", edit: func(r *dpopRequest) {
			jwk := map[string]any{"d": "AAAA"}
			for k, v := range keyA.jwk {
				jwk[k] = v
			}
			r.header["jwk"] = jwk
		}, status: 401, code: proof401},
		{name: "alg none", post: func(r *dpopRequest, proof string) string {
			r.header["alg"] = "none"
			return rawToken(r.header, r.claims, nil)
		}, status: 401, code: proof401},
		{name: "alg HS256", post: func(r *dpopRequest, proof string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, r.claims)
			tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", map[string]any{"kty": "oct", "k": "c2VjcmV0"}
			s, _ := tok.SignedString([]byte("secret"))
			return s
		}, status: 401, code: proof401},
		{name: "alg EdDSA with P-256 jwk", edit: func(r *dpopRequest) {
			ed := newEdDPoPKey(t)
			r.header["alg"], r.signer = algEdDSA, ed
		}, status: 401, code: proof401},
		{name: "typ JWT", edit: func(r *dpopRequest) { r.header["typ"] = "JWT" }, status: 401, code: proof401},
		{name: "typ missing", edit: func(r *dpopRequest) { delete(r.header, "typ") }, status: 401, code: proof401},
		{name: "typ upper-case", edit: func(r *dpopRequest) { r.header["typ"] = "DPOP+JWT" }, status: 401, code: proof401},
		{name: "jwk missing", edit: func(r *dpopRequest) { delete(r.header, "jwk") }, status: 401, code: proof401},
		{name: "jwk oct", edit: func(r *dpopRequest) { r.header["jwk"] = map[string]any{"kty": "oct", "k": "c2VjcmV0"} }, status: 401, code: proof401},
		{name: "jwk as string", edit: func(r *dpopRequest) { r.header["jwk"] = "x" }, status: 401, code: proof401},
		{name: "crit header", edit: func(r *dpopRequest) { r.header["crit"] = []string{"x"} }, status: 401, code: proof401},
		{name: "iat 10 minutes old", edit: func(r *dpopRequest) { r.claims["iat"] = h.clock().Add(-10 * time.Minute).Unix() }, status: 401, code: proof401},
		{name: "iat 10 minutes ahead", edit: func(r *dpopRequest) { r.claims["iat"] = h.clock().Add(10 * time.Minute).Unix() }, status: 401, code: proof401},
		{name: "iat 61 seconds old", edit: func(r *dpopRequest) { r.claims["iat"] = h.clock().Add(-61 * time.Second).Unix() }, status: 401, code: proof401},
		{name: "iat 59 seconds old", edit: func(r *dpopRequest) { r.claims["iat"] = h.clock().Add(-59 * time.Second).Unix() }, status: 202},
		{name: "iat as string", edit: func(r *dpopRequest) { r.claims["iat"] = "1" }, status: 401, code: proof401},
		{name: "header key A, signed by key B", edit: func(r *dpopRequest) { r.signer = keyB }, status: 401, code: proof401},
		{name: "signature tampered", post: func(_ *dpopRequest, proof string) string { return flipSignatureBit(proof) }, status: 401, code: proof401},
		{name: "two DPoP headers", edit: func(r *dpopRequest) {
			r.proofs = func(p string) []string { return []string{p, p} }
		}, status: 400, code: schemas.ReasonInvalidRequest},
		{name: "ath missing", edit: func(r *dpopRequest) { delete(r.claims, "ath") }, status: 401, code: proof401},
		{name: "ath of another token", edit: func(r *dpopRequest) { r.claims["ath"] = athOf(r.token + "x") }, status: 401, code: proof401},
		{name: "jti missing", edit: func(r *dpopRequest) { delete(r.claims, "jti") }, status: 401, code: proof401},
		{name: "jti 4096 characters", edit: func(r *dpopRequest) { r.claims["jti"] = strings.Repeat("j", 4096) }, status: 401, code: proof401},
		{name: "proof over 8 KiB", edit: func(r *dpopRequest) { r.claims["pad"] = strings.Repeat("p", 8<<10) }, status: 401, code: proof401},
		{name: "cnf.jkt with padding", editToken: func(_ *harness, c jwt.MapClaims) {
			c["cnf"] = map[string]any{"jkt": keyA.jkt + "="}
		}, status: 401, code: schemas.ReasonInvalidToken},
		{name: "cnf.jkt of another key", editToken: func(_ *harness, c jwt.MapClaims) {
			c["cnf"] = map[string]any{"jkt": keyB.jkt}
		}, status: 401, code: proof401},
		{name: "cnf as string", editToken: func(_ *harness, c jwt.MapClaims) { c["cnf"] = keyA.jkt }, status: 401, code: schemas.ReasonInvalidToken},
		{name: "cnf without jkt", editToken: func(_ *harness, c jwt.MapClaims) {
			c["cnf"] = map[string]any{"x5t#S256": keyA.jkt}
		}, status: 401, code: schemas.ReasonInvalidToken},

		// A14: device binding.
		{name: "device mismatch", edit: func(r *dpopRequest) { r.devices = []string{"dev-43"} }, status: 403, code: schemas.ReasonDeviceMismatch},
		{name: "device missing", edit: func(r *dpopRequest) { r.devices = []string{} }, status: 400, code: schemas.ReasonInvalidRequest},
		{name: "device case changed", edit: func(r *dpopRequest) { r.devices = []string{"DEV-42"} }, status: 403, code: schemas.ReasonDeviceMismatch},
		{name: "device twice", edit: func(r *dpopRequest) { r.devices = []string{testDevice, testDevice} }, status: 400, code: schemas.ReasonInvalidRequest},
		{name: "device comma list", edit: func(r *dpopRequest) { r.devices = []string{testDevice + ",dev-43"} }, status: 400, code: schemas.ReasonInvalidRequest},
	}
	runDPoPCases(t, h, keyA, keyB, cases)
	if n := len(h.records(schemas.TopicRaw)); n != 8 {
		t.Errorf("%d raw records, want 8 from the accepted cases", n)
	}
}

// TestDPoPReplay reproduces A16: a proof's jti is accepted once per key,
// whatever the bytes of the proof.
func TestDPoPReplay(t *testing.T) {
	h := dpopHarness(t, nil)
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)

	r := newDPoPRequest(h, keyA, keyB, nil)
	first := r.sign()
	if rec := h.do(r.request(first)); rec.Code != http.StatusAccepted {
		t.Fatalf("first use: status = %d; body %s", rec.Code, rec.Body.String())
	}
	tests := []struct {
		name  string
		proof func() string
	}{
		{"exact replay", func() string { return first }},
		{"malleated signature (high s)", func() string { return highS(first) }},
		{"fresh signature, same jti", r.sign},
		{"same jti, other htm and iat", func() string {
			r.claims["iat"] = h.clock().Add(time.Second).Unix()
			return r.sign()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proof := tt.proof()
			rec := h.do(r.request(proof))
			wantProblem(t, rec, http.StatusUnauthorized, schemas.ReasonInvalidDPoPProof)
			if got := rec.Header().Get("WWW-Authenticate"); got != `DPoP error="invalid_dpop_proof"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}

	// The same jti under another key is another proof.
	other := newDPoPRequest(h, keyB, keyA, nil)
	other.claims["jti"] = r.claims["jti"]
	if rec := h.do(other.request(other.sign())); rec.Code != http.StatusAccepted {
		t.Errorf("same jti, other key: status = %d; body %s", rec.Code, rec.Body.String())
	}

	if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != 2 {
		t.Errorf("replay cache gauge = %v, want 2", got)
	}

	// After twice dpop_max_age the jti is forgotten; by then the first
	// proof's iat is stale, so only a freshly signed proof passes.
	h.advance(2*time.Minute + time.Second)
	wantProblem(t, h.do(r.request(first)), http.StatusUnauthorized, schemas.ReasonInvalidDPoPProof)
	r.claims["iat"] = h.clock().Unix()
	if rec := h.do(r.request(r.sign())); rec.Code != http.StatusAccepted {
		t.Errorf("jti after expiry with a fresh iat: status = %d; body %s", rec.Code, rec.Body.String())
	}
	if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != 1 {
		t.Errorf("replay cache gauge = %v, want 1 after the old entries expired", got)
	}

	if n := len(h.records(schemas.TopicRaw)); n != 3 {
		t.Errorf("%d raw records, want 3", n)
	}
}

// TestDPoPReplayCacheFull checks that a full cache refuses new proofs
// rather than forgetting live ones.
func TestDPoPReplayCacheFull(t *testing.T) {
	h := dpopHarness(t, func(c *Config) { c.SyncAuth.DPoPReplayCacheMax = 2 })
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	for i := range 2 {
		r := newDPoPRequest(h, keyA, keyB, nil)
		if rec := h.do(r.request(r.sign())); rec.Code != http.StatusAccepted {
			t.Fatalf("proof %d: status = %d; body %s", i, rec.Code, rec.Body.String())
		}
	}
	r := newDPoPRequest(h, keyA, keyB, nil)
	wantProblem(t, h.do(r.request(r.sign())), http.StatusServiceUnavailable, schemas.ReasonUnavailable)
	if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != 2 {
		t.Errorf("replay cache gauge = %v, want 2", got)
	}
}

// TestDPoPDeviceLimitBeforeClaim checks that proofs beyond the device's
// rate limit take no place in the shared replay log, so one device cannot
// fill it for every other client.
func TestDPoPDeviceLimitBeforeClaim(t *testing.T) {
	checkDeviceLimitBeforeClaim(t, dpopHarness(t, func(c *Config) { c.RateLimits.Device = RateLimit{Rate: 0.001, Burst: 2} }))
}

func TestIntegrationDPoPDeviceLimitBeforeClaim(t *testing.T) {
	kcfg := testKafkaConfig()
	kcfg.Brokers = testenv.KafkaBrokers(t)
	testenv.CreateTopics(t, kcfg)
	keys := newTestKeys(t)
	cfg := realBrokerConfig(keys)
	cfg.PublicOrigin = testOrigin
	cfg.RateLimits.Device = RateLimit{Rate: 0.001, Burst: 2}
	checkDeviceLimitBeforeClaim(t, newHarnessOn(t, cfg, kcfg, keys))
}

func checkDeviceLimitBeforeClaim(t *testing.T, h *harness) {
	t.Helper()
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	limited := 0
	for i := range 6 {
		r := newDPoPRequest(h, keyA, keyB, nil)
		rec := h.do(r.request(r.sign()))
		switch {
		case i < 2 && rec.Code != http.StatusAccepted:
			t.Fatalf("proof %d: status = %d, want 202; body %s", i, rec.Code, rec.Body.String())
		case i >= 2 && rec.Code != http.StatusTooManyRequests:
			t.Fatalf("proof %d: status = %d, want 429; body %s", i, rec.Code, rec.Body.String())
		case rec.Code == http.StatusTooManyRequests:
			limited++
		}
	}
	if limited != 4 {
		t.Errorf("%d requests limited, want 4", limited)
	}
	if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != 2 {
		t.Errorf("replay cache gauge = %v, want 2: rate-limited proofs were claimed", got)
	}
}

func TestDPoPRequiredWhenUnboundTokensOff(t *testing.T) {
	h := dpopHarness(t, func(c *Config) { c.SyncAuth.AllowUnboundTokens = false })
	rec := h.do(h.syncRequest("application/json", []byte("["+h.event("e-1")+"]"), h.token(h.claims())))
	wantProblem(t, rec, http.StatusUnauthorized, schemas.ReasonInvalidToken)
	if got := rec.Header().Get("WWW-Authenticate"); got != `DPoP error="invalid_token"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	r := newDPoPRequest(h, keyA, keyB, nil)
	if rec := h.do(r.request(r.sign())); rec.Code != http.StatusAccepted {
		t.Errorf("bound token: status = %d; body %s", rec.Code, rec.Body.String())
	}
}

func TestDPoPWithoutPublicOrigin(t *testing.T) {
	h := newHarness(t, nil)
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	r := newDPoPRequest(h, keyA, keyB, nil)
	wantProblem(t, h.do(r.request(r.sign())), http.StatusUnauthorized, schemas.ReasonInvalidDPoPProof)
}

// gaugeValue returns the value of an unlabelled gauge.
func gaugeValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			if c := f.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge or counter %s", name)
	return 0
}

// TestDPoPOverTCP sends the headers as a client writes them on the wire,
// with a query string and a Host that is not the public origin.
func TestDPoPOverTCP(t *testing.T) {
	h := dpopHarness(t, nil)
	base, _ := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	r := newDPoPRequest(h, keyA, keyB, nil)
	proof := r.sign()
	body := "[" + h.event("e-tcp") + "]"
	send := func(proofHeaders string) int {
		req := "POST /v1/sync/events?client=1 HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n" +
			"X-Device-ID: " + testDevice + "\r\nAuthorization: DPoP " + r.token + "\r\n" + proofHeaders +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		resp := rawExchange(t, addr, req)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("dpop: " + proof + "\r\n"); code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202", code)
	}
	if code := send("DPoP: " + proof + "\r\n"); code != http.StatusUnauthorized {
		t.Errorf("replay: status = %d, want 401", code)
	}
	r.claims["jti"] = newID()
	fresh := r.sign()
	if code := send("DPoP: " + fresh + "\r\nDPoP: " + fresh + "\r\n"); code != http.StatusBadRequest {
		t.Errorf("two DPoP headers: status = %d, want 400", code)
	}
}

// TestDPoPReplayAcrossInstances reproduces A16 against two ingest servers
// on one in-process Kafka; TestIntegrationDPoPReplayAcrossInstances runs
// the same checks on the real broker.
func TestDPoPReplayAcrossInstances(t *testing.T) {
	h := dpopHarness(t, nil)
	checkReplayAcrossInstances(t, h, secondInstance(t, h))
}

func TestIntegrationDPoPReplayAcrossInstances(t *testing.T) {
	kcfg := testKafkaConfig()
	kcfg.Brokers = testenv.KafkaBrokers(t)
	testenv.CreateTopics(t, kcfg)
	keys := newTestKeys(t)
	cfg := realBrokerConfig(keys)
	cfg.PublicOrigin = testOrigin
	h := newHarnessOn(t, cfg, kcfg, keys)
	checkReplayAcrossInstances(t, h, secondInstance(t, h))
}

// secondInstance is another server with h's configuration on h's Kafka.
func secondInstance(t *testing.T, h *harness) *harness {
	t.Helper()
	cfg := testConfig(h.keys)
	cfg.PublicOrigin = testOrigin
	cfg.ProduceTimeout = h.srv.cfg.ProduceTimeout
	cfg.WriteTimeout = h.srv.cfg.WriteTimeout
	return newHarnessOn(t, cfg, h.kafka, h.keys)
}

func checkReplayAcrossInstances(t *testing.T, a, b *harness) {
	keyA, keyB := newECDPoPKey(t), newECDPoPKey(t)
	r := newDPoPRequest(a, keyA, keyB, nil)
	first := r.sign()
	if rec := a.do(r.request(first)); rec.Code != http.StatusAccepted {
		t.Fatalf("first use on instance A: status = %d; body %s", rec.Code, rec.Body.String())
	}
	replays := []struct {
		name  string
		proof func() string
	}{
		{"exact replay", func() string { return first }},
		{"malleated signature (high s)", func() string { return highS(first) }},
		{"fresh signature, same jti", r.sign},
	}
	for _, tt := range replays {
		t.Run(tt.name+" on instance B", func(t *testing.T) {
			wantProblem(t, b.do(r.request(tt.proof())), http.StatusUnauthorized, schemas.ReasonInvalidDPoPProof)
		})
	}

	// One new proof sent to both instances at once: exactly one request
	// may pass, whichever instance it reached.
	r.claims["jti"] = newID()
	proof := r.sign()
	const sends = 8
	codes := make([]int, sends)
	var wg sync.WaitGroup
	for i := range sends {
		target := a
		if i%2 == 1 {
			target = b
		}
		req := r.request(proof)
		wg.Go(func() {
			rec := httptest.NewRecorder()
			target.srv.Handler().ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusUnauthorized:
		default:
			t.Errorf("concurrent send: status %d, want 202 or 401", c)
		}
	}
	if accepted != 1 {
		t.Errorf("concurrent sends of one proof to two instances: %d accepted, want exactly 1 (statuses %v)", accepted, codes)
	}

	// Each instance read both accepted proofs' claims.
	for name, h := range map[string]*harness{"A": a, "B": b} {
		if got := gaugeValue(t, h, "syncguard_ingest_dpop_replay_cache_entries"); got != 2 {
			t.Errorf("instance %s: replay claims = %v, want 2", name, got)
		}
	}
}

// TestDPoPClaimFailsClosed checks that a proof whose claim cannot be read
// back in time is refused with 503, not accepted on the hope that no other
// instance saw it first.
func TestDPoPClaimFailsClosed(t *testing.T) {
	h := dpopHarness(t, func(c *Config) { c.ProduceTimeout = 300 * time.Millisecond })
	// A server on the same Kafka whose replay follower never runs.
	cfg := testConfig(h.keys)
	cfg.PublicOrigin = testOrigin
	cfg.ProduceTimeout = 300 * time.Millisecond
	deaf, err := New(Options{
		Config: cfg, Kafka: h.kafka, Registry: prometheus.NewRegistry(),
		EnvelopeKey: h.envelope, Now: func() time.Time { return h.clock() }, Client: h.client,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := newDPoPRequest(h, newECDPoPKey(t), newECDPoPKey(t), nil)
	rec := httptest.NewRecorder()
	deaf.Handler().ServeHTTP(rec, r.request(r.sign()))
	wantProblem(t, rec, http.StatusServiceUnavailable, schemas.ReasonUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records after a refused proof, want 0", n)
	}
}
