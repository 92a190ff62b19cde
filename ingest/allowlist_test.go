package ingest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

func TestAllowlistRoutes(t *testing.T) {
	a, err := newAllowlist(AllowlistConfig{
		Webhook: []string{"198.51.100.0/24", "2001:db8::/32", "::ffff:203.0.113.7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, addr string
		want       bool
	}{
		{pathWebhook, "198.51.100.7", true},
		{pathWebhook, "198.51.101.7", false},
		{pathWebhook, "::ffff:198.51.100.7", true}, // IPv4-mapped peer
		{pathWebhook, "203.0.113.7", true},         // IPv4-mapped entry
		{pathWebhook, "203.0.113.8", false},
		{pathWebhook, "2001:db8:5::1", true},
		{pathWebhook, "2001:db9::1", false},
		{pathSync, "192.0.2.1", true}, // empty list allows all
		{"/healthz", "192.0.2.1", true},
	}
	for _, tt := range tests {
		if got := a.allowed(tt.path, netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("allowed(%s, %s) = %v, want %v", tt.path, tt.addr, got, tt.want)
		}
	}
	if a.allowed(pathWebhook, netip.Addr{}) {
		t.Error("an invalid address passed a non-empty allowlist")
	}
}

func TestEdgeConfigValidate(t *testing.T) {
	keys := newTestKeys(t)
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error, "" for none
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad trusted proxy", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "ingest.trusted_proxies[0]"},
		{"zone in allowlist", func(c *Config) { c.Allowlist.Sync = []string{"fe80::1%eth0"} }, "ingest.allowlist.sync[0]"},
		{"bad webhook allowlist", func(c *Config) { c.Allowlist.Webhook = []string{"example.com"} }, "ingest.allowlist.webhook[0]"},
		{"negative rate", func(c *Config) { c.RateLimits.Source.Rate = -1 }, "ingest.rate_limits.source.rate"},
		{"zero burst", func(c *Config) { c.RateLimits.Device.Burst = 0 }, "ingest.rate_limits.device.burst"},
		{"rate off needs no burst", func(c *Config) { c.RateLimits.Account = RateLimit{} }, ""},
		{"zero max keys", func(c *Config) { c.RateLimits.MaxKeys = 0 }, "ingest.rate_limits.max_keys"},
		{"zero block cap", func(c *Config) { c.Blocks.MaxEntries = 0 }, "ingest.blocks.max_entries"},
		{"slow block fetch", func(c *Config) { c.Blocks.FetchMaxWait = 5 * time.Second }, "ingest.blocks.fetch_max_wait"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "cert.pem" }, "ingest.tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(keys)
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted the configuration, want an error naming %s", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %v, want it to name %s", err, tt.want)
			}
		})
	}
}

func TestSyncAllowlistRejects(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Allowlist.Sync = []string{"10.0.0.0/8"}
	})
	req := h.syncRequest("application/json", []byte(`[`+h.event("e1")+`]`), h.token(h.claims()))
	req.RemoteAddr = "[::ffff:192.0.2.9]:5555"
	rec := h.do(req)
	wantProblem(t, rec, http.StatusForbidden, schemas.ReasonForbiddenSource)

	req = h.syncRequest("application/json", []byte(`[`+h.event("e2")+`]`), h.token(h.claims()))
	req.RemoteAddr = "[::ffff:10.1.2.3]:5555"
	if rec := h.do(req); rec.Code != http.StatusAccepted {
		t.Fatalf("allowlisted source: status %d, body %s", rec.Code, rec.Body.String())
	}

	found := false
	for _, ev := range h.auditEvents(2) {
		if ev.Reason == schemas.ReasonForbiddenSource {
			found = true
			if ev.Route != routeSync || ev.Source != "192.0.2.9" {
				t.Errorf("audit event: route %q source %q, want %s from 192.0.2.9", ev.Route, ev.Source, routeSync)
			}
		}
	}
	if !found {
		t.Error("no audit event for the rejected source")
	}
	if got := counterWith(t, h.registry, "syncguard_ingest_requests_total", map[string]string{"reason": schemas.ReasonForbiddenSource}); got != 1 {
		t.Errorf("requests_total{reason=forbidden_source} = %g, want 1", got)
	}
}

// writeTestCert writes a self-signed P-256 certificate for 127.0.0.1 and
// returns the cert and key file paths and a pool that trusts it.
func writeTestCert(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ingest test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeTestFile(certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))); err != nil {
		t.Fatal(err)
	}
	if err := writeTestFile(keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	h := newHarness(t, func(c *Config) {
		c.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	})
	base, _ := serving(t, h)
	base = strings.Replace(base, "http://", "https://", 1)

	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	resp, err := h2.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200", resp.StatusCode)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol = %s, want HTTP/2", resp.Proto)
	}
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS state %+v, want TLS 1.3", resp.TLS)
	}

	// A client that offers at most TLS 1.2 fails the handshake.
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12},
	}}
	if resp, err := old.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("a TLS 1.2 client was served")
	}
}

func TestTLSBadFiles(t *testing.T) {
	keys := newTestKeys(t)
	cfg := testConfig(keys)
	cfg.TLS = TLSConfig{CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: filepath.Join(t.TempDir(), "missing.key")}
	_, err := New(Options{Config: cfg, Kafka: testKafkaConfig(), EnvelopeKey: make([]byte, 32)})
	if err == nil || !strings.Contains(err.Error(), "ingest.tls") {
		t.Fatalf("New with missing TLS files: %v, want an error naming ingest.tls", err)
	}
}
