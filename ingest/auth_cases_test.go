package ingest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncguard/syncguard/schemas"
)

// TestSyncAuthAttackCases adds the variants of A02, A07, A09 and A11 that
// TestSyncAuth does not already cover. Every one must get 401
// invalid_token, and none of the key locators in a token header may be
// fetched.
func TestSyncAuthAttackCases(t *testing.T) {
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"keys":[]}`)
	}))
	defer attacker.Close()

	h := newHarness(t, nil)
	point, err := h.keys.ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&h.keys.ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	ecJWK, _ := json.Marshal(map[string]string{
		"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(point[1:33]), "y": base64.RawURLEncoding.EncodeToString(point[33:]),
	})
	hs := func(kid string, secret []byte) func(h *harness) []string {
		return func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, secret, kid, h.claims()))
		}
	}
	_, attackerKey, _ := ed25519.GenerateKey(rand.Reader)
	attackerJWK := map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(attackerKey.Public().(ed25519.PublicKey))}
	attackerSigned := func(header map[string]any) func(h *harness) []string {
		return func(h *harness) []string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, h.claims())
			for k, v := range header {
				tok.Header[k] = v
			}
			s, err := tok.SignedString(attackerKey)
			if err != nil {
				h.t.Fatal(err)
			}
			return bearer(s)
		}
	}
	selfSigned := selfSignedCert(t, attackerKey)
	timed := func(iat, nbf, exp time.Duration, flip bool) func(h *harness) []string {
		return func(h *harness) []string {
			c := h.claims()
			c["iat"], c["nbf"], c["exp"] = h.clock().Add(iat).Unix(), h.clock().Add(nbf).Unix(), h.clock().Add(exp).Unix()
			tok := h.token(c)
			if flip {
				tok = flipSignatureBit(tok)
			}
			return bearer(tok)
		}
	}
	const invalid = schemas.ReasonInvalidToken
	cases := []authCase{
		// A02: public key material as an HMAC secret.
		{"HS256 keyed with the EC JWK as published", hs("ec-1", ecJWK), nil, 401, invalid},
		{"HS256 keyed with the EC PEM", hs("ec-1", ecPEM), nil, 401, invalid},
		{"HS256 keyed with the uncompressed point", hs("ec-1", point), nil, 401, invalid},
		{"HS256 keyed with the x text", hs("ec-1", []byte(base64.RawURLEncoding.EncodeToString(point[1:33]))), nil, 401, invalid},

		// A07: signature errors win over time errors.
		{"expired 1h, good signature", timed(-70*time.Minute, -70*time.Minute, -time.Hour, false), nil, 401, invalid},
		{"expired 1h, bad signature", timed(-70*time.Minute, -70*time.Minute, -time.Hour, true), nil, 401, invalid},
		{"nbf 1h ahead, bad signature", timed(0, time.Hour, 10*time.Minute, true), nil, 401, invalid},

		// A09: framing.
		{"token in the query string only", func(*harness) []string { return nil }, nil, 401, invalid},
		{"100k brackets in the header segment", func(*harness) []string {
			return bearer(base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("[", 100000))) + ".e30.AA")
		}, nil, 401, invalid},

		// A11: key material and locators in the header.
		{"embedded jwk without kid", attackerSigned(map[string]any{"jwk": attackerJWK}), nil, 401, invalid},
		{"jku to the attacker's JWKS", attackerSigned(map[string]any{"jku": attacker.URL + "/jwks.json"}), nil, 401, invalid},
		{"jku with trusted kid", attackerSigned(map[string]any{"jku": attacker.URL + "/jwks.json", "kid": "ed-1"}), nil, 401, invalid},
		{"x5u to the attacker", attackerSigned(map[string]any{"x5u": attacker.URL + "/cert.pem", "kid": "ed-1"}), nil, 401, invalid},
		{"x5c self-signed", attackerSigned(map[string]any{"x5c": []string{selfSigned}, "kid": "ed-1"}), nil, 401, invalid},
		{"kid path to /etc/hostname", hs("../../../../etc/hostname", []byte("localhost")), nil, 401, invalid},
		{"kid SQL injection", hs("x' UNION SELECT 'k' -- ", []byte("k")), nil, 401, invalid},
		{"kid with NUL and newline", hs("ed-1\x00\nlevel=error", []byte("k")), nil, 401, invalid},
		{"kid with trailing space", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodEdDSA, h.keys.ed, "ed-1 ", h.claims()))
		}, nil, 401, invalid},
	}
	runAuthCases(t, h, cases)
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the attacker's server got %d requests", n)
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records from rejected tokens", n)
	}

	// The query-string token is ignored even when it is valid.
	req := h.syncRequest("application/json", []byte("["+h.event("e-q")+"]"), "")
	req.URL.RawQuery = "access_token=" + h.token(h.claims())
	wantProblem(t, h.do(req), 401, invalid)
}

// selfSignedCert returns a base64 DER certificate for key, as in x5c.
func selfSignedCert(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "auth.test.invalid"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestVerifyTokenCheapOnGarbage reproduces A09's amplification: a header
// of periods costs a scan, not memory proportional to its length.
func TestVerifyTokenCheapOnGarbage(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	for _, tok := range []string{strings.Repeat(".", 60000), strings.Repeat("A", 48<<10) + ".e30.AA", strings.Repeat("a.", 30000)} {
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := h.srv.tokens.verify(ctx, tok); err == nil {
				t.Fatal("garbage token verified")
			}
		})
		if allocs > 2 {
			t.Errorf("verify of a %d-byte garbage token: %.0f allocations, want at most 2", len(tok), allocs)
		}
	}
}

// TestAuthorizationOverHeaderLimit checks A09 over TCP: a header block over
// max_header_bytes (16 KiB) gets 431 from net/http. With the default limit
// the 60k-period variant gets 431 as well, before any handler runs.
func TestAuthorizationOverHeaderLimit(t *testing.T) {
	h := newHarness(t, nil)
	base, _ := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	for _, n := range []int{60000, 2000000} {
		body := "[" + h.event("e-"+newID()) + "]"
		req := "POST /v1/sync/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Device-ID: dev-42\r\n" +
			"Authorization: Bearer " + strings.Repeat(".", n) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		resp := rawExchange(t, addr, req)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%d periods: status = %d, want 431", n, resp.StatusCode)
		}
	}
	if n := len(h.records(schemas.TopicRaw)); n != 0 {
		t.Errorf("%d raw records", n)
	}
}

// TestSyncAuthES256HighS checks that an ES256 token whose signature has s
// in the upper half still verifies. Access tokens are not replay keys, so
// this malleability does not matter for them.
func TestSyncAuthES256HighS(t *testing.T) {
	h := newHarness(t, nil)
	tok := highS(signToken(t, jwt.SigningMethodES256, h.keys.ec, "ec-1", h.claims()))
	if code := h.postWith(tok); code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202", code)
	}
}
