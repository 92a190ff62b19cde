package processors

import (
	"errors"
	"fmt"

	"github.com/syncguard/syncguard/internal/config"
)

// Client-side encryption algorithms whose structure the processor can check.
const (
	AlgA256GCM           = "A256GCM"
	AlgXChaCha20Poly1305 = "XCHACHA20-POLY1305"
)

// clientIVSizes maps each supported client algorithm to its IV size in bytes.
var clientIVSizes = map[string]int{
	AlgA256GCM:           12,
	AlgXChaCha20Poly1305: 24,
}

// Config holds the processor settings.
type Config struct {
	// Group is the Kafka consumer group that shares the raw topic's
	// partitions among processor instances.
	Group string `yaml:"group"`
	// TransactionalID is the prefix of the transactional id. Each instance
	// appends a random instance id, so that instances never fence each
	// other; KIP-447 group fencing keeps zombies out instead.
	TransactionalID string `yaml:"transactional_id"`
	// Apps are the WhatsApp apps whose App Secrets sign webhooks. A record
	// names its app in the sg-app header, and any secret of that app may
	// match, so that a secret can be rotated without downtime.
	Apps []App `yaml:"apps"`
	// DedupeMaxEntries is the maximum number of message ids remembered per
	// raw partition. When it is reached, the oldest id is forgotten.
	DedupeMaxEntries int `yaml:"dedupe_max_entries"`
	// KeyCacheMaxEntries is the maximum number of subjects whose current
	// data key is kept in memory. A subject evicted from the cache gets a
	// new data key with its next message.
	KeyCacheMaxEntries int `yaml:"key_cache_max_entries"`
	// AllowedClientAlgs lists the algorithms accepted for client-side
	// encrypted sync payloads: A256GCM and XCHACHA20-POLY1305.
	AllowedClientAlgs []string `yaml:"allowed_client_algs"`
	// MaxPollRecords is the maximum number of raw records per transaction.
	MaxPollRecords int `yaml:"max_poll_records"`
}

// App is a WhatsApp app and its App Secrets.
type App struct {
	Name    string      `yaml:"name"`
	Secrets []AppSecret `yaml:"secrets"`
}

// AppSecret is one App Secret of a WhatsApp app. The id names it in logs;
// the secret itself never appears there.
type AppSecret struct {
	ID     string        `yaml:"id"`
	Secret config.Secret `yaml:"secret"`
}

// DefaultConfig returns the default processor settings. It has no apps, so
// every WhatsApp record is rejected until apps are configured.
func DefaultConfig() Config {
	return Config{
		Group:              "syncguard-processor",
		TransactionalID:    "syncguard-processor",
		DedupeMaxEntries:   1_000_000,
		KeyCacheMaxEntries: 1_000_000,
		AllowedClientAlgs:  []string{AlgA256GCM, AlgXChaCha20Poly1305},
		MaxPollRecords:     500,
	}
}

// Validate returns an error naming the first invalid key.
func (c Config) Validate() error {
	if c.Group == "" {
		return errors.New("processor.group: must not be empty")
	}
	if c.TransactionalID == "" {
		return errors.New("processor.transactional_id: must not be empty")
	}
	if c.DedupeMaxEntries < 1 {
		return fmt.Errorf("processor.dedupe_max_entries: must be at least 1, got %d", c.DedupeMaxEntries)
	}
	if c.KeyCacheMaxEntries < 1 {
		return fmt.Errorf("processor.key_cache_max_entries: must be at least 1, got %d", c.KeyCacheMaxEntries)
	}
	if c.MaxPollRecords < 1 {
		return fmt.Errorf("processor.max_poll_records: must be at least 1, got %d", c.MaxPollRecords)
	}
	for i, alg := range c.AllowedClientAlgs {
		if _, ok := clientIVSizes[alg]; !ok {
			return fmt.Errorf("processor.allowed_client_algs[%d]: unsupported algorithm %q, want %s or %s",
				i, alg, AlgA256GCM, AlgXChaCha20Poly1305)
		}
	}
	return c.validateApps()
}

func (c Config) validateApps() error {
	names := make(map[string]bool, len(c.Apps))
	for i, app := range c.Apps {
		if app.Name == "" {
			return fmt.Errorf("processor.apps[%d].name: must not be empty", i)
		}
		if names[app.Name] {
			return fmt.Errorf("processor.apps[%d].name: duplicate app %q", i, app.Name)
		}
		names[app.Name] = true
		if len(app.Secrets) == 0 {
			return fmt.Errorf("processor.apps[%d].secrets: app %q needs at least one secret", i, app.Name)
		}
		ids := make(map[string]bool, len(app.Secrets))
		for j, s := range app.Secrets {
			if s.Secret.Reveal() == "" {
				return fmt.Errorf("processor.apps[%d].secrets[%d].secret: must not be empty", i, j)
			}
			if ids[s.ID] {
				return fmt.Errorf("processor.apps[%d].secrets[%d].id: duplicate id %q", i, j, s.ID)
			}
			ids[s.ID] = true
		}
	}
	return nil
}
