package sinks

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"time"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/schemas"
)

// SinkTopics lists the topic suffixes that the Writer can store, which is
// also the default of sink.topics.
var SinkTopics = []string{
	schemas.TopicAudit,
	schemas.TopicMessages,
	schemas.TopicSync,
	schemas.TopicStatuses,
	schemas.TopicAlerts,
}

// Config is the sink block of the configuration file.
type Config struct {
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
	// Group is the Kafka consumer group of the ClickHouse writer.
	Group string `yaml:"group"`
	// BatchMaxRows is the most rows, over all tables, that one flush
	// inserts. A flush happens when this many rows are pending or when
	// FlushInterval has passed since the first pending row.
	BatchMaxRows int `yaml:"batch_max_rows"`
	// FlushInterval is the longest time a row waits before its flush.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Topics are the suffixes of the topics to store; see SinkTopics.
	Topics []string `yaml:"topics"`
	// Migrate applies the ClickHouse migrations when the writer starts.
	Migrate bool `yaml:"migrate"`
	// ShutdownTimeout bounds the final flush and offset commit on shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// CheckpointInterval is the minimum time between two signed checkpoints
	// of one audit partition. Rows stored after a partition's newest
	// checkpoint are not anchored yet, so a shorter interval leaves less of
	// the chain that someone with write access could rewrite unnoticed.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
}

// ClickHouseConfig selects the ClickHouse server and database.
type ClickHouseConfig struct {
	// Addr is the host:port of the native protocol (not HTTP).
	Addr string `yaml:"addr"`
	// Database holds every SyncGuard table; migrations create it.
	Database string        `yaml:"database"`
	Username string        `yaml:"username"`
	Password config.Secret `yaml:"password"`
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		ClickHouse:         DefaultClickHouseConfig(),
		Group:              "syncguard-sink",
		BatchMaxRows:       10000,
		FlushInterval:      500 * time.Millisecond,
		Topics:             slices.Clone(SinkTopics),
		Migrate:            true,
		ShutdownTimeout:    10 * time.Second,
		CheckpointInterval: 10 * time.Second,
	}
}

// DefaultClickHouseConfig returns the default ClickHouse connection.
func DefaultClickHouseConfig() ClickHouseConfig {
	return ClickHouseConfig{
		Addr:        "127.0.0.1:19000",
		Database:    "syncguard",
		Username:    "default",
		DialTimeout: 5 * time.Second,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	if c.Group == "" {
		return errors.New("sink.group: must not be empty")
	}
	if c.BatchMaxRows < 1 {
		return fmt.Errorf("sink.batch_max_rows: must be at least 1, got %d", c.BatchMaxRows)
	}
	if c.FlushInterval <= 0 {
		return fmt.Errorf("sink.flush_interval: must be positive, got %s", c.FlushInterval)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("sink.shutdown_timeout: must be positive, got %s", c.ShutdownTimeout)
	}
	if c.CheckpointInterval <= 0 {
		return fmt.Errorf("sink.checkpoint_interval: must be positive, got %s", c.CheckpointInterval)
	}
	if len(c.Topics) == 0 {
		return fmt.Errorf("sink.topics: must name at least one of %v", SinkTopics)
	}
	for _, t := range c.Topics {
		if !slices.Contains(SinkTopics, t) {
			return fmt.Errorf("sink.topics: unknown topic %q, expected one of %v", t, SinkTopics)
		}
	}
	return nil
}

// Validate reports the first invalid key.
func (c ClickHouseConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("sink.clickhouse.addr: %q is not host:port: %w", c.Addr, err)
	}
	if err := checkDatabaseName(c.Database); err != nil {
		return fmt.Errorf("sink.clickhouse.database: %w", err)
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("sink.clickhouse.dial_timeout: must be positive, got %s", c.DialTimeout)
	}
	return nil
}

var databaseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// checkDatabaseName accepts only plain identifiers, because the name is
// spliced into SQL statements unquoted.
func checkDatabaseName(name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("%w %q: use letters, digits and underscores, starting with a letter or underscore, at most 64 characters", ErrInvalidDatabase, name)
	}
	return nil
}
