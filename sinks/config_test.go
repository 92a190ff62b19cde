package sinks

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/config"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if c.CheckpointInterval != 10*time.Second {
		t.Errorf("default checkpoint_interval = %s, want 10s", c.CheckpointInterval)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		change  func(*Config)
		wantKey string
	}{
		{"addr without port", func(c *Config) { c.ClickHouse.Addr = "localhost" }, "sink.clickhouse.addr"},
		{"database with dash", func(c *Config) { c.ClickHouse.Database = "sync-guard" }, "sink.clickhouse.database"},
		{"database injection", func(c *Config) { c.ClickHouse.Database = "x;DROP" }, "sink.clickhouse.database"},
		{"empty database", func(c *Config) { c.ClickHouse.Database = "" }, "sink.clickhouse.database"},
		{"zero dial timeout", func(c *Config) { c.ClickHouse.DialTimeout = 0 }, "sink.clickhouse.dial_timeout"},
		{"empty group", func(c *Config) { c.Group = "" }, "sink.group"},
		{"zero batch", func(c *Config) { c.BatchMaxRows = 0 }, "sink.batch_max_rows"},
		{"zero interval", func(c *Config) { c.FlushInterval = 0 }, "sink.flush_interval"},
		{"zero shutdown timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "sink.shutdown_timeout"},
		{"zero checkpoint interval", func(c *Config) { c.CheckpointInterval = 0 }, "sink.checkpoint_interval"},
		{"negative checkpoint interval", func(c *Config) { c.CheckpointInterval = -time.Second }, "sink.checkpoint_interval"},
		{"no topics", func(c *Config) { c.Topics = nil }, "sink.topics"},
		{"unknown topic", func(c *Config) { c.Topics = []string{"raw"} }, "sink.topics"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !strings.HasPrefix(err.Error(), tc.wantKey+":") {
				t.Errorf("error %q does not start with the key %s", err, tc.wantKey)
			}
		})
	}
}

func TestConfigPasswordRedacted(t *testing.T) {
	c := DefaultConfig()
	c.ClickHouse.Password = config.Secret("hunter2")
	if s := fmt.Sprintf("%+v", c); strings.Contains(s, "hunter2") {
		t.Errorf("formatted config reveals the password: %s", s)
	}
}

func TestConfigFromYAML(t *testing.T) {
	c := DefaultConfig()
	err := config.Decode([]byte(`
clickhouse:
  addr: 10.0.0.5:9000
  database: audit
  password: s3cret
group: g2
batch_max_rows: 50
flush_interval: 2s
topics: [audit, alerts]
checkpoint_interval: 30s
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ClickHouse.Addr != "10.0.0.5:9000" || c.ClickHouse.Database != "audit" || c.ClickHouse.Password.Reveal() != "s3cret" {
		t.Errorf("clickhouse = %+v", c.ClickHouse)
	}
	if c.ClickHouse.Username != "default" {
		t.Errorf("username = %q, want the default kept", c.ClickHouse.Username)
	}
	if c.CheckpointInterval != 30*time.Second {
		t.Errorf("checkpoint_interval = %s, want 30s", c.CheckpointInterval)
	}
	if c.Group != "g2" || c.BatchMaxRows != 50 || c.FlushInterval.String() != "2s" || len(c.Topics) != 2 {
		t.Errorf("config = %+v", c)
	}
}
