package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncguard/syncguard/schemas"
)

// typDPoP is the typ header of a DPoP proof (RFC 9449).
const typDPoP = "dpop+jwt"

// maxJTILen caps the jti of a proof before it reaches the replay cache.
const maxJTILen = 256

// thumbprintLen is the length of an unpadded base64url SHA-256 digest.
const thumbprintLen = 43

// dpopVerifier checks DPoP proofs (RFC 9449) and claims their jti in the
// replay log that every ingest instance shares, so that a proof is
// accepted once across all of them.
type dpopVerifier struct {
	// origin is the normalised ingest.public_origin, "" when unset.
	origin string
	maxAge time.Duration
	now    func() time.Time
	parser *jwt.Parser
	// replay holds the claims of (jkt, jti) for twice maxAge.
	replay claimer
}

// claimer is a set-if-absent store of proof identities. The replay log is
// the one every server uses.
type claimer interface {
	claim(ctx context.Context, k cacheKey) (int, error)
}

func newDPoPVerifier(cfg Config, now func() time.Time, replay claimer) (*dpopVerifier, error) {
	d := &dpopVerifier{
		maxAge: cfg.SyncAuth.DPoPMaxAge,
		now:    now,
		replay: replay,
		parser: jwt.NewParser(
			// Asymmetric algorithms only: a proof shows possession of a
			// private key.
			jwt.WithValidMethods([]string{algES256, algEdDSA}),
			jwt.WithStrictDecoding(),
			// iat is checked against dpop_max_age below; a proof has no
			// other time claim that matters.
			jwt.WithoutClaimsValidation(),
		),
	}
	if cfg.PublicOrigin != "" {
		var err error
		if d.origin, err = parsePublicOrigin(cfg.PublicOrigin); err != nil {
			return nil, fmt.Errorf("ingest.public_origin: %w", err)
		}
	}
	return d, nil
}

// dpopClaims are the claims of a DPoP proof.
type dpopClaims struct {
	jwt.RegisteredClaims
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	ATH string `json:"ath"`
}

// UnmarshalJSON rejects an iat that is not a JSON number.
func (c *dpopClaims) UnmarshalJSON(b []byte) error {
	var times numericClaims
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, v := range []json.RawMessage{times.Exp, times.Iat, times.Nbf} {
		if v != nil && !isJSONNumber(v) {
			return errors.New("exp, iat and nbf must be JSON numbers")
		}
	}
	type plain dpopClaims // drops this method, so no recursion
	return json.Unmarshal(b, (*plain)(c))
}

// dpopError is a rejected proof. Like authError, its cause never holds the
// proof or the token.
func dpopError(cause string) *authError {
	return &authError{code: schemas.ReasonInvalidDPoPProof, cause: cause}
}

// verify checks the DPoP proof of a request and then claims its jti, as
// check and claim do.
func (d *dpopVerifier) verify(ctx context.Context, proof, method, path, accessToken, jkt string) *authError {
	jti, err := d.check(proof, method, path, accessToken, jkt)
	if err != nil {
		return err
	}
	return d.claim(ctx, jkt, jti)
}

// check verifies the DPoP proof of a request with the given method and
// escaped path, for accessToken whose cnf.jkt is jkt, and returns its jti.
// It claims nothing, so a caller can apply the device's rate limit before
// a valid proof takes a place in the replay log.
func (d *dpopVerifier) check(proof, method, path, accessToken, jkt string) (string, *authError) {
	if d.origin == "" {
		return "", dpopError("ingest.public_origin is not set, so no htu can match")
	}
	if !wellFormedJWS(proof) {
		return "", dpopError("the proof is not three base64url segments within the length limit")
	}

	// Parse and verify the signature with the key in the header.
	claims := new(dpopClaims)
	var thumbprint string
	keyFor := func(t *jwt.Token) (any, error) {
		key, tp, err := proofKey(t)
		thumbprint = tp
		return key, err
	}
	if _, err := d.parser.ParseWithClaims(proof, claims, keyFor); err != nil {
		return "", dpopError(err.Error())
	}

	// Bind the proof to the token and the request.
	if subtle.ConstantTimeCompare([]byte(thumbprint), []byte(jkt)) != 1 {
		return "", dpopError("the proof's key is not the key in the token's cnf.jkt")
	}
	if claims.ATH == "" {
		return "", dpopError("the ath claim is required")
	}
	ath := sha256.Sum256([]byte(accessToken))
	if subtle.ConstantTimeCompare([]byte(claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(ath[:]))) != 1 {
		return "", dpopError("ath is not the hash of the access token")
	}
	if claims.HTM == "" || claims.HTM != method {
		return "", dpopError("htm is not the request method")
	}
	if !d.htuMatches(claims.HTU, path) {
		return "", dpopError("htu is not public_origin plus the request path")
	}
	if claims.IssuedAt == nil {
		return "", dpopError("the iat claim is required")
	}
	now := d.now()
	if age := now.Sub(claims.IssuedAt.Time); age > d.maxAge || age < -d.maxAge {
		return "", dpopError("iat is outside dpop_max_age of the server time")
	}
	jti := claims.ID
	if jti == "" || len(jti) > maxJTILen {
		return "", dpopError("the jti claim must be 1 to 256 bytes")
	}

	return jti, nil
}

// claim records the jti of a checked proof, so the same proof is rejected
// next time by every instance. The key is (jkt, jti), never the proof
// bytes: a re-signed or malleated proof reuses the jti and must count as
// the same proof. ctx bounds the claim.
func (d *dpopVerifier) claim(ctx context.Context, jkt, jti string) *authError {
	outcome, err := d.replay.claim(ctx, keyOf(jkt, jti))
	switch {
	case err != nil:
		return &authError{code: schemas.ReasonUnavailable, cause: "the DPoP replay log: " + err.Error()}
	case outcome == claimReplay:
		return dpopError("the jti was used before")
	case outcome == claimFull:
		return &authError{code: schemas.ReasonUnavailable, cause: "the DPoP replay log is full of live claims"}
	}
	return nil
}

// htuMatches reports whether htu names this server's public origin and
// path: scheme and host compared without regard to case and without the
// default port, the path exactly, query and fragment ignored.
func (d *dpopVerifier) htuMatches(htu, path string) bool {
	if htu == "" {
		return false
	}
	u, err := url.Parse(htu)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.User != nil || u.Host == "" {
		return false
	}
	origin, ok := normalOrigin(u)
	if !ok || origin != d.origin {
		return false
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return p == path
}

// privateJWKMembers are the JWK members that carry private or symmetric
// key material (RFC 7518 section 6).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// proofKey returns the public key in a proof's jwk header and its RFC 7638
// thumbprint. The header must say typ dpop+jwt and carry a public Ed25519
// or P-256 key that fits alg; no other header member names a key.
func proofKey(t *jwt.Token) (any, string, error) {
	if typ, _ := t.Header["typ"].(string); typ != typDPoP {
		return nil, "", errors.New("the typ header is not dpop+jwt")
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, "", errors.New("the crit header names an unsupported extension")
	}
	m, ok := t.Header["jwk"].(map[string]any)
	if !ok {
		return nil, "", errors.New("the jwk header is missing or not an object")
	}
	for _, name := range privateJWKMembers {
		if _, ok := m[name]; ok {
			return nil, "", errors.New("invalid jwk header: it contains private key material")
		}
	}
	str := func(name string) string { s, _ := m[name].(string); return s }
	kty, crv, x := str("kty"), str("crv"), str("x")
	switch {
	case kty == "OKP" && crv == "Ed25519" && t.Method.Alg() == algEdDSA:
		pub, err := ed25519Public(x)
		if err != nil {
			return nil, "", err
		}
		// RFC 8037 section 2: the required members are crv, kty and x.
		return pub, thumbprintOf(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`), nil
	case kty == "EC" && crv == "P-256" && t.Method.Alg() == algES256:
		y := str("y")
		pub, err := p256Public(x, y)
		if err != nil {
			return nil, "", err
		}
		return pub, thumbprintOf(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`), nil
	default:
		return nil, "", errors.New("the jwk header is not an Ed25519 or P-256 public key that fits alg")
	}
}

// thumbprintOf returns the base64url SHA-256 of a JWK's canonical members.
// The members were checked to be strict base64url, so they need no JSON
// escaping.
func thumbprintOf(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validThumbprint reports whether s has the form of a SHA-256 JWK
// thumbprint: 43 characters of unpadded base64url.
func validThumbprint(s string) bool {
	if len(s) != thumbprintLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil
}
