package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

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

// tokenVerifier checks the sync API's access tokens.
type tokenVerifier struct {
	cfg    SyncAuthConfig
	keys   *keySource
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
	// Cnf binds the token to a DPoP key (RFC 9449). A token with cnf is
	// accepted only with a proof signed by that key.
	Cnf *confirmation `json:"cnf"`
}

// confirmation is the cnf claim. Only the jkt method is supported.
type confirmation struct {
	// JKT is the base64url SHA-256 JWK thumbprint (RFC 7638) of the key
	// that must sign the DPoP proofs.
	JKT string `json:"jkt"`
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

// newTokenVerifier loads or fetches the trusted keys.
func newTokenVerifier(cfg SyncAuthConfig, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) (*tokenVerifier, error) {
	keys, err := newKeySource(cfg, now, log, reg)
	if err != nil {
		return nil, err
	}
	methods := []string{algEdDSA, algES256}
	if cfg.HS256Secret != "" {
		methods = append(methods, algHS256)
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

// Authorization schemes of the sync API.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// splitAuthorization returns the scheme of an Authorization value, as
// schemeBearer or schemeDPoP whatever its case, and the credentials.
// scheme is "" for any other scheme.
func splitAuthorization(authorization string) (scheme, token string) {
	name, token, found := strings.Cut(authorization, " ")
	if !found {
		return "", ""
	}
	token = strings.TrimLeft(token, " ")
	switch {
	case strings.EqualFold(name, schemeBearer):
		return schemeBearer, token
	case strings.EqualFold(name, schemeDPoP):
		return schemeDPoP, token
	}
	return "", ""
}

// verify checks an access token and returns its claims. The signature is
// checked before any claim is used.
func (v *tokenVerifier) verify(ctx context.Context, token string) (*accessClaims, *authError) {
	if !wellFormedJWS(token) {
		return nil, invalidToken("the token is not three base64url segments within the length limit")
	}

	claims := new(accessClaims)
	keyFor := func(t *jwt.Token) (any, error) { return v.keyFor(ctx, t) }
	if _, err := v.parser.ParseWithClaims(token, claims, keyFor); err != nil {
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
	if claims.Cnf != nil && !validThumbprint(claims.Cnf.JKT) {
		return nil, invalidToken("cnf has no jkt that is an unpadded base64url SHA-256 thumbprint")
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
func (v *tokenVerifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
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
	k, ok := v.keys.lookup(ctx, kid)
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
