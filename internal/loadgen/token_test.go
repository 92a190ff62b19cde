package loadgen

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keyFromJWKS builds a golang-jwt key function from a JWKS document the way
// a verifier would: by kid, accepting only OKP Ed25519 keys.
func keyFromJWKS(t *testing.T, jwks []byte) jwt.Keyfunc {
	t.Helper()
	var set struct {
		Keys []struct {
			Kty, Crv, X, Kid, Alg, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" {
			t.Fatalf("unexpected JWK %+v", k)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			t.Fatalf("JWK x %q is not a base64url Ed25519 key: %v", k.X, err)
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	return func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return k, nil
	}
}

func parseAccessToken(t *testing.T, jwks []byte, token string) (*jwt.Token, jwt.MapClaims, error) {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(token, claims, keyFromJWKS(t, jwks),
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithIssuer(DefaultIssuer),
		jwt.WithAudience(DefaultAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return tok, claims, err
}

func TestSignerTokenVerifiesWithJWKS(t *testing.T) {
	s, jwks, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	token, exp, err := s.SignToken("user-0001", "dev-42")
	if err != nil {
		t.Fatal(err)
	}
	tok, claims, err := parseAccessToken(t, jwks, token)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if tok.Header["typ"] != "at+jwt" || tok.Header["kid"] != "ed-1" || tok.Header["alg"] != "EdDSA" {
		t.Errorf("header = %v", tok.Header)
	}

	want := map[string]any{"sub": "user-0001", "device_id": "dev-42", "scope": "sync:write"}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}

	iat, _ := claims.GetIssuedAt()
	nbf, _ := claims.GetNotBefore()
	expClaim, _ := claims.GetExpirationTime()
	if iat == nil || nbf == nil || expClaim == nil {
		t.Fatalf("iat, nbf or exp missing: %v", claims)
	}
	if got := expClaim.Sub(iat.Time); got != 10*time.Minute {
		t.Errorf("exp - iat = %s, want 10m", got)
	}
	if !expClaim.Equal(exp) {
		t.Errorf("returned expiry %s, claim %s", exp, expClaim.Time)
	}
	if jti, _ := claims["jti"].(string); len(jti) < 16 {
		t.Errorf("jti = %q", claims["jti"])
	}

	second, _, err := s.SignToken("user-0001", "dev-42")
	if err != nil {
		t.Fatal(err)
	}
	_, claims2, _ := parseAccessToken(t, jwks, second)
	if claims2["jti"] == claims["jti"] {
		t.Error("two tokens share a jti")
	}
}

func TestSignerTokenRejectedByOtherKey(t *testing.T) {
	s, _, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	_, otherJWKS, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := s.SignToken("user-0001", "dev-42")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseAccessToken(t, otherJWKS, token); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("token checked against another key: err = %v, want ErrTokenSignatureInvalid", err)
	}
}

func TestSignerExpiredToken(t *testing.T) {
	s, jwks, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	token, _, err := s.SignToken("user-0001", "dev-42")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseAccessToken(t, jwks, token); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("err = %v, want ErrTokenExpired", err)
	}
}

func TestSigningKeySaveLoad(t *testing.T) {
	s, jwks, err := GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing.pem")
	if err := SaveSigningKey(path, s); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", perm)
	}

	loaded, err := LoadSigningKey(path, "ed-1")
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := loaded.SignToken("user-0002", "dev-0003")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseAccessToken(t, jwks, token); err != nil {
		t.Errorf("token of the loaded key does not verify with the original JWKS: %v", err)
	}
	loadedJWKS, err := loaded.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	if string(loadedJWKS) != string(jwks) {
		t.Errorf("JWKS after load = %s, want %s", loadedJWKS, jwks)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path, "ed-1"); err == nil {
		t.Error("LoadSigningKey of a world-readable file: want an error")
	}
}

func TestLoadSigningKeyRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path, "ed-1"); err == nil {
		t.Error("want an error")
	}
	if _, err := LoadSigningKey(filepath.Join(t.TempDir(), "missing.pem"), "ed-1"); err == nil {
		t.Error("missing file: want an error")
	}
}
