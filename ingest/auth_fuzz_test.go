package ingest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// fuzzNow is the fixed clock of the fuzz targets.
var fuzzNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fuzzKeys returns fixed Ed25519 and P-256 keys. The fuzz workers run
// the target's setup again, so keys must be the same in every process for
// a seed signed in one to verify in another.
func fuzzKeys(tb testing.TB) (ed25519.PrivateKey, *ecdsa.PrivateKey) {
	tb.Helper()
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{0x17}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return ed, ec
}

// signingInput is the header and payload of a JWS: what its signature
// covers. ES256 signatures are randomised and malleable, so acceptance is
// judged by the signing input, not by the signature bytes.
func signingInput(jws string) string {
	if i := strings.LastIndexByte(jws, '.'); i >= 0 {
		return jws[:i]
	}
	return jws
}

// fuzzTokenVerifier returns a verifier that trusts ed-1 and ec-1 of
// fuzzKeys.
func fuzzTokenVerifier(f *testing.F) (*tokenVerifier, ed25519.PrivateKey, *ecdsa.PrivateKey) {
	f.Helper()
	ed, ec := fuzzKeys(f)
	point, err := ec.PublicKey.Bytes()
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(ed.Public().(ed25519.PublicKey))},
		{"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": b64(point[1:33]), "y": b64(point[33:])},
	}})
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, set, 0o600); err != nil {
		f.Fatal(err)
	}
	cfg := DefaultConfig().SyncAuth
	cfg.Issuer, cfg.Audience, cfg.JWKSFile = testIssuer, testAudience, path
	v, err := newTokenVerifier(cfg, func() time.Time { return fuzzNow }, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	return v, ed, ec
}

func fuzzClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1", "device_id": testDevice,
		"scope": "sync:write", "iat": fuzzNow.Unix(), "nbf": fuzzNow.Unix(),
		"exp": fuzzNow.Add(10 * time.Minute).Unix(), "jti": "j-1",
	}
}

func fuzzSign(f *testing.F, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	f.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["typ"], tok.Header["kid"] = "at+jwt", kid
	s, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzVerifyToken checks that the token path never panics and accepts no
// token but the validly signed ones it was seeded with.
func FuzzVerifyToken(f *testing.F) {
	v, ed, ec := fuzzTokenVerifier(f)
	valid := map[string]bool{} // signing inputs
	good := []string{
		fuzzSign(f, jwt.SigningMethodEdDSA, ed, "ed-1", fuzzClaims()),
		fuzzSign(f, jwt.SigningMethodES256, ec, "ec-1", fuzzClaims()),
	}
	for _, tok := range good {
		valid[signingInput(tok)] = true
		f.Add(tok)
		f.Add(flipSignatureBit(tok))
		f.Add(tok[:strings.LastIndexByte(tok, '.')])
		f.Add(tok + "==")
	}
	bound := fuzzClaims()
	bound["cnf"] = map[string]any{"jkt": strings.Repeat("A", thumbprintLen)}
	boundTok := fuzzSign(f, jwt.SigningMethodEdDSA, ed, "ed-1", bound)
	valid[signingInput(boundTok)] = true
	f.Add(boundTok)
	f.Add(rawToken(map[string]any{"alg": "none"}, fuzzClaims(), nil))
	f.Add(rawToken(map[string]any{"alg": []string{"EdDSA"}, "kid": "ed-1"}, fuzzClaims(), []byte{1}))
	f.Add(rawToken(map[string]any{"alg": "EdDSA", "kid": "ed-1", "crit": []string{"b64"}}, fuzzClaims(), []byte{1}))
	f.Add(rawToken(map[string]any{"alg": "HS256", "kid": "ed-1"}, fuzzClaims(), []byte{1}))
	f.Add(strings.Repeat(".", 1000))
	f.Add("e30.e30.AA")
	f.Add("")

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := v.verify(ctx, token)
		if err == nil && !valid[signingInput(token)] {
			t.Fatalf("accepted a token that was never signed: %q", token)
		}
		if err == nil && (claims.DeviceID != testDevice || claims.Subject == "") {
			t.Fatalf("accepted claims %+v", claims)
		}
		if err != nil && err.code == "" {
			t.Fatal("rejection without a code")
		}
	})
}
