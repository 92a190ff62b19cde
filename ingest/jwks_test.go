package ingest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// jwksServer serves a JWKS document that a test can replace, and counts
// the requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	status int
	body   []byte
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		if status == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// rotatedJWKS adds an Ed25519 key ed-2 to the test keys' set.
func rotatedJWKS(t *testing.T, keys *testKeys) (ed25519.PrivateKey, []byte) {
	t.Helper()
	pub, ed2, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(keys.jwksRaw, &set); err != nil {
		t.Fatal(err)
	}
	set.Keys = append(set.Keys, map[string]string{
		"kty": "OKP", "crv": "Ed25519", "kid": "ed-2", "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pub),
	})
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return ed2, b
}

// jwksURLHarness is a harness whose keys come from a JWKS URL.
func jwksURLHarness(t *testing.T) (*harness, *jwksServer) {
	t.Helper()
	keys := newTestKeys(t)
	srv := newJWKSServer(t, keys.jwksRaw)
	h := newHarness(t, func(c *Config) {
		c.SyncAuth.JWKSFile = ""
		c.SyncAuth.JWKSURL = srv.URL + "/jwks.json"
	})
	// newHarness made its own keys; sign with the ones the server holds.
	h.keys = keys
	return h, srv
}

func (h *harness) postWith(token string) int {
	h.t.Helper()
	return h.do(h.syncRequest("application/json", []byte("["+h.event("e-"+newID())+"]"), token)).Code
}

func TestJWKSURLRotation(t *testing.T) {
	h, srv := jwksURLHarness(t)
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("%d fetches at start, want 1", got)
	}
	if code := h.postWith(h.token(h.claims())); code != http.StatusAccepted {
		t.Fatalf("ed-1 token: status = %d", code)
	}
	if code := h.postWith(signToken(t, jwt.SigningMethodES256, h.keys.ec, "ec-1", h.claims())); code != http.StatusAccepted {
		t.Fatalf("ec-1 token: status = %d", code)
	}

	ed2, rotated := rotatedJWKS(t, h.keys)
	ed2Token := func() string { return signToken(t, jwt.SigningMethodEdDSA, ed2, "ed-2", h.claims()) }

	// Before rotation, ed-2 is unknown: one fetch, then none for 30s.
	if code := h.postWith(ed2Token()); code != http.StatusUnauthorized {
		t.Fatalf("ed-2 before rotation: status = %d, want 401", code)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches after an unknown kid, want 2", got)
	}
	srv.serve(http.StatusOK, rotated)
	for i := range 20 {
		if code := h.postWith(ed2Token()); code != http.StatusUnauthorized {
			t.Fatalf("ed-2 within 30s of the last forced fetch, try %d: status = %d, want 401", i, code)
		}
	}
	h.advance(29 * time.Second)
	if code := h.postWith(ed2Token()); code != http.StatusUnauthorized {
		t.Fatalf("ed-2 29s later: status = %d, want 401", code)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches after 21 unknown-kid requests within 30s, want 2", got)
	}

	// 30s after the last forced fetch, the next unknown kid fetches again.
	h.advance(time.Second)
	if code := h.postWith(ed2Token()); code != http.StatusAccepted {
		t.Fatalf("ed-2 after rotation: status = %d, want 202", code)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("%d fetches, want 3", got)
	}
	if code := h.postWith(ed2Token()); code != http.StatusAccepted {
		t.Fatalf("ed-2 again: status = %d, want 202", code)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("a known kid fetched again: %d fetches, want 3", got)
	}
	if got := counterWith(t, h.registry, "syncguard_ingest_jwks_refresh_total", map[string]string{"result": "ok"}); got != 3 {
		t.Errorf("jwks refresh ok = %v, want 3", got)
	}
}

// TestJWKSURLKeepsLastGoodSet checks that failed or invalid fetches leave
// the last good set in use.
func TestJWKSURLKeepsLastGoodSet(t *testing.T) {
	h, srv := jwksURLHarness(t)
	private := []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-9","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}`)
	tests := []struct {
		name   string
		status int
		body   []byte
		result string
	}{
		{"server error", http.StatusInternalServerError, nil, jwksResultError},
		{"redirect", http.StatusFound, nil, jwksResultError},
		{"not JSON", http.StatusOK, []byte("<html>"), jwksResultInvalid},
		{"empty set", http.StatusOK, []byte(`{"keys":[]}`), jwksResultInvalid},
		{"private key", http.StatusOK, private, jwksResultInvalid},
		{"too large", http.StatusOK, make([]byte, maxJWKSBytes+1), jwksResultError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.serve(tt.status, tt.body)
			before := counterWith(t, h.registry, "syncguard_ingest_jwks_refresh_total", map[string]string{"result": tt.result})
			// An unknown kid forces a fetch once the interval passed.
			h.advance(unknownKidRefreshInterval)
			if code := h.postWith(signToken(t, jwt.SigningMethodEdDSA, h.keys.ed, "ed-9", h.claims())); code != http.StatusUnauthorized {
				t.Fatalf("unknown kid: status = %d", code)
			}
			after := counterWith(t, h.registry, "syncguard_ingest_jwks_refresh_total", map[string]string{"result": tt.result})
			if after != before+1 {
				t.Fatalf("jwks refresh %s went from %v to %v, want one more", tt.result, before, after)
			}
			if code := h.postWith(h.token(h.claims())); code != http.StatusAccepted {
				t.Fatalf("ed-1 after the failed fetch: status = %d, want 202", code)
			}
		})
	}
}

// TestJWKSURLUnreachableAtStart checks that ingest starts without the key
// set and loads it once the URL responds.
func TestJWKSURLUnreachableAtStart(t *testing.T) {
	keys := newTestKeys(t)
	srv := newJWKSServer(t, keys.jwksRaw)
	srv.serve(http.StatusServiceUnavailable, nil)
	h := newHarness(t, func(c *Config) {
		c.SyncAuth.JWKSFile = ""
		c.SyncAuth.JWKSURL = srv.URL
	})
	h.keys = keys
	// The first unknown kid comes right after the failed start fetch,
	// which was not forced, so it may fetch.
	if code := h.postWith(h.token(h.claims())); code != http.StatusUnauthorized {
		t.Fatalf("before the URL answers: status = %d, want 401", code)
	}
	srv.serve(http.StatusOK, keys.jwksRaw)
	h.advance(unknownKidRefreshInterval)
	if code := h.postWith(h.token(h.claims())); code != http.StatusAccepted {
		t.Fatalf("after the URL answers: status = %d, want 202", code)
	}
}

// TestJWKSRefreshLoop checks the periodic refresh and its stop.
func TestJWKSRefreshLoop(t *testing.T) {
	keys := newTestKeys(t)
	srv := newJWKSServer(t, keys.jwksRaw)
	cfg := testConfig(keys).SyncAuth
	cfg.JWKSFile, cfg.JWKSURL = "", srv.URL
	cfg.JWKSRefresh = 20 * time.Millisecond
	ks, err := newKeySource(cfg, time.Now, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	_, rotated := rotatedJWKS(t, keys)
	srv.serve(http.StatusOK, rotated)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ks.run(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := (*ks.current.Load())["ed-2"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refresh loop did not publish the rotated set")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the refresh loop did not stop")
	}
	hits := srv.hits.Load()
	time.Sleep(60 * time.Millisecond) // three refresh periods: no fetch may come
	if got := srv.hits.Load(); got != hits {
		t.Errorf("%d fetches after the loop stopped", got-hits)
	}
}

func TestCheckJWKSURL(t *testing.T) {
	f := func(raw string, ok bool) {
		t.Helper()
		if err := checkJWKSURL(raw); (err == nil) != ok {
			t.Errorf("checkJWKSURL(%q) = %v, want ok %v", raw, err, ok)
		}
	}
	f("https://auth.test.invalid/.well-known/jwks.json", true)
	f("http://127.0.0.1:8081/jwks", true)
	f("http://[::1]:8081/jwks", true)
	f("http://localhost/jwks", true)
	f("http://auth.test.invalid/jwks", false)
	f("ftp://auth.test.invalid/jwks", false)
	f("https://user:pw@auth.test.invalid/jwks", false)
	f("/jwks.json", false)
	f("https://auth.test.invalid/jwks#x", false)
}

// TestJWKSURLOddKidsDoNotFetch checks that kids no JWKS could hold, too
// long or with control characters, never trigger a fetch.
func TestJWKSURLOddKidsDoNotFetch(t *testing.T) {
	h, srv := jwksURLHarness(t)
	before := srv.hits.Load()
	for _, kid := range []string{"ed-1\x00", "ed-1\nlevel=error", strings.Repeat("k", 16<<10)} {
		h.advance(unknownKidRefreshInterval)
		tok := edSigned(h, map[string]any{"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, h.claims())
		if code := h.postWith(tok); code != http.StatusUnauthorized {
			t.Errorf("kid %.20q: status = %d, want 401", kid, code)
		}
	}
	if got := srv.hits.Load(); got != before {
		t.Errorf("%d fetches for odd kids, want 0", got-before)
	}
}
