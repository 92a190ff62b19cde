package detectors

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/config"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"detector.group", func(c *Config) { c.Group = "" }},
		{"detector.window", func(c *Config) { c.Window = 0 }},
		{"detector.window", func(c *Config) { c.Window = time.Millisecond }},
		{"detector.allowed_lateness", func(c *Config) { c.AllowedLateness = -time.Second }},
		{"detector.cooldown", func(c *Config) { c.Cooldown = -time.Second }},
		{"detector.max_keys", func(c *Config) { c.MaxKeys = 0 }},
		{"detector.volume.threshold_account", func(c *Config) { c.Volume.ThresholdAccount = 0 }},
		{"detector.volume.threshold_subject", func(c *Config) { c.Volume.ThresholdSubject = -1 }},
		{"detector.volume.baseline_alpha", func(c *Config) { c.Volume.BaselineAlpha = 0 }},
		{"detector.volume.baseline_alpha", func(c *Config) { c.Volume.BaselineAlpha = 1.5 }},
		{"detector.volume.baseline_factor", func(c *Config) { c.Volume.BaselineFactor = 1 }},
		{"detector.volume.min_baseline_windows", func(c *Config) { c.Volume.MinBaselineWindows = 0 }},
		{"detector.volume.min_count", func(c *Config) { c.Volume.MinCount = 0 }},
		{"detector.failure.threshold_signature_source", func(c *Config) { c.Failure.ThresholdSignatureSource = 0 }},
		{"detector.failure.threshold_auth_source", func(c *Config) { c.Failure.ThresholdAuthSource = 0 }},
		{"detector.failure.threshold_auth_device", func(c *Config) { c.Failure.ThresholdAuthDevice = 0 }},
		{"detector.failure.threshold_forged_raw", func(c *Config) { c.Failure.ThresholdForgedRaw = 0 }},
		{"detector.containment.min_severity", func(c *Config) { c.Containment.MinSeverity = "info" }},
		{"detector.containment.min_severity", func(c *Config) { c.Containment.MinSeverity = "" }},
		{"detector.containment.block_ttl", func(c *Config) { c.Containment.BlockTTL = 0 }},
		{"detector.containment.block_ttl", func(c *Config) { c.Containment.BlockTTL = -time.Minute }},
		{"detector.containment.allowlist[1]", func(c *Config) { c.Containment.Allowlist = []string{"10.0.0.0/8", "proxy.internal"} }},
		{"detector.containment.allowlist[0]", func(c *Config) { c.Containment.Allowlist = []string{"10.0.0.0/33"} }},
		{"detector.containment.allowlist[0]", func(c *Config) { c.Containment.Allowlist = []string{"fe80::1%eth0"} }},
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if ce.Key != tc.key {
				t.Errorf("key = %q, want %q", ce.Key, tc.key)
			}
			if !strings.HasPrefix(err.Error(), tc.key+": ") {
				t.Errorf("message %q does not start with the key", err)
			}
		})
	}
}

func TestConfigContainmentDefaults(t *testing.T) {
	c := DefaultConfig().Containment
	if !c.Enabled {
		t.Errorf("containment.enabled = false, want true")
	}
	if c.MinSeverity != "critical" {
		t.Errorf("containment.min_severity = %q, want critical", c.MinSeverity)
	}
	if c.BlockTTL != 15*time.Minute {
		t.Errorf("containment.block_ttl = %s, want 15m", c.BlockTTL)
	}
	if len(c.Allowlist) != 0 {
		t.Errorf("containment.allowlist = %q, want empty", c.Allowlist)
	}
}

func TestConfigDecode(t *testing.T) {
	cfg := DefaultConfig()
	doc := []byte(`
window: 30s
allowed_lateness: 5s
cooldown: 2m
max_keys: 1000
volume:
  threshold_account: 900
  baseline_alpha: 0.5
failure:
  threshold_forged_raw: 3
containment:
  min_severity: warning
  block_ttl: 1m
  allowlist: [10.0.0.0/8, "2001:db8::1"]
`)
	if err := config.Decode(doc, &cfg); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if cfg.Window != 30*time.Second || cfg.AllowedLateness != 5*time.Second || cfg.Cooldown != 2*time.Minute {
		t.Errorf("durations = %s %s %s, want 30s 5s 2m", cfg.Window, cfg.AllowedLateness, cfg.Cooldown)
	}
	if cfg.MaxKeys != 1000 || cfg.Volume.ThresholdAccount != 900 || cfg.Volume.BaselineAlpha != 0.5 || cfg.Failure.ThresholdForgedRaw != 3 {
		t.Errorf("decoded %+v", cfg)
	}
	if cfg.Volume.ThresholdSubject != 200 || cfg.Group != "syncguard-detector" {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if !cfg.Containment.Enabled || cfg.Containment.MinSeverity != "warning" || cfg.Containment.BlockTTL != time.Minute {
		t.Errorf("containment = %+v, want enabled, warning, 1m", cfg.Containment)
	}
	if got := cfg.Containment.Allowlist; len(got) != 2 || got[0] != "10.0.0.0/8" || got[1] != "2001:db8::1" {
		t.Errorf("containment.allowlist = %q", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("decoded config: %v", err)
	}
	if err := config.Decode([]byte("windw: 1m\n"), &cfg); err == nil {
		t.Errorf("unknown key decoded without error")
	}
}
