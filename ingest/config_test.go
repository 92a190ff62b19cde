package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/config"
)

func TestConfigValidate(t *testing.T) {
	keys := newTestKeys(t)
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string // "" means valid
	}{
		{"test config", func(*Config) {}, ""},
		{"defaults alone", func(c *Config) { *c = DefaultConfig() }, "whatsapp.apps: at least one app"},
		{"no apps", func(c *Config) { c.WhatsAppApps = nil }, "whatsapp.apps: at least one app"},
		{"app without secrets", func(c *Config) { c.WhatsAppApps[0].Secrets = nil }, "whatsapp.apps[0].secrets: at least one app secret"},
		{"secret empty", func(c *Config) { c.WhatsAppApps[0].Secrets[0].Secret = "" }, "whatsapp.apps[0].secrets[0]: set exactly one of secret and secret_file"},
		{"secret and file", func(c *Config) { c.WhatsAppApps[0].Secrets[0].SecretFile = "/x" }, "set exactly one of secret and secret_file"},
		{"secret file only", func(c *Config) {
			c.WhatsAppApps[0].Secrets[0].Secret = ""
			c.WhatsAppApps[0].Secrets[0].SecretFile = "/run/secrets/app"
		}, ""},
		{"secret without id", func(c *Config) { c.WhatsAppApps[0].Secrets[0].ID = "" }, "whatsapp.apps[0].secrets[0].id"},
		{"secret window reversed", func(c *Config) {
			c.WhatsAppApps[0].Secrets[0].NotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			c.WhatsAppApps[0].Secrets[0].NotAfter = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		}, "whatsapp.apps[0].secrets[0].not_after"},
		{"no verify token", func(c *Config) { c.WhatsAppApps[0].VerifyToken = "" }, "whatsapp.apps[0].verify_token: missing"},
		{"app name invalid", func(c *Config) { c.WhatsAppApps[0].Name = "a b" }, "whatsapp.apps[0].name"},
		{"app names repeated", func(c *Config) { c.WhatsAppApps = append(c.WhatsAppApps, c.WhatsAppApps[0]) }, "whatsapp.apps[1].name"},
		{"listen addr", func(c *Config) { c.ListenAddr = "8080" }, "ingest.listen_addr"},
		{"produce timeout", func(c *Config) { c.ProduceTimeout = 0 }, "ingest.produce_timeout"},
		{"device in flight negative", func(c *Config) { c.RateLimits.DeviceInFlight = -1 }, "ingest.rate_limits.device_in_flight"},
		{"device in flight off", func(c *Config) { c.RateLimits.DeviceInFlight = 0 }, ""},
		{"write timeout equal to read timeout", func(c *Config) { c.WriteTimeout = c.ReadTimeout }, "ingest.write_timeout: must be at least read_timeout (30s) + produce_timeout (2s) + 1s = 33s"},
		{"write timeout without room to produce", func(c *Config) { c.WriteTimeout = c.ReadTimeout + time.Second }, "got 31s"},
		{"write timeout just long enough", func(c *Config) { c.WriteTimeout = c.ReadTimeout + c.ProduceTimeout + time.Second }, ""},
		{"webhook body over a Kafka record", func(c *Config) { c.WebhookMaxBodyBytes = MaxRecordPayloadBytes + 1 }, "ingest.webhook_max_body_bytes"},
		{"sync event over a Kafka record", func(c *Config) { c.SyncMaxLineBytes = MaxRecordPayloadBytes + 1 }, "ingest.sync_max_line_bytes"},
		{"webhook limit", func(c *Config) { c.WebhookMaxBodyBytes = 0 }, "ingest.webhook_max_body_bytes"},
		{"sync events", func(c *Config) { c.SyncMaxEvents = 0 }, "ingest.sync_max_events"},
		{"header bytes", func(c *Config) { c.MaxHeaderBytes = 100 }, "ingest.max_header_bytes"},
		{"issuer", func(c *Config) { c.SyncAuth.Issuer = "" }, "ingest.sync_auth.issuer"},
		{"audience", func(c *Config) { c.SyncAuth.Audience = "" }, "ingest.sync_auth.audience"},
		{"no key source", func(c *Config) { c.SyncAuth.JWKSFile = "" }, "ingest.sync_auth.jwks_file"},
		{"hs256 only", func(c *Config) {
			c.SyncAuth.JWKSFile = ""
			c.SyncAuth.HS256Secret = testHS256Secret
			c.SyncAuth.HS256KeyID = "hs-1"
		}, ""},
		{"hs256 short", func(c *Config) {
			c.SyncAuth.HS256Secret = "short"
			c.SyncAuth.HS256KeyID = "hs-1"
		}, "ingest.sync_auth.hs256_secret"},
		{"hs256 without kid", func(c *Config) { c.SyncAuth.HS256Secret = testHS256Secret }, "ingest.sync_auth.hs256_kid"},
		{"leeway", func(c *Config) { c.SyncAuth.Leeway = time.Hour }, "ingest.sync_auth.leeway"},
		{"lifetime", func(c *Config) { c.SyncAuth.MaxTokenLifetime = 0 }, "ingest.sync_auth.max_token_lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(keys)
			// Copy the app and secret lists so that edits stay in this case.
			cfg.WhatsAppApps = append([]WhatsAppApp(nil), cfg.WhatsAppApps...)
			cfg.WhatsAppApps[0].Secrets = append([]AppSecret(nil), cfg.WhatsAppApps[0].Secrets...)
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

func TestConfigErrorsHideSecrets(t *testing.T) {
	cfg := testConfig(newTestKeys(t))
	cfg.WhatsAppApps[0].Secrets[0].NotBefore = time.Now()
	cfg.WhatsAppApps[0].Secrets[0].NotAfter = time.Now().Add(-time.Hour)
	err := cfg.Validate()
	if err == nil || strings.Contains(err.Error(), testAppSecret) {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	keys := newTestKeys(t)
	kcfg := testKafkaConfig()
	kcfg.Brokers = []string{closedPort(t)}
	tests := []struct {
		name    string
		edit    func(o *Options)
		wantErr string
	}{
		{"no app secret", func(o *Options) { o.Config.WhatsAppApps[0].Secrets = nil }, "at least one app secret"},
		{"envelope key short", func(o *Options) { o.EnvelopeKey = []byte("short") }, "envelope key"},
		{"secret file missing", func(o *Options) {
			o.Config.WhatsAppApps[0].Secrets = []AppSecret{{ID: "f", SecretFile: "/nonexistent/secret"}}
		}, "secret_file"},
		{"JWKS missing", func(o *Options) { o.Config.SyncAuth.JWKSFile = "/nonexistent/jwks.json" }, "keys token-key --file KEY.pem --out /nonexistent/jwks.json"},
		{"HS256 kid taken", func(o *Options) {
			o.Config.SyncAuth.HS256Secret = config.Secret(testHS256Secret)
			o.Config.SyncAuth.HS256KeyID = "ed-1"
		}, "ingest.sync_auth.hs256_kid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Config: testConfig(keys), Kafka: kcfg, EnvelopeKey: make([]byte, 32)}
			tt.edit(&opts)
			srv, err := New(opts)
			if err == nil {
				srv.client.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSecretFile(t *testing.T) {
	path := t.TempDir() + "/app-secret"
	if err := writeTestFile(path, testAppSecret+"\n"); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.WhatsAppApps[0].Secrets = []AppSecret{{ID: "from-file", SecretFile: path}}
	})
	body := waBody("from file")
	rec := h.do(webhookRequest(body, map[string]string{"X-Hub-Signature-256": sign(testAppSecret, body)}))
	if rec.Code != 200 {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body.String())
	}
}
