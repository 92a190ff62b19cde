package ingest

import (
	"strings"
	"testing"
	"time"
)

func TestReplayDefenceConfig(t *testing.T) {
	keys := newTestKeys(t)
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"jwks_url instead of jwks_file", func(c *Config) {
			c.SyncAuth.JWKSFile, c.SyncAuth.JWKSURL = "", "https://auth.test.invalid/jwks.json"
		}, ""},
		{"jwks_url and jwks_file", func(c *Config) { c.SyncAuth.JWKSURL = "https://auth.test.invalid/jwks.json" }, "ingest.sync_auth.jwks_url: set only one"},
		{"jwks_url plain http", func(c *Config) {
			c.SyncAuth.JWKSFile, c.SyncAuth.JWKSURL = "", "http://auth.test.invalid/jwks.json"
		}, "ingest.sync_auth.jwks_url"},
		{"jwks_refresh too short", func(c *Config) {
			c.SyncAuth.JWKSFile, c.SyncAuth.JWKSURL = "", "https://auth.test.invalid/jwks.json"
			c.SyncAuth.JWKSRefresh = time.Second
		}, "ingest.sync_auth.jwks_refresh"},
		{"jwks_fetch_timeout zero", func(c *Config) {
			c.SyncAuth.JWKSFile, c.SyncAuth.JWKSURL = "", "https://auth.test.invalid/jwks.json"
			c.SyncAuth.JWKSFetchTimeout = 0
		}, "ingest.sync_auth.jwks_fetch_timeout"},
		{"dpop_max_age zero", func(c *Config) { c.SyncAuth.DPoPMaxAge = 0 }, "ingest.sync_auth.dpop_max_age"},
		{"dpop_max_age an hour", func(c *Config) { c.SyncAuth.DPoPMaxAge = time.Hour }, "ingest.sync_auth.dpop_max_age"},
		{"dpop_replay_cache_max zero", func(c *Config) { c.SyncAuth.DPoPReplayCacheMax = 0 }, "ingest.sync_auth.dpop_replay_cache_max"},
		{"public_origin", func(c *Config) { c.PublicOrigin = "https://ingest.test.invalid" }, ""},
		{"public_origin with port", func(c *Config) { c.PublicOrigin = "https://ingest.test.invalid:8443/" }, ""},
		{"public_origin with path", func(c *Config) { c.PublicOrigin = "https://ingest.test.invalid/v1" }, "ingest.public_origin"},
		{"public_origin relative", func(c *Config) { c.PublicOrigin = "ingest.test.invalid" }, "ingest.public_origin"},
		{"public_origin with query", func(c *Config) { c.PublicOrigin = "https://ingest.test.invalid?x" }, "ingest.public_origin"},
		{"unbound tokens off without origin", func(c *Config) { c.SyncAuth.AllowUnboundTokens = false }, "ingest.public_origin: missing"},
		{"unbound tokens off with origin", func(c *Config) {
			c.SyncAuth.AllowUnboundTokens = false
			c.PublicOrigin = "https://ingest.test.invalid"
		}, ""},
		{"idempotency entries zero", func(c *Config) { c.SyncIdempotencyMaxEntries = 0 }, "ingest.sync_idempotency_max_entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(keys)
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParsePublicOrigin(t *testing.T) {
	f := func(raw, want string) {
		t.Helper()
		got, err := parsePublicOrigin(raw)
		if want == "" {
			if err == nil {
				t.Errorf("parsePublicOrigin(%q) = %q, want an error", raw, got)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("parsePublicOrigin(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	f("https://ingest.test.invalid", "https://ingest.test.invalid")
	f("HTTPS://Ingest.Test.Invalid:443/", "https://ingest.test.invalid")
	f("http://127.0.0.1:80", "http://127.0.0.1")
	f("http://[::1]:8080", "http://[::1]:8080")
	f("https://ingest.test.invalid:8443", "https://ingest.test.invalid:8443")
	f("https://u@ingest.test.invalid", "")
	f("https://ingest.test.invalid#x", "")
	f("wss://ingest.test.invalid", "")
	f("https://ingest.test.invalid:x", "")
}
