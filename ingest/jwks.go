package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	// unknownKidRefreshInterval is the shortest time between two fetches
	// triggered by tokens with an unknown kid, so that a stream of forged
	// kids cannot turn ingest into a load generator against the issuer.
	unknownKidRefreshInterval = 30 * time.Second
	// maxJWKSBytes caps a fetched key set.
	maxJWKSBytes = 1 << 20
)

// Results of a JWKS fetch, the values of the result label.
const (
	jwksResultOK      = "ok"
	jwksResultError   = "error"   // the fetch failed or the status was not 200
	jwksResultInvalid = "invalid" // the body is not a usable key set
)

// keySet maps each kid to its one key. It is never changed after it is
// published, so readers need no lock.
type keySet map[string]verifyKey

// keySource holds the trusted keys: loaded once from jwks_file, or fetched
// from jwks_url and refreshed. Header members of a token never add keys or
// locations: only the configured file or URL does.
type keySource struct {
	url     string
	client  *http.Client
	refresh time.Duration
	// hsKid and hsKey are the configured HS256 key, added to every set.
	hsKid string
	hsKey []byte
	now   func() time.Time
	log   *slog.Logger
	// fetches counts fetches by result.
	fetches *prometheus.CounterVec

	current atomic.Pointer[keySet]

	// forcedMu guards lastForced, the time of the last fetch triggered by
	// an unknown kid.
	forcedMu   sync.Mutex
	lastForced time.Time
	// fetchMu makes fetches one at a time.
	fetchMu sync.Mutex
}

// newKeySource loads jwks_file, or fetches jwks_url once. A failed first
// fetch is logged, and run and tokens with unknown kids retry it. Until a
// fetch succeeds, only the HS256 key (if any) verifies tokens.
func newKeySource(cfg SyncAuthConfig, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) (*keySource, error) {
	ks := &keySource{
		url:     cfg.JWKSURL,
		refresh: cfg.JWKSRefresh,
		now:     now,
		log:     log,
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncguard_ingest_jwks_refresh_total",
			Help: "Fetches of ingest.sync_auth.jwks_url by result: ok, error (fetch failed or status not 200), invalid (not a usable key set; the last good set stays).",
		}, []string{"result"}),
	}
	for _, r := range []string{jwksResultOK, jwksResultError, jwksResultInvalid} {
		ks.fetches.WithLabelValues(r)
	}
	if err := reg.Register(ks.fetches); err != nil {
		return nil, fmt.Errorf("register ingest JWKS metrics: %w", err)
	}
	if cfg.HS256Secret != "" {
		ks.hsKid, ks.hsKey = cfg.HS256KeyID, []byte(cfg.HS256Secret.Reveal())
	}

	switch {
	case cfg.JWKSFile != "":
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("ingest.sync_auth.jwks_file: read JWKS: %w (write one with `syncguard keys token-key --file KEY.pem --out %s`, or point the key at your token issuer's JWKS)", err, cfg.JWKSFile)
			}
			return nil, fmt.Errorf("ingest.sync_auth.jwks_file: read JWKS: %w", err)
		}
		set, err := ks.parse(b)
		if err != nil {
			return nil, fmt.Errorf("ingest.sync_auth.jwks_file: %s: %w", cfg.JWKSFile, err)
		}
		ks.current.Store(&set)
	case cfg.JWKSURL != "":
		ks.client = &http.Client{
			Timeout: cfg.JWKSFetchTimeout,
			// The configured URL is the only place keys come from; a
			// redirect could lead anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		set, err := ks.parse(nil)
		if err != nil {
			return nil, err
		}
		ks.current.Store(&set)
		ctx, cancel := context.WithTimeout(context.Background(), cfg.JWKSFetchTimeout)
		err = ks.fetch(ctx)
		cancel()
		if err != nil {
			ks.log.Warn("JWKS fetch failed; tokens signed by its keys are rejected until a fetch succeeds",
				"url", ks.url, "err", err)
		}
	default:
		set, err := ks.parse(nil)
		if err != nil {
			return nil, err
		}
		ks.current.Store(&set)
	}
	if len(*ks.current.Load()) == 0 && ks.url == "" {
		return nil, errors.New("ingest.sync_auth.jwks_file: no usable Ed25519 or P-256 key")
	}
	return ks, nil
}

// lookup returns the key of kid. An unknown kid triggers a fetch of
// jwks_url, at most once per unknownKidRefreshInterval, and the lookup is
// repeated on the fetched set.
func (ks *keySource) lookup(ctx context.Context, kid string) (verifyKey, bool) {
	if k, ok := (*ks.current.Load())[kid]; ok {
		return k, true
	}
	if ks.url == "" || !printableASCII(kid) || !ks.mayForceFetch() {
		return verifyKey{}, false
	}
	if err := ks.fetch(ctx); err != nil {
		ks.log.Warn("JWKS fetch for an unknown kid failed; keeping the last good set", "err", err)
		return verifyKey{}, false
	}
	k, ok := (*ks.current.Load())[kid]
	return k, ok
}

// mayForceFetch reports whether an unknown kid may trigger a fetch now,
// and if so records the time.
func (ks *keySource) mayForceFetch() bool {
	ks.forcedMu.Lock()
	defer ks.forcedMu.Unlock()
	now := ks.now()
	if !ks.lastForced.IsZero() && now.Sub(ks.lastForced) < unknownKidRefreshInterval && now.After(ks.lastForced.Add(-unknownKidRefreshInterval)) {
		return false
	}
	ks.lastForced = now
	return true
}

// run fetches jwks_url every jwks_refresh until ctx ends. It returns at
// once when the keys come from a file.
func (ks *keySource) run(ctx context.Context) {
	if ks.url == "" {
		return
	}
	t := time.NewTicker(ks.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := ks.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			// Logged once per outage, not once per refresh.
			ks.log.Warn("JWKS refresh failed; keeping the last good set", "url", ks.url, "err", err)
			failing = true
		case err == nil && failing:
			ks.log.Info("JWKS refresh works again", "url", ks.url)
			failing = false
		}
	}
}

// fetch gets jwks_url and publishes the set when it is valid. On any
// failure the current set stays.
func (ks *keySource) fetch(ctx context.Context) error {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()

	b, err := ks.get(ctx)
	if err != nil {
		ks.fetches.WithLabelValues(jwksResultError).Inc()
		return err
	}
	set, err := ks.parse(b)
	if err == nil && len(set) == len(ks.hsOnly()) {
		err = errors.New("the set holds no usable Ed25519 or P-256 key")
	}
	if err != nil {
		ks.fetches.WithLabelValues(jwksResultInvalid).Inc()
		return fmt.Errorf("JWKS from %s: %w", ks.url, err)
	}
	ks.current.Store(&set)
	ks.fetches.WithLabelValues(jwksResultOK).Inc()
	return nil
}

func (ks *keySource) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("fetch JWKS from %s: status %d", ks.url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS from %s: %w", ks.url, err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS from %s is larger than %d bytes", ks.url, maxJWKSBytes)
	}
	return b, nil
}

// hsOnly returns the set that holds only the HS256 key, or no key.
func (ks *keySource) hsOnly() keySet {
	set := keySet{}
	if ks.hsKid != "" {
		set[ks.hsKid] = verifyKey{alg: algHS256, key: ks.hsKey}
	}
	return set
}

// parse reads a JWKS document (nil means no document) and adds the HS256
// key. A kid that names both an asymmetric key and the HS256 key is an
// error, because each kid must have exactly one algorithm.
func (ks *keySource) parse(b []byte) (keySet, error) {
	set := keySet{}
	if b != nil {
		var err error
		if set, err = parseJWKS(b); err != nil {
			return nil, err
		}
	}
	if ks.hsKid != "" {
		if _, exists := set[ks.hsKid]; exists {
			return nil, fmt.Errorf("ingest.sync_auth.hs256_kid: %q is also a kid in the JWKS", ks.hsKid)
		}
		set[ks.hsKid] = verifyKey{alg: algHS256, key: ks.hsKey}
	}
	return set, nil
}

// jwk is one JSON Web Key of a JWKS document.
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

// loadJWKS reads the keys of a JWKS file.
func loadJWKS(path string) (keySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	set, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", path, err)
	}
	return set, nil
}

// parseJWKS reads the Ed25519 and P-256 public keys of a JWKS document.
// Keys of other types or for encryption are skipped. A private key is an
// error, because it does not belong on a server that only verifies.
func parseJWKS(b []byte) (keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	set := make(keySet, len(doc.Keys))
	for i, k := range doc.Keys {
		if k.D != "" {
			return nil, fmt.Errorf("key %d (kid %q) contains private key material; publish only public keys", i, clip(k.Kid))
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var vk verifyKey
		var err error
		switch {
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			vk, err = ed25519JWK(k)
		case k.Kty == "EC" && k.Crv == "P-256":
			vk, err = p256JWK(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, clip(k.Kid), err)
		}
		if k.Kid == "" || len(k.Kid) > maxKeyIDLen {
			return nil, fmt.Errorf("key %d: kid must be 1 to %d bytes", i, maxKeyIDLen)
		}
		if _, dup := set[k.Kid]; dup {
			return nil, fmt.Errorf("kid %q appears twice", clip(k.Kid))
		}
		set[k.Kid] = vk
	}
	return set, nil
}

func ed25519JWK(k jwk) (verifyKey, error) {
	if k.Alg != "" && k.Alg != algEdDSA && k.Alg != "Ed25519" {
		return verifyKey{}, fmt.Errorf("alg %q does not fit an Ed25519 key", k.Alg)
	}
	pub, err := ed25519Public(k.X)
	if err != nil {
		return verifyKey{}, err
	}
	return verifyKey{alg: algEdDSA, key: pub}, nil
}

func p256JWK(k jwk) (verifyKey, error) {
	if k.Alg != "" && k.Alg != algES256 {
		return verifyKey{}, fmt.Errorf("alg %q does not fit a P-256 key", k.Alg)
	}
	pub, err := p256Public(k.X, k.Y)
	if err != nil {
		return verifyKey{}, err
	}
	return verifyKey{alg: algES256, key: pub}, nil
}

// ed25519Public decodes the x member of an Ed25519 JWK.
func ed25519Public(x string) (ed25519.PublicKey, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(x)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("x is not a base64url Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// p256Public decodes the x and y members of a P-256 JWK.
func p256Public(x, y string) (*ecdsa.PublicKey, error) {
	bx, errX := base64.RawURLEncoding.Strict().DecodeString(x)
	by, errY := base64.RawURLEncoding.Strict().DecodeString(y)
	if errX != nil || errY != nil || len(bx) != 32 || len(by) != 32 {
		return nil, errors.New("x and y must be base64url 32-byte coordinates")
	}
	point := append(append([]byte{4}, bx...), by...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("x and y are not a P-256 point: %w", err)
	}
	return pub, nil
}

// printableASCII reports whether s holds only printable ASCII.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
