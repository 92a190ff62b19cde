package loadgen

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of a new Signer. The issuer and audience are the values the
// sync API's authentication tests assume. The ".invalid" top-level domain
// never resolves.
const (
	DefaultIssuer   = "https://auth.test.invalid"
	DefaultAudience = "sync-ingest"
	DefaultScope    = "sync:write"
	DefaultTokenTTL = 10 * time.Minute
)

// Signer mints EdDSA (Ed25519) access tokens in the JWT profile for OAuth
// 2.0 access tokens: header typ "at+jwt" and kid, claims iss, aud, sub,
// device_id, scope, iat, nbf, exp and jti. Set the exported fields before
// first use. After that, a Signer is safe for concurrent use.
type Signer struct {
	// KeyID is the kid header, matching the key's entry in the JWKS.
	KeyID    string
	Issuer   string
	Audience string
	// Scope is the space-delimited scope claim.
	Scope string
	// TTL is exp minus iat.
	TTL time.Duration
	// Now is the clock for iat, nbf and exp (default time.Now).
	Now func() time.Time

	key ed25519.PrivateKey
}

// accessClaims are the claims of a sync access token.
type accessClaims struct {
	DeviceID string `json:"device_id"`
	Scope    string `json:"scope"`
	jwt.RegisteredClaims
}

// GenerateSigningKey creates a new Ed25519 key with the given kid and
// returns a Signer with the default issuer, audience, scope and lifetime,
// together with the JWKS document that ingest needs to verify its tokens.
func GenerateSigningKey(kid string) (*Signer, []byte, error) {
	if kid == "" {
		return nil, nil, errors.New("generate signing key: key id is required")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	s := newSigner(kid, priv)
	jwks, err := s.JWKS()
	if err != nil {
		return nil, nil, err
	}
	return s, jwks, nil
}

func newSigner(kid string, key ed25519.PrivateKey) *Signer {
	return &Signer{
		KeyID:    kid,
		Issuer:   DefaultIssuer,
		Audience: DefaultAudience,
		Scope:    DefaultScope,
		TTL:      DefaultTokenTTL,
		Now:      time.Now,
		key:      key,
	}
}

// jwk is an OKP public key as RFC 8037 defines it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the JSON Web Key Set with the signer's public key:
// {"keys":[{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}]}.
func (s *Signer) JWKS() ([]byte, error) {
	pub, ok := s.key.Public().(ed25519.PublicKey)
	if !ok {
		panic("BUG: an Ed25519 private key has an Ed25519 public key")
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{{
		Kty: "OKP",
		Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(pub),
		Kid: s.KeyID,
		Alg: "EdDSA",
		Use: "sig",
	}}}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return b, nil
}

// PublicKey returns the signer's Ed25519 public key.
func (s *Signer) PublicKey() ed25519.PublicKey {
	pub, _ := s.key.Public().(ed25519.PublicKey)
	return pub
}

// SignToken implements TokenSigner with a fresh random jti per token.
func (s *Signer) SignToken(subject, deviceID string) (string, time.Time, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	iat := now().Truncate(time.Second)
	exp := iat.Add(s.TTL)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: read jti: %w", err)
	}
	claims := accessClaims{
		DeviceID: deviceID,
		Scope:    s.Scope,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.Issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{s.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(iat),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        hex.EncodeToString(jti),
		},
	}
	token, err := s.SignClaims(claims)
	if err != nil {
		return "", time.Time{}, err
	}
	return token, exp, nil
}

// SignClaims signs arbitrary claims with the signer's key and headers kid
// and typ "at+jwt". Tests use it to build tokens that ingest must reject,
// such as expired ones or ones without a device_id.
func (s *Signer) SignClaims(claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.KeyID
	t.Header["typ"] = "at+jwt"
	signed, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// SaveSigningKey writes the signer's private key to path as a PEM-encoded
// PKCS #8 "PRIVATE KEY" block with mode 0600. It writes a temporary file in
// the same directory and renames it, so readers never see a partial key.
func SaveSigningKey(path string, s *Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		return fmt.Errorf("save signing key: encode PKCS #8: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return fmt.Errorf("save signing key: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save signing key: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save signing key: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save signing key: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save signing key: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save signing key: %w", err)
	}
	return nil
}

// LoadSigningKey reads a key that SaveSigningKey wrote and returns a Signer
// with the given kid and the default claims. It rejects a file that group
// or others may read, as ssh does for private keys.
func LoadSigningKey(path, kid string) (*Signer, error) {
	if kid == "" {
		return nil, errors.New("load signing key: key id is required")
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load signing key: %s has mode %04o; run chmod 600 on it", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("load signing key: %s contains no PEM \"PRIVATE KEY\" block", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load signing key: parse %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load signing key: %s contains a %T, not an Ed25519 key", path, parsed)
	}
	return newSigner(kid, key), nil
}
