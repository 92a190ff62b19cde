package ingest

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/schemas"
)

// Config holds the settings of the ingest HTTP server.
type Config struct {
	// ListenAddr is the host:port the server listens on. Port 0 picks a free
	// port, which Server.Addr reports.
	ListenAddr string `yaml:"listen_addr"`
	// ReadHeaderTimeout bounds reading the request line and headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response. A handler reads the body within
	// ReadTimeout and then waits up to ProduceTimeout for Kafka, so
	// WriteTimeout must exceed their sum by at least a second, or the
	// response of a slow request would be cut off.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the request line and headers. Larger header blocks
	// get 431 from net/http before any handler runs.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds draining in-flight requests on shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// ProduceTimeout bounds the wait for Kafka to acknowledge the records of
	// one request. When it passes, the request gets 503.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// ProduceLinger is how long the producer of raw records waits to fill
	// a batch. Each request waits up to this long before its record is
	// sent, and the broker gets fewer, larger produce requests under load.
	ProduceLinger time.Duration `yaml:"produce_linger"`
	// RetryAfter is sent, rounded up to whole seconds, in the Retry-After
	// header of 503 responses.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ReadyCheckInterval is how often the server pings Kafka for /readyz.
	ReadyCheckInterval time.Duration `yaml:"ready_check_interval"`
	// AuditFlushTimeout bounds flushing buffered audit records on shutdown.
	AuditFlushTimeout time.Duration `yaml:"audit_flush_timeout"`

	// WebhookMaxBodyBytes caps a WhatsApp webhook body. Larger bodies get
	// 413.
	WebhookMaxBodyBytes int64 `yaml:"webhook_max_body_bytes"`
	// WhatsAppApps are the Meta apps whose webhooks are accepted. At least
	// one app with one secret is required. The configuration file sets them
	// once under whatsapp.apps, because processors check the same secrets.
	WhatsAppApps []WhatsAppApp `yaml:"-"`

	// SyncMaxBodyBytes caps a sync batch body, both as sent and after gzip
	// decompression.
	SyncMaxBodyBytes int64 `yaml:"sync_max_body_bytes"`
	// SyncMaxEvents caps the number of events in one sync batch.
	SyncMaxEvents int `yaml:"sync_max_events"`
	// SyncMaxLineBytes caps one event of a sync batch: an NDJSON line
	// without its line ending, or an element of a JSON batch.
	SyncMaxLineBytes int `yaml:"sync_max_line_bytes"`
	// SyncMaxEventAge is how far occurred_at may lie in the past.
	SyncMaxEventAge time.Duration `yaml:"sync_max_event_age"`
	// SyncMaxClockSkew is how far occurred_at may lie in the future.
	SyncMaxClockSkew time.Duration `yaml:"sync_max_clock_skew"`
	// SyncAuth configures bearer token verification for the sync API.
	SyncAuth SyncAuthConfig `yaml:"sync_auth"`
	// TrustedProxies are the CIDR prefixes (or single addresses) of the
	// proxies whose X-Forwarded-For header is believed. Empty, the default,
	// means the TCP peer is always the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Allowlist restricts each route to source prefixes.
	Allowlist AllowlistConfig `yaml:"allowlist"`
	// RateLimits configures the token buckets per source, account and
	// device.
	RateLimits RateLimitsConfig `yaml:"rate_limits"`
	// Blocks configures the blocklist read from the control topic.
	Blocks BlocksConfig `yaml:"blocks"`
	// TLS, when its files are set, makes the server speak HTTPS (TLS 1.3
	// only, HTTP/2 and HTTP/1.1).
	TLS TLSConfig `yaml:"tls"`
	// PublicOrigin is the scheme, host and non-default port under which
	// clients reach ingest, such as https://ingest.example.com. DPoP proofs
	// must name it in htu. It is never taken from Host or forwarded
	// headers. Required when sync_auth.allow_unbound_tokens is false.
	PublicOrigin string `yaml:"public_origin"`
	// SyncIdempotencyMaxEntries caps the in-memory cache of accepted
	// (device, event_id) pairs that lets ingest answer a replayed event with
	// its original result. The oldest entries go first when it is full.
	SyncIdempotencyMaxEntries int `yaml:"sync_idempotency_max_entries"`
}

// WhatsAppApp is one Meta app that may deliver webhooks.
type WhatsAppApp struct {
	// Name identifies the app in records (header sg-app) and audit events.
	Name string `yaml:"name"`
	// VerifyToken is the token Meta sends in the GET subscription handshake.
	VerifyToken config.Secret `yaml:"verify_token"`
	// Secrets are the app secrets that key the X-Hub-Signature-256 HMAC. Any
	// secret active at the time of the request is accepted, so a secret can
	// be rotated by adding the new one before the old one expires.
	Secrets []AppSecret `yaml:"secrets"`
}

// AppSecret is one app secret and the time range in which it is accepted.
type AppSecret struct {
	// ID names the secret in audit events. It is not secret itself.
	ID string `yaml:"id"`
	// Secret is the app secret. Exactly one of Secret and SecretFile is set.
	Secret config.Secret `yaml:"secret"`
	// SecretFile is a file that holds the app secret.
	SecretFile string `yaml:"secret_file"`
	// NotBefore and NotAfter bound when the secret is accepted. The zero
	// time leaves that side open.
	NotBefore time.Time `yaml:"not_before"`
	NotAfter  time.Time `yaml:"not_after"`
}

// SyncAuthConfig configures verification of the sync API's bearer tokens.
type SyncAuthConfig struct {
	// Issuer must equal the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience must be one of the token's aud values.
	Audience string `yaml:"audience"`
	// JWKSFile is a JSON Web Key Set file with the trusted public keys:
	// Ed25519 (kty OKP, alg EdDSA) and P-256 (kty EC, alg ES256), each with
	// a kid.
	JWKSFile string `yaml:"jwks_file"`
	// HS256Secret, when set, also accepts HS256 tokens whose kid is
	// HS256KeyID. Leave it empty unless the issuer cannot sign asymmetrically.
	HS256Secret config.Secret `yaml:"hs256_secret"`
	// HS256KeyID is the kid of HS256 tokens. It is required with
	// HS256Secret.
	HS256KeyID string `yaml:"hs256_kid"`
	// MaxTokenLifetime caps exp - iat, and how old iat may be.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration `yaml:"leeway"`
	// RequiredScope must be one of the space-separated values of the scope
	// claim.
	RequiredScope string `yaml:"required_scope"`
	// JWKSURL is an http(s) URL serving the JSON Web Key Set, as an
	// alternative to JWKSFile. Plain http is accepted only for loopback
	// hosts, and redirects are not followed.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is how often the set at JWKSURL is fetched again. A token
	// with an unknown kid also triggers a fetch, at most once per 30s.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// JWKSFetchTimeout bounds one fetch of JWKSURL. When a fetch fails, the
	// last good set stays in use.
	JWKSFetchTimeout time.Duration `yaml:"jwks_fetch_timeout"`
	// AllowUnboundTokens accepts Bearer tokens without a cnf.jkt claim.
	// Tokens with cnf.jkt always need a DPoP proof.
	AllowUnboundTokens bool `yaml:"allow_unbound_tokens"`
	// DPoPMaxAge is how far a DPoP proof's iat may lie from the server's
	// time, in either direction.
	DPoPMaxAge time.Duration `yaml:"dpop_max_age"`
	// DPoPReplayCacheMax caps the proofs remembered to reject a reused jti.
	// Each is remembered for twice DPoPMaxAge; when the cache is full of
	// live entries, new proofs get 503 rather than opening a replay window.
	DPoPReplayCacheMax int `yaml:"dpop_replay_cache_max"`
}

// minResponseTime is the least time left to send a response after the
// latest moment a handler can finish reading and producing.
const minResponseTime = time.Second

// MaxRecordPayloadBytes bounds the webhook body and sync event limits,
// because each webhook and each sync event becomes one raw record.
const MaxRecordPayloadBytes = schemas.MaxRawPayloadBytes

// DefaultConfig returns the default configuration. It does not validate:
// at least one WhatsApp app secret and the sync token issuer, audience and
// keys must be added.
func DefaultConfig() Config {
	return Config{
		ListenAddr:          "127.0.0.1:8080",
		ReadHeaderTimeout:   10 * time.Second,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        35 * time.Second,
		IdleTimeout:         120 * time.Second,
		MaxHeaderBytes:      16 << 10,
		ShutdownTimeout:     20 * time.Second,
		ProduceTimeout:      2 * time.Second,
		ProduceLinger:       time.Millisecond,
		RetryAfter:          5 * time.Second,
		ReadyCheckInterval:  2 * time.Second,
		AuditFlushTimeout:   10 * time.Second,
		WebhookMaxBodyBytes: 256 << 10,
		SyncMaxBodyBytes:    1 << 20,
		SyncMaxEvents:       1000,
		SyncMaxLineBytes:    64 << 10,
		SyncMaxEventAge:     7 * 24 * time.Hour,
		SyncMaxClockSkew:    5 * time.Minute,
		RateLimits:          defaultRateLimits(),
		Blocks:              defaultBlocks(),
		SyncAuth: SyncAuthConfig{
			MaxTokenLifetime:   15 * time.Minute,
			Leeway:             30 * time.Second,
			RequiredScope:      "sync:write",
			JWKSRefresh:        5 * time.Minute,
			JWKSFetchTimeout:   5 * time.Second,
			AllowUnboundTokens: true,
			DPoPMaxAge:         60 * time.Second,
			DPoPReplayCacheMax: 1_000_000,
		},
		SyncIdempotencyMaxEntries: 250_000,
	}
}

// Validate reports the first invalid key. It does not read files: New
// reports unreadable secret and JWKS files.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("ingest.listen_addr: %q is not host:port: %w", c.ListenAddr, err)
	}
	durations := []struct {
		key string
		d   time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"shutdown_timeout", c.ShutdownTimeout},
		{"produce_timeout", c.ProduceTimeout},
		{"retry_after", c.RetryAfter},
		{"ready_check_interval", c.ReadyCheckInterval},
		{"audit_flush_timeout", c.AuditFlushTimeout},
		{"sync_max_event_age", c.SyncMaxEventAge},
		{"sync_max_clock_skew", c.SyncMaxClockSkew},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return fmt.Errorf("ingest.%s: must be positive, got %s", d.key, d.d)
		}
	}
	if least := c.ReadTimeout + c.ProduceTimeout + minResponseTime; c.WriteTimeout < least {
		return fmt.Errorf("ingest.write_timeout: must be at least read_timeout (%s) + produce_timeout (%s) + %s = %s, so that every request still gets its response; got %s, so raise write_timeout along with the others",
			c.ReadTimeout, c.ProduceTimeout, minResponseTime, least, c.WriteTimeout)
	}
	if c.ProduceLinger < 0 || c.ProduceLinger > 50*time.Millisecond {
		return fmt.Errorf("ingest.produce_linger: must be 0 to 50ms, got %s", c.ProduceLinger)
	}
	if c.MaxHeaderBytes < 4<<10 {
		return fmt.Errorf("ingest.max_header_bytes: must be at least 4096, got %d", c.MaxHeaderBytes)
	}
	if c.WebhookMaxBodyBytes < 1 || c.WebhookMaxBodyBytes > MaxRecordPayloadBytes {
		return fmt.Errorf("ingest.webhook_max_body_bytes: must be 1 to %d, got %d", MaxRecordPayloadBytes, c.WebhookMaxBodyBytes)
	}
	if c.SyncMaxBodyBytes < 1 {
		return fmt.Errorf("ingest.sync_max_body_bytes: must be positive, got %d", c.SyncMaxBodyBytes)
	}
	if c.SyncMaxEvents < 1 {
		return fmt.Errorf("ingest.sync_max_events: must be positive, got %d", c.SyncMaxEvents)
	}
	if c.SyncMaxLineBytes < 1 || c.SyncMaxLineBytes > MaxRecordPayloadBytes {
		return fmt.Errorf("ingest.sync_max_line_bytes: must be 1 to %d, got %d", MaxRecordPayloadBytes, c.SyncMaxLineBytes)
	}
	if err := c.validateEdge(); err != nil {
		return err
	}
	if err := c.validateApps(); err != nil {
		return err
	}
	if err := c.validateReplayDefence(); err != nil {
		return err
	}
	return c.SyncAuth.validate()
}

func (c Config) validateApps() error {
	if len(c.WhatsAppApps) == 0 {
		return errors.New("whatsapp.apps: at least one app with a secret is required, because webhooks are never accepted unsigned")
	}
	names := make(map[string]bool, len(c.WhatsAppApps))
	for i, app := range c.WhatsAppApps {
		key := fmt.Sprintf("whatsapp.apps[%d]", i)
		if !validID(app.Name, maxIDLen) {
			return fmt.Errorf("%s.name: %q must be 1 to %d characters of A-Z a-z 0-9 . _ : -", key, app.Name, maxIDLen)
		}
		if names[app.Name] {
			return fmt.Errorf("%s.name: %q is used by two apps", key, app.Name)
		}
		names[app.Name] = true
		if app.VerifyToken == "" {
			return fmt.Errorf("%s.verify_token: missing", key)
		}
		if len(app.Secrets) == 0 {
			return fmt.Errorf("%s.secrets: at least one app secret is required, because webhooks are never accepted unsigned", key)
		}
		ids := make(map[string]bool, len(app.Secrets))
		for j, sec := range app.Secrets {
			skey := fmt.Sprintf("%s.secrets[%d]", key, j)
			if !validID(sec.ID, maxIDLen) {
				return fmt.Errorf("%s.id: %q must be 1 to %d characters of A-Z a-z 0-9 . _ : -", skey, sec.ID, maxIDLen)
			}
			if ids[sec.ID] {
				return fmt.Errorf("%s.id: %q is used twice in app %q", skey, sec.ID, app.Name)
			}
			ids[sec.ID] = true
			if (sec.Secret == "") == (sec.SecretFile == "") {
				return fmt.Errorf("%s: set exactly one of secret and secret_file", skey)
			}
			if !sec.NotBefore.IsZero() && !sec.NotAfter.IsZero() && !sec.NotAfter.After(sec.NotBefore) {
				return fmt.Errorf("%s.not_after: %s is not after not_before %s", skey,
					sec.NotAfter.Format(time.RFC3339), sec.NotBefore.Format(time.RFC3339))
			}
		}
	}
	return nil
}

func (a SyncAuthConfig) validate() error {
	if a.Issuer == "" {
		return errors.New("ingest.sync_auth.issuer: missing")
	}
	if a.Audience == "" {
		return errors.New("ingest.sync_auth.audience: missing")
	}
	if a.JWKSFile == "" && a.JWKSURL == "" && a.HS256Secret == "" {
		return errors.New("ingest.sync_auth.jwks_file: missing, so sync tokens cannot be verified: set it, ingest.sync_auth.jwks_url or ingest.sync_auth.hs256_secret")
	}
	if a.HS256Secret != "" {
		if len(a.HS256Secret) < 32 {
			return errors.New("ingest.sync_auth.hs256_secret: must be at least 32 bytes")
		}
		if !validID(a.HS256KeyID, maxKeyIDLen) {
			return fmt.Errorf("ingest.sync_auth.hs256_kid: %q must be 1 to %d characters of A-Z a-z 0-9 . _ : - when hs256_secret is set", a.HS256KeyID, maxKeyIDLen)
		}
	}
	if a.MaxTokenLifetime <= 0 {
		return fmt.Errorf("ingest.sync_auth.max_token_lifetime: must be positive, got %s", a.MaxTokenLifetime)
	}
	if a.Leeway < 0 || a.Leeway > 5*time.Minute {
		return fmt.Errorf("ingest.sync_auth.leeway: must be between 0 and 5m, got %s", a.Leeway)
	}
	if a.RequiredScope == "" {
		return errors.New("ingest.sync_auth.required_scope: missing")
	}
	return nil
}

// Limits on identifiers that ingest copies into records and audit events.
const (
	maxIDLen    = 128
	maxKeyIDLen = 256
)

// validID reports whether s is 1 to max characters of A-Z a-z 0-9 . _ : -.
func validID(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
