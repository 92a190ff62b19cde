package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// AllowlistConfig restricts routes to source prefixes. An empty list, the
// default, allows every source on its route. The source is the client
// address after trusted_proxies handling.
type AllowlistConfig struct {
	// Webhook lists the CIDR prefixes or addresses allowed on
	// /webhooks/whatsapp.
	Webhook []string `yaml:"webhook"`
	// Sync lists the CIDR prefixes or addresses allowed on /v1/sync/events.
	Sync []string `yaml:"sync"`
}

// RateLimit is one token bucket: Rate tokens per second, up to Burst.
type RateLimit struct {
	// Rate is the refill rate in requests per second. 0 disables the
	// limiter.
	Rate float64 `yaml:"rate"`
	// Burst is the bucket size: how many requests a key may send at once.
	Burst int `yaml:"burst"`
}

// RateLimitsConfig configures the limiters. The source limiter runs before
// the body is read, and the account limiter after a webhook's signature
// check.
type RateLimitsConfig struct {
	// Source limits each client address, IPv6 grouped by /64.
	Source RateLimit `yaml:"source"`
	// Account limits each WhatsApp phone_number_id.
	Account RateLimit `yaml:"account"`
	// Device limits each authenticated sync device.
	Device RateLimit `yaml:"device"`
	// MaxKeys caps the keys of each limiter. When a limiter is full, the
	// least recently used key loses its bucket.
	MaxKeys int `yaml:"max_keys"`
	// DeviceInFlight caps the sync requests of one device that ingest
	// handles at once; more get 429. A gzip body of about 1 KB can inflate
	// to a 1 MiB buffer while the client stalls, so without the cap one
	// device token could hold gigabytes. 0 turns the cap off.
	DeviceInFlight int `yaml:"device_in_flight"`
}

func defaultRateLimits() RateLimitsConfig {
	return RateLimitsConfig{
		Source:  RateLimit{Rate: 200, Burst: 400},
		Account: RateLimit{Rate: 1000, Burst: 2000},
		Device:  RateLimit{Rate: 50, Burst: 100},
		MaxKeys: 100_000,
		// A sync client uploads one batch after another; 8 leaves room for
		// retries that overlap a request still in flight.
		DeviceInFlight: 8,
	}
}

// BlocksConfig configures the blocklist that ingest reads from the control
// topic.
type BlocksConfig struct {
	// MaxEntries caps the active blocks held in memory, over all kinds.
	// Blocks beyond it are not enforced and are counted.
	MaxEntries int `yaml:"max_entries"`
	// FetchMaxWait is how long a fetch of the control topic waits for new
	// records. It bounds how late a new block takes effect.
	FetchMaxWait time.Duration `yaml:"fetch_max_wait"`
}

func defaultBlocks() BlocksConfig {
	return BlocksConfig{MaxEntries: 1_000_000, FetchMaxWait: 500 * time.Millisecond}
}

// TLSConfig names the certificate and key of the HTTPS listener. Both or
// neither are set.
type TLSConfig struct {
	// CertFile is a PEM file with the certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is a PEM file with the private key of the leaf.
	KeyFile string `yaml:"key_file"`
}

// validateEdge checks the keys of client address resolution, allowlists,
// rate limits, blocks and TLS.
func (c Config) validateEdge() error {
	if _, err := parsePrefixes("ingest.trusted_proxies", c.TrustedProxies); err != nil {
		return err
	}
	if _, err := parsePrefixes("ingest.allowlist.webhook", c.Allowlist.Webhook); err != nil {
		return err
	}
	if _, err := parsePrefixes("ingest.allowlist.sync", c.Allowlist.Sync); err != nil {
		return err
	}
	limits := []struct {
		key string
		l   RateLimit
	}{
		{"source", c.RateLimits.Source},
		{"account", c.RateLimits.Account},
		{"device", c.RateLimits.Device},
	}
	for _, l := range limits {
		if l.l.Rate < 0 {
			return fmt.Errorf("ingest.rate_limits.%s.rate: must be 0 (off) or positive, got %g", l.key, l.l.Rate)
		}
		if l.l.Rate > 0 && l.l.Burst < 1 {
			return fmt.Errorf("ingest.rate_limits.%s.burst: must be at least 1, got %d", l.key, l.l.Burst)
		}
	}
	if c.RateLimits.MaxKeys < 1 || c.RateLimits.MaxKeys > 1<<30 {
		return fmt.Errorf("ingest.rate_limits.max_keys: must be between 1 and %d, got %d", 1<<30, c.RateLimits.MaxKeys)
	}
	if c.RateLimits.DeviceInFlight < 0 {
		return fmt.Errorf("ingest.rate_limits.device_in_flight: must be 0 (off) or positive, got %d", c.RateLimits.DeviceInFlight)
	}
	if c.Blocks.MaxEntries < 1 {
		return fmt.Errorf("ingest.blocks.max_entries: must be positive, got %d", c.Blocks.MaxEntries)
	}
	if c.Blocks.FetchMaxWait <= 0 || c.Blocks.FetchMaxWait > 2*time.Second {
		return fmt.Errorf("ingest.blocks.fetch_max_wait: must be between 0 and 2s, so that blocks take effect within 2s, got %s", c.Blocks.FetchMaxWait)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("ingest.tls: set both cert_file and key_file, or neither")
	}
	return nil
}

// allowlist is the parsed AllowlistConfig.
type allowlist struct {
	webhook prefixSet
	sync    prefixSet
}

func newAllowlist(c AllowlistConfig) (allowlist, error) {
	var a allowlist
	var err error
	if a.webhook, err = parsePrefixes("ingest.allowlist.webhook", c.Webhook); err != nil {
		return a, err
	}
	a.sync, err = parsePrefixes("ingest.allowlist.sync", c.Sync)
	return a, err
}

// allowed reports whether addr may use the route group of path. Paths
// outside both groups are allowed.
func (a *allowlist) allowed(path string, addr netip.Addr) bool {
	var set *prefixSet
	switch path {
	case pathWebhook:
		set = &a.webhook
	case pathSync:
		set = &a.sync
	default:
		return true
	}
	return set.empty() || set.contains(addr)
}
