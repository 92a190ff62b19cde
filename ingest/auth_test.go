package ingest

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncguard/syncguard/schemas"
)

// authCase is one Authorization header and the expected response.
type authCase struct {
	name   string
	header func(h *harness) []string // Authorization values
	device []string                  // X-Device-ID values; nil means testDevice
	status int
	code   string
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

// withClaims signs the default claims after edit, with Ed25519.
func withClaims(edit func(h *harness, c jwt.MapClaims)) func(h *harness) []string {
	return func(h *harness) []string {
		c := h.claims()
		edit(h, c)
		return bearer(h.token(c))
	}
}

// flipSignatureBit corrupts one bit of a token's signature.
func flipSignatureBit(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	sig[0] ^= 1
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// edSigned signs header and claims with the Ed25519 test key as given,
// whatever alg the header names.
func edSigned(h *harness, header map[string]any, claims jwt.MapClaims) string {
	unsigned := rawToken(header, claims, nil)
	unsigned = unsigned[:len(unsigned)-1]
	sig := ed25519.Sign(h.keys.ed, []byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func runAuthCases(t *testing.T, h *harness, cases []authCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			req := h.syncRequest("application/json", []byte("["+h.event("e-"+newID())+"]"), "")
			req.Header["Authorization"] = tt.header(h)
			if tt.device != nil {
				req.Header["X-Device-Id"] = tt.device
			}
			rec := h.do(req)
			if tt.status == http.StatusAccepted {
				if rec.Code != tt.status {
					t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body.String())
				}
				return
			}
			wantProblem(t, rec, tt.status, tt.code)
			switch tt.code {
			case schemas.ReasonInvalidToken:
				if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			case schemas.ReasonInsufficientScope:
				if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}
		})
	}
}

func TestSyncAuth(t *testing.T) {
	h := newHarness(t, nil)
	edPub := []byte(h.keys.ed.Public().(ed25519.PublicKey))
	hs := func(kid string, secret []byte) func(h *harness) []string {
		return func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, secret, kid, h.claims()))
		}
	}
	none := func(alg string, kid string, sig []byte) func(h *harness) []string {
		return func(h *harness) []string {
			header := map[string]any{"alg": alg, "typ": "at+jwt"}
			if kid != "" {
				header["kid"] = kid
			}
			return bearer(rawToken(header, h.claims(), sig))
		}
	}
	cases := []authCase{
		{"control EdDSA", withClaims(func(*harness, jwt.MapClaims) {}), nil, 202, ""},
		{"control ES256", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodES256, h.keys.ec, "ec-1", h.claims()))
		}, nil, 202, ""},
		{"lower-case scheme", func(h *harness) []string { return []string{"bearer " + h.token(h.claims())} }, nil, 202, ""},
		{"aud array", withClaims(func(_ *harness, c jwt.MapClaims) { c["aud"] = []string{"other", testAudience} }), nil, 202, ""},
		{"lifetime exactly 15 minutes", withClaims(func(h *harness, c jwt.MapClaims) { c["exp"] = h.clock().Add(15 * time.Minute).Unix() }), nil, 202, ""},

		// alg none and odd alg values.
		{"alg none", none("none", "", nil), nil, 401, schemas.ReasonInvalidToken},
		{"alg None", none("None", "", nil), nil, 401, schemas.ReasonInvalidToken},
		{"alg NONE", none("NONE", "", nil), nil, 401, schemas.ReasonInvalidToken},
		{"alg nOnE", none("nOnE", "", nil), nil, 401, schemas.ReasonInvalidToken},
		{"alg none with trusted kid", none("none", "ed-1", nil), nil, 401, schemas.ReasonInvalidToken},
		{"alg none with copied signature", func(h *harness) []string {
			good := h.token(h.claims())
			sig := good[strings.LastIndexByte(good, '.')+1:]
			forged := rawToken(map[string]any{"alg": "none", "kid": "ed-1"}, h.claims(), nil)
			return bearer(forged[:len(forged)-1] + "." + sig)
		}, nil, 401, schemas.ReasonInvalidToken},
		{"two segments", func(h *harness) []string {
			tok := h.token(h.claims())
			return bearer(tok[:strings.LastIndexByte(tok, '.')])
		}, nil, 401, schemas.ReasonInvalidToken},
		{"alg missing", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"kid": "ed-1", "typ": "at+jwt"}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"alg empty", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "", "kid": "ed-1"}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"alg array", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": []string{"EdDSA"}, "kid": "ed-1"}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"alg lower-case eddsa", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "eddsa", "kid": "ed-1"}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},

		// Algorithm confusion: public key material as an HMAC secret.
		{"HS256 keyed with Ed25519 public key", hs("ed-1", edPub), nil, 401, schemas.ReasonInvalidToken},
		{"HS256 keyed with the published JWKS", hs("ec-1", h.keys.jwksRaw), nil, 401, schemas.ReasonInvalidToken},
		{"HS256 without kid", hs("", edPub), nil, 401, schemas.ReasonInvalidToken},
		{"ES256 header with Ed25519 kid", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodES256, h.keys.ec, "ed-1", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},

		// Time claims.
		{"expired", withClaims(func(h *harness, c jwt.MapClaims) {
			c["iat"] = h.clock().Add(-70 * time.Minute).Unix()
			c["exp"] = h.clock().Add(-time.Hour).Unix()
		}), nil, 401, schemas.ReasonInvalidToken},
		{"expired 5s with bad signature", func(h *harness) []string {
			c := h.claims()
			c["iat"] = h.clock().Add(-5 * time.Minute).Unix()
			c["exp"] = h.clock().Add(-5 * time.Second).Unix()
			return bearer(flipSignatureBit(h.token(c)))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"good times, bad signature", func(h *harness) []string { return bearer(flipSignatureBit(h.token(h.claims()))) }, nil, 401, schemas.ReasonInvalidToken},
		{"exp missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "exp") }), nil, 401, schemas.ReasonInvalidToken},
		{"exp string", withClaims(func(h *harness, c jwt.MapClaims) { c["exp"] = "9999999999" }), nil, 401, schemas.ReasonInvalidToken},
		{"iat string", withClaims(func(h *harness, c jwt.MapClaims) { c["iat"] = "1" }), nil, 401, schemas.ReasonInvalidToken},
		{"exp zero", withClaims(func(_ *harness, c jwt.MapClaims) { c["exp"] = 0 }), nil, 401, schemas.ReasonInvalidToken},
		{"exp negative", withClaims(func(_ *harness, c jwt.MapClaims) { c["exp"] = -1 }), nil, 401, schemas.ReasonInvalidToken},
		{"lifetime 15 minutes plus 1s", withClaims(func(h *harness, c jwt.MapClaims) { c["exp"] = h.clock().Add(15*time.Minute + time.Second).Unix() }), nil, 401, schemas.ReasonInvalidToken},
		{"lifetime 24h", withClaims(func(h *harness, c jwt.MapClaims) { c["exp"] = h.clock().Add(24 * time.Hour).Unix() }), nil, 401, schemas.ReasonInvalidToken},
		{"iat missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "iat") }), nil, 401, schemas.ReasonInvalidToken},
		{"iat 2h old, exp soon", withClaims(func(h *harness, c jwt.MapClaims) {
			c["iat"] = h.clock().Add(-2 * time.Hour).Unix()
			c["nbf"] = h.clock().Add(-2 * time.Hour).Unix()
			c["exp"] = h.clock().Add(5 * time.Minute).Unix()
		}), nil, 401, schemas.ReasonInvalidToken},
		{"iat in the future", withClaims(func(h *harness, c jwt.MapClaims) {
			c["iat"] = h.clock().Add(5 * time.Minute).Unix()
			c["exp"] = h.clock().Add(10 * time.Minute).Unix()
		}), nil, 401, schemas.ReasonInvalidToken},
		{"exp before iat", withClaims(func(h *harness, c jwt.MapClaims) {
			// exp is within the leeway, so only the order check fails.
			c["iat"] = h.clock().Unix()
			c["exp"] = h.clock().Add(-time.Second).Unix()
		}), nil, 401, schemas.ReasonInvalidToken},
		{"nbf in the future", withClaims(func(h *harness, c jwt.MapClaims) { c["nbf"] = h.clock().Add(time.Hour).Unix() }), nil, 401, schemas.ReasonInvalidToken},

		// Other claims.
		{"wrong audience", withClaims(func(_ *harness, c jwt.MapClaims) { c["aud"] = "other" }), nil, 401, schemas.ReasonInvalidToken},
		{"audience missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "aud") }), nil, 401, schemas.ReasonInvalidToken},
		{"wrong issuer", withClaims(func(_ *harness, c jwt.MapClaims) { c["iss"] = "https://evil.test.invalid" }), nil, 401, schemas.ReasonInvalidToken},
		{"sub missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "sub") }), nil, 401, schemas.ReasonInvalidToken},
		{"scope missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "scope") }), nil, 403, schemas.ReasonInsufficientScope},
		{"scope near miss", withClaims(func(_ *harness, c jwt.MapClaims) { c["scope"] = "sync:writer sync:read" }), nil, 403, schemas.ReasonInsufficientScope},
		{"scope as array", withClaims(func(_ *harness, c jwt.MapClaims) { c["scope"] = []string{"sync:write"} }), nil, 401, schemas.ReasonInvalidToken},
		{"edited payload with original signature", func(h *harness) []string {
			tok := h.token(h.claims())
			parts := strings.Split(tok, ".")
			c := h.claims()
			c["scope"] = "sync:write admin"
			edited := rawToken(map[string]any{}, c, nil)
			return bearer(parts[0] + "." + strings.Split(edited, ".")[1] + "." + parts[2])
		}, nil, 401, schemas.ReasonInvalidToken},

		// Device binding and framing.
		{"device claim differs", withClaims(func(_ *harness, c jwt.MapClaims) { c["device_id"] = "dev-43" }), nil, 403, schemas.ReasonDeviceMismatch},
		{"device claim missing", withClaims(func(_ *harness, c jwt.MapClaims) { delete(c, "device_id") }), nil, 403, schemas.ReasonDeviceMismatch},
		{"device header case changed", withClaims(func(*harness, jwt.MapClaims) {}), []string{"DEV-42"}, 403, schemas.ReasonDeviceMismatch},
		{"device header comma list", withClaims(func(*harness, jwt.MapClaims) {}), []string{"dev-42, dev-43"}, 400, schemas.ReasonInvalidRequest},
		{"device header missing", withClaims(func(*harness, jwt.MapClaims) {}), []string{}, 400, schemas.ReasonInvalidRequest},
		{"device header twice", withClaims(func(*harness, jwt.MapClaims) {}), []string{testDevice, testDevice}, 400, schemas.ReasonInvalidRequest},
		{"two Authorization headers", func(h *harness) []string {
			return []string{"Bearer " + h.token(h.claims()), "Bearer " + h.token(h.claims())}
		}, nil, 400, schemas.ReasonInvalidRequest},
		{"no Authorization header", func(*harness) []string { return nil }, nil, 401, schemas.ReasonInvalidToken},
		{"Basic scheme", func(*harness) []string { return []string{"Basic dXNlcjpwYXNz"} }, nil, 401, schemas.ReasonInvalidToken},
		{"scheme only", func(*harness) []string { return []string{"Bearer"} }, nil, 401, schemas.ReasonInvalidToken},
		{"four segments", func(h *harness) []string { return bearer(h.token(h.claims()) + ".AAAA") }, nil, 401, schemas.ReasonInvalidToken},
		{"base64 padding", func(h *harness) []string { return bearer(h.token(h.claims()) + "==") }, nil, 401, schemas.ReasonInvalidToken},
		{"60k periods", func(*harness) []string { return bearer(strings.Repeat(".", 60000)) }, nil, 401, schemas.ReasonInvalidToken},
		{"48 KB header segment", func(*harness) []string { return bearer(strings.Repeat("A", 48<<10) + ".e30.AA") }, nil, 401, schemas.ReasonInvalidToken},

		// Key locators in the token header.
		{"crit extension", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "EdDSA", "kid": "ed-1", "crit": []string{"exp-ext"}, "exp-ext": 1}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"typ dpop+jwt", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "EdDSA", "kid": "ed-1", "typ": "dpop+jwt"}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"unknown kid", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodEdDSA, h.keys.ed, "ed-2", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"kid path traversal", hs("../../../../../../dev/null", []byte{}), nil, 401, schemas.ReasonInvalidToken},
		{"kid 16 KB", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "EdDSA", "kid": strings.Repeat("k", 16<<10)}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"kid number", func(h *harness) []string {
			return bearer(edSigned(h, map[string]any{"alg": "EdDSA", "kid": 1}, h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"embedded jwk with trusted kid", func(h *harness) []string {
			_, attacker, _ := ed25519.GenerateKey(nil)
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, h.claims())
			tok.Header["kid"] = "ed-1"
			tok.Header["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(attacker.Public().(ed25519.PublicKey))}
			s, _ := tok.SignedString(attacker)
			return bearer(s)
		}, nil, 401, schemas.ReasonInvalidToken},
	}
	runAuthCases(t, h, cases)
}

func TestSyncAuthHS256(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SyncAuth.HS256Secret = testHS256Secret
		c.SyncAuth.HS256KeyID = "hs-1"
	})
	edPub := []byte(h.keys.ed.Public().(ed25519.PublicKey))
	cases := []authCase{
		{"control HS256", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, []byte(testHS256Secret), "hs-1", h.claims()))
		}, nil, 202, ""},
		{"HS256 with Ed25519 kid and public key", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, edPub, "ed-1", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"HS256 with Ed25519 kid and the HMAC secret", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, []byte(testHS256Secret), "ed-1", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"EdDSA with HMAC kid", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodEdDSA, h.keys.ed, "hs-1", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
		{"HS256 with wrong secret", func(h *harness) []string {
			return bearer(signToken(h.t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong-secret"), "hs-1", h.claims()))
		}, nil, 401, schemas.ReasonInvalidToken},
	}
	runAuthCases(t, h, cases)
}

func TestSyncAuthBeforeBody(t *testing.T) {
	h := newHarness(t, nil)
	// An unauthenticated oversized body gets 401, not 413: nothing is read.
	req := h.syncRequest("application/json", make([]byte, 2<<20), "")
	wantProblem(t, h.do(req), 401, schemas.ReasonInvalidToken)
}

func TestLoadJWKSRejectsPrivateKey(t *testing.T) {
	keys := newTestKeys(t)
	path := keys.jwks
	raw := strings.Replace(string(keys.jwksRaw), `"kty":"OKP"`, `"kty":"OKP","d":"c2VjcmV0"`, 1)
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadJWKS(path); err == nil || !strings.Contains(err.Error(), "private key material") {
		t.Fatalf("loadJWKS with a private key: err = %v", err)
	}
}

func TestWellFormedJWS(t *testing.T) {
	f := func(token string, want bool) {
		t.Helper()
		if got := wellFormedJWS(token); got != want {
			t.Errorf("wellFormedJWS(%.40q) = %v, want %v", token, got, want)
		}
	}
	f("a.b.c", true)
	f("aA0-_.b.c", true)
	f("a.b.", false)
	f(".b.c", false)
	f("a..c", false)
	f("a.b.c.d", false)
	f("a.b", false)
	f("a.b.c=", false)
	f("a.b+.c", false)
	f("", false)
	f(strings.Repeat("a", maxTokenLen-4)+".b.c", true)
	f(strings.Repeat("a", maxTokenLen)+".b.c", false)
}

func TestTokenNeverRecorded(t *testing.T) {
	h := newHarness(t, nil)
	c := h.claims()
	c["sub"] = "MARKER-subject"
	good := h.token(c)
	tokens := []string{
		good,
		flipSignatureBit(good),
		strings.Replace(good, ".", ".MARKER", 1),
		"MARKER." + strings.Repeat("A", 100) + ".x",
	}
	for _, tok := range tokens {
		h.do(h.syncRequest("application/json", []byte("["+h.event("e-"+newID())+"]"), tok))
	}

	audit := h.auditEvents(len(tokens))
	raw := h.records(schemas.TopicRaw)
	if len(raw) != 1 {
		t.Fatalf("%d raw records, want 1 from the valid token", len(raw))
	}

	recs := append(h.records(schemas.TopicAudit), raw...)
	for _, tok := range tokens {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 8 && containsAny(recs, part) {
				t.Errorf("a token segment %.20q... appears in a record", part)
			}
		}
	}
	for _, ev := range audit {
		if strings.Contains(ev.Detail, "MARKER") {
			t.Errorf("audit detail %q repeats token content", ev.Detail)
		}
	}
}
