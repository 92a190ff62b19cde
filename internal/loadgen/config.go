package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Defaults of Config fields that Run fills in when they are zero.
const (
	defaultConcurrency = 8
	defaultTimeout     = 10 * time.Second
	defaultTrackAcks   = 100_000
	// maxConcurrency bounds Concurrency, because every connection is a
	// goroutine and a socket on the machine under test.
	maxConcurrency = 10_000
)

// Config sets up a load run. Either Duration or Requests must be set: Run
// rejects an unbounded run.
type Config struct {
	// Target is the base URL of ingest, such as "http://127.0.0.1:8080".
	// Its host must be a loopback IP address or "localhost".
	Target string `yaml:"target"`
	// Rate is the request rate in requests per second, paced open loop:
	// requests go out at their scheduled times whether or not earlier ones
	// have completed, as long as a connection is free. 0 sends closed
	// loop, each connection sending its next request when the previous
	// one completes.
	Rate float64 `yaml:"rate"`
	// Duration stops the run after this long. Requests scheduled but not
	// sent by then are reported as missed.
	Duration time.Duration `yaml:"duration"`
	// Requests stops the run after this many requests.
	Requests int64 `yaml:"requests"`
	// Concurrency is the number of connections and of requests in flight
	// (default 8).
	Concurrency int `yaml:"concurrency"`
	// Preconnect opens all Concurrency connections before the clock
	// starts, so that the first moments of a measured run do not hold the
	// handshakes and the server's work of accepting every connection.
	Preconnect bool `yaml:"preconnect"`
	// Timeout bounds each request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Mix weighs the kinds of requests. When all weights are 0, Run sends
	// webhooks 75, sync batches 20 and redeliveries 5, leaving out the
	// kinds whose factory is nil.
	Mix Mix `yaml:"mix"`
	// Seed picks the sequence of request kinds.
	Seed int64 `yaml:"seed"`
	// SourceAddr is the local loopback address to send from, such as
	// "127.0.0.2", so that ingest records a distinct client address. Empty
	// lets the kernel choose.
	SourceAddr string `yaml:"source_addr"`
	// TrackAcks is the maximum number of acknowledgements kept in
	// Report.Acks (default 100000). A negative value keeps none.
	TrackAcks int `yaml:"track_acks"`

	// Webhooks generates the webhook, text, forged and redelivery kinds.
	Webhooks *WebhookFactory `yaml:"-"`
	// Sync generates the sync kind.
	Sync *SyncFactory `yaml:"-"`
	// Progress, when set, is called about once a second from a goroutine
	// of Run with the counts so far. It must return quickly.
	Progress func(Snapshot) `yaml:"-"`
}

// Mix contains the relative weights of the kinds of requests a run sends.
type Mix struct {
	// Webhook is validly signed notifications of every type.
	Webhook int `yaml:"webhook"`
	// Text is validly signed notifications with one text message.
	Text int `yaml:"text"`
	// Sync is sync event batches with a valid token.
	Sync int `yaml:"sync"`
	// Forged is webhooks with a wrong or missing signature.
	Forged int `yaml:"forged"`
	// Redelivery is byte-for-byte repeats of earlier valid webhooks.
	Redelivery int `yaml:"redelivery"`
}

func (m Mix) total() int { return m.Webhook + m.Text + m.Sync + m.Forged + m.Redelivery }

// DefaultConfig returns the defaults. It sets no bound: choose Duration or
// Requests before calling Run.
func DefaultConfig() Config {
	return Config{
		Target:      "http://127.0.0.1:8080",
		Rate:        100,
		Concurrency: defaultConcurrency,
		Timeout:     defaultTimeout,
		TrackAcks:   defaultTrackAcks,
	}
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.TrackAcks == 0 {
		c.TrackAcks = defaultTrackAcks
	}
	if c.Mix.total() == 0 {
		if c.Webhooks != nil {
			c.Mix.Webhook, c.Mix.Redelivery = 75, 5
		}
		if c.Sync != nil {
			c.Mix.Sync = 20
		}
	}
	return c
}

// Validate returns the first invalid setting, naming its key. Zero fields
// that have defaults are valid.
func (c Config) Validate() error {
	c = c.withDefaults()
	target, err := CheckTarget(c.Target)
	if err != nil {
		return fmt.Errorf("loadgen.target: %w", err)
	}
	switch {
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		return fmt.Errorf("loadgen.rate: must be 0 (as fast as possible) or a positive number of requests per second, got %v", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("loadgen.duration: must not be negative, got %s", c.Duration)
	case c.Requests < 0:
		return fmt.Errorf("loadgen.requests: must not be negative, got %d", c.Requests)
	case c.Duration == 0 && c.Requests == 0:
		return fmt.Errorf("loadgen: set loadgen.duration or loadgen.requests: %w", ErrUnbounded)
	case c.Concurrency < 0 || c.Concurrency > maxConcurrency:
		return fmt.Errorf("loadgen.concurrency: must be between 1 and %d, got %d", maxConcurrency, c.Concurrency)
	case c.Timeout < 0:
		return fmt.Errorf("loadgen.timeout: must not be negative, got %s", c.Timeout)
	}
	if err := c.Mix.validate(c); err != nil {
		return err
	}
	src, err := ParseSourceAddr(c.SourceAddr)
	if err != nil {
		return fmt.Errorf("loadgen.source_addr: %w", err)
	}
	if src.IsValid() {
		if addr, err := netip.ParseAddr(target.Hostname()); err == nil && addr.Unmap().Is4() != src.Is4() {
			return fmt.Errorf("loadgen.source_addr: %s and the target %s are of different IP versions", src, addr)
		}
	}
	return nil
}

func (m Mix) validate(c Config) error {
	weights := []struct {
		key     string
		weight  int
		factory bool
	}{
		{"webhook", m.Webhook, c.Webhooks != nil},
		{"text", m.Text, c.Webhooks != nil},
		{"sync", m.Sync, c.Sync != nil},
		{"forged", m.Forged, c.Webhooks != nil},
		{"redelivery", m.Redelivery, c.Webhooks != nil},
	}
	for _, w := range weights {
		if w.weight < 0 {
			return fmt.Errorf("loadgen.mix.%s: must not be negative, got %d", w.key, w.weight)
		}
		if w.weight > 0 && !w.factory {
			return fmt.Errorf("loadgen.mix.%s: weight %d needs a %s factory: %w", w.key, w.weight, factoryName(w.key), ErrNoFactory)
		}
	}
	if m.total() == 0 {
		return errors.New("loadgen.mix: all weights are 0 and no factory is set; set a webhook or sync factory and a weight")
	}
	return nil
}

func factoryName(mixKey string) string {
	if mixKey == "sync" {
		return "sync"
	}
	return "webhook"
}
