package ingest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncguard/syncguard/schemas"
)

// maxTokenLen caps a bearer token before any parsing, so a hostile header
// costs at most one linear scan. Access tokens of the sync API are
// typically a few hundred bytes.
const maxTokenLen = 8 << 10

// Signing algorithms and the key types that verify them.
const (
	algEdDSA = "EdDSA"
	algES256 = "ES256"
	algHS256 = "HS256"
)

// verifyKey is one trusted key. Each kid maps to exactly one algorithm, so
// a token cannot pick a different routine for the same key material.
type verifyKey struct {
	alg string
	key any // ed25519.PublicKey, *ecdsa.PublicKey or []byte for HS256
}

// tokenVerifier checks the sync API's bearer tokens.
type tokenVerifier struct {
	cfg    SyncAuthConfig
	keys   map[string]verifyKey
	parser *jwt.Parser
	now    func() time.Time
}

// accessClaims are the claims of a sync access token.
type accessClaims struct {
	jwt.RegisteredClaims
	// Scope is a space-separated list of scopes.
	Scope string `json:"scope"`
	// DeviceID binds the token to one device. It must equal X-Device-ID.
	DeviceID string `json:"device_id"`
}

// numericClaims are the time claims as raw JSON, to check their type.
type numericClaims struct {
	Exp json.RawMessage `json:"exp"`
	Iat json.RawMessage `json:"iat"`
	Nbf json.RawMessage `json:"nbf"`
}

// UnmarshalJSON decodes the claims and rejects time claims that are not
// JSON numbers. jwt.NumericDate alone also accepts numeric strings.
func (c *accessClaims) UnmarshalJSON(b []byte) error {
	var times numericClaims
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, v := range []json.RawMessage{times.Exp, times.Iat, times.Nbf} {
		if v != nil && !isJSONNumber(v) {
			return errors.New("exp, iat and nbf must be JSON numbers")
		}
	}
	type plain accessClaims // drops this method, so no recursion
	return json.Unmarshal(b, (*plain)(c))
}

func isJSONNumber(v json.RawMessage) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
}

// newTokenVerifier loads the JWKS file and the HS256 secret.
func newTokenVerifier(cfg SyncAuthConfig, now func() time.Time) (*tokenVerifier, error) {
	keys := map[string]verifyKey{}
	if cfg.JWKSFile != "" {
		var err error
		if keys, err = loadJWKS(cfg.JWKSFile); err != nil {
			return nil, fmt.Errorf("ingest.sync_auth.jwks_file: %w", err)
		}
	}
	methods := []string{algEdDSA, algES256}
	if cfg.HS256Secret != "" {
		if _, exists := keys[cfg.HS256KeyID]; exists {
			return nil, fmt.Errorf("ingest.sync_auth.hs256_kid: %q is also a kid in the JWKS file", cfg.HS256KeyID)
		}
		keys[cfg.HS256KeyID] = verifyKey{alg: algHS256, key: []byte(cfg.HS256Secret.Reveal())}
		methods = append(methods, algHS256)
	}
	if len(keys) == 0 {
		return nil, errors.New("ingest.sync_auth.jwks_file: no usable Ed25519 or P-256 key")
	}
	v := &tokenVerifier{cfg: cfg, keys: keys, now: now}
	v.parser = jwt.NewParser(
		// The accepted algorithms are fixed here. The token's alg only
		// selects among them, compared case-sensitively.
		jwt.WithValidMethods(methods),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// authError is a rejected token. Its cause goes into the audit event and
// never contains the token.
type authError struct {
	code  string // stable reason code
	cause string
}

func (e *authError) Error() string { return e.code + ": " + e.cause }

func invalidToken(cause string) *authError {
	return &authError{code: schemas.ReasonInvalidToken, cause: cause}
}

// verify checks an Authorization header value and returns the token's
// claims. The signature is checked before any claim is used.
func (v *tokenVerifier) verify(authorization string) (*accessClaims, *authError) {
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return nil, invalidToken("the Authorization scheme is not Bearer")
	}
	token = strings.TrimLeft(token, " ")
	if !wellFormedJWS(token) {
		return nil, invalidToken("the token is not three base64url segments within the length limit")
	}

	claims := new(accessClaims)
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyFor); err != nil {
		return nil, invalidToken(err.Error())
	}

	// Checks that golang-jwt does not make.
	if claims.IssuedAt == nil {
		return nil, invalidToken("the iat claim is required")
	}
	iat, exp := claims.IssuedAt.Time, claims.ExpiresAt.Time
	if !exp.After(iat) {
		return nil, invalidToken("exp is not after iat")
	}
	if exp.Sub(iat) > v.cfg.MaxTokenLifetime {
		return nil, invalidToken("the token lifetime exp - iat is longer than max_token_lifetime")
	}
	if v.now().Sub(iat) > v.cfg.MaxTokenLifetime+v.cfg.Leeway {
		return nil, invalidToken("iat is older than max_token_lifetime")
	}
	if claims.Subject == "" {
		return nil, invalidToken("the sub claim is required")
	}
	if !slices.Contains(strings.Fields(claims.Scope), v.cfg.RequiredScope) {
		return nil, &authError{code: schemas.ReasonInsufficientScope, cause: "the scope claim lacks " + v.cfg.RequiredScope}
	}
	return claims, nil
}

// keyFor returns the key that verifies t, from the token's kid alone.
// Header members that name or carry keys (jwk, jku, x5u, x5c) are ignored,
// and a token with a crit member is rejected because ingest implements no
// JWS extension.
func (v *tokenVerifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New("the crit header names an unsupported extension")
	}
	if typ, ok := t.Header["typ"]; ok {
		s, _ := typ.(string)
		switch strings.ToLower(s) {
		case "at+jwt", "application/at+jwt", "jwt":
		default:
			return nil, errors.New("the typ header is not at+jwt or JWT")
		}
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" || len(kid) > maxKeyIDLen {
		return nil, errors.New("the kid header is missing or too long")
	}
	k, ok := v.keys[kid]
	if !ok {
		return nil, errors.New("the kid names no trusted key")
	}
	if t.Method.Alg() != k.alg {
		return nil, errors.New("the alg header differs from the algorithm of the kid's key")
	}
	return k.key, nil
}

// wellFormedJWS reports whether token is three non-empty base64url
// segments, without padding, within maxTokenLen. It runs before any
// decoding, so a header of dots or garbage costs one scan and no memory.
func wellFormedJWS(token string) bool {
	if len(token) == 0 || len(token) > maxTokenLen {
		return false
	}
	dots := 0
	segment := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if segment == 0 {
				return false
			}
			dots++
			segment = 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			segment++
		default:
			return false
		}
	}
	return dots == 2 && segment > 0
}

// jwk is one JSON Web Key of the JWKS file.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// loadJWKS reads the Ed25519 and P-256 public keys of a JWKS file. Keys of
// other types or for encryption are skipped. A private key is an error,
// because it does not belong on a server that only verifies.
func loadJWKS(path string) (map[string]verifyKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS %s: %w", path, err)
	}
	keys := make(map[string]verifyKey, len(set.Keys))
	for i, k := range set.Keys {
		if k.D != "" {
			return nil, fmt.Errorf("JWKS %s: key %d (kid %q) contains private key material; publish only public keys", path, i, k.Kid)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var vk verifyKey
		switch {
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			vk, err = ed25519JWK(k)
		case k.Kty == "EC" && k.Crv == "P-256":
			vk, err = p256JWK(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		if k.Kid == "" || len(k.Kid) > maxKeyIDLen {
			return nil, fmt.Errorf("JWKS %s: key %d: kid must be 1 to %d bytes", path, i, maxKeyIDLen)
		}
		if _, dup := keys[k.Kid]; dup {
			return nil, fmt.Errorf("JWKS %s: kid %q appears twice", path, k.Kid)
		}
		keys[k.Kid] = vk
	}
	return keys, nil
}

func ed25519JWK(k jwk) (verifyKey, error) {
	if k.Alg != "" && k.Alg != algEdDSA && k.Alg != "Ed25519" {
		return verifyKey{}, fmt.Errorf("alg %q does not fit an Ed25519 key", k.Alg)
	}
	x, err := base64.RawURLEncoding.Strict().DecodeString(k.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return verifyKey{}, errors.New("x is not a base64url Ed25519 public key")
	}
	return verifyKey{alg: algEdDSA, key: ed25519.PublicKey(x)}, nil
}

func p256JWK(k jwk) (verifyKey, error) {
	if k.Alg != "" && k.Alg != algES256 {
		return verifyKey{}, fmt.Errorf("alg %q does not fit a P-256 key", k.Alg)
	}
	x, errX := base64.RawURLEncoding.Strict().DecodeString(k.X)
	y, errY := base64.RawURLEncoding.Strict().DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return verifyKey{}, errors.New("x and y must be base64url 32-byte coordinates")
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return verifyKey{}, fmt.Errorf("x and y are not a P-256 point: %w", err)
	}
	return verifyKey{alg: algES256, key: pub}, nil
}
