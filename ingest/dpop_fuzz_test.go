package ingest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerifyDPoP checks that proof verification never panics, and that it
// accepts only the header and claims of the seed proofs, each jti once.
func FuzzVerifyDPoP(f *testing.F) {
	cfg := DefaultConfig()
	cfg.PublicOrigin = testOrigin
	// The fuzzer runs the parser thousands of times a second, so the jti
	// claims go to memory instead of the Kafka replay log;
	// TestDPoPReplayAcrossInstances covers the log.
	d, err := newDPoPVerifier(cfg, func() time.Time { return fuzzNow }, newMemoryClaimer(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	const token = "header.payload.signature"
	ed, ec := fuzzKeys(f)
	keys := []*dpopKey{ecDPoPKeyOf(f, ec), edDPoPKeyOf(ed)}
	// signed holds the signing inputs of the seed proofs. A proof is
	// accepted only with one of them: an ES256 signature can be rewritten
	// (s to n - s) without the key, so the signature bytes are not compared.
	signed := map[string]bool{}
	for _, k := range keys {
		claims := jwt.MapClaims{"jti": "jti-" + k.alg, "htm": "POST", "htu": testOrigin + testSyncPath, "iat": fuzzNow.Unix(), "ath": athOf(token)}
		tok := jwt.NewWithClaims(k.method, claims)
		tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", k.jwk
		proof, err := tok.SignedString(k.priv)
		if err != nil {
			f.Fatal(err)
		}
		signed[signingInput(proof)] = true
		f.Add(proof, http.MethodPost, testSyncPath, k.jkt)
		f.Add(flipSignatureBit(proof), http.MethodPost, testSyncPath, k.jkt)
		f.Add(proof, "post", testSyncPath, k.jkt)
		f.Add(proof, http.MethodPost, testSyncPath+"/", k.jkt)
		if k.alg == algES256 {
			f.Add(highS(proof), http.MethodPost, testSyncPath, k.jkt)
		}
		jwkPriv := map[string]any{"d": "AAAA"}
		for name, v := range k.jwk {
			jwkPriv[name] = v
		}
		f.Add(rawToken(map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": jwkPriv}, claims, []byte{1}), http.MethodPost, testSyncPath, k.jkt)
		f.Add(rawToken(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": k.jwk}, claims, nil), http.MethodPost, testSyncPath, k.jkt)
	}
	f.Add(strings.Repeat(".", 100), http.MethodPost, testSyncPath, keys[0].jkt)
	f.Add("e30.e30.AA", "", "", "")

	f.Fuzz(func(t *testing.T, proof, method, path, jkt string) {
		err := d.verify(t.Context(), proof, method, path, token, jkt)
		if err == nil && !signed[signingInput(proof)] {
			t.Fatalf("accepted a proof that was never signed: %q", proof)
		}
		if err == nil {
			// A proof is accepted at most once.
			if again := d.verify(t.Context(), proof, method, path, token, jkt); again == nil {
				t.Fatal("the same proof was accepted twice")
			}
		}
	})
}
