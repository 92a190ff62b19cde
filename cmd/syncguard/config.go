package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/syncguard/syncguard/detectors"
	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/telemetry"
	"github.com/syncguard/syncguard/processors"
	"github.com/syncguard/syncguard/sinks"
)

// Config is the whole configuration file. Every key can also be set by an
// environment variable: SYNCGUARD_ followed by the key path in upper case,
// for example SYNCGUARD_KAFKA_BROKERS=host1:9092,host2:9092.
type Config struct {
	Kafka     kafkaclient.Config `yaml:"kafka"`
	Keys      KeysConfig         `yaml:"keys"`
	WhatsApp  WhatsAppConfig     `yaml:"whatsapp"`
	Ingest    ingest.Config      `yaml:"ingest"`
	Processor processors.Config  `yaml:"processor"`
	Detector  detectors.Config   `yaml:"detector"`
	Sink      sinks.Config       `yaml:"sink"`
	Telemetry telemetry.Config   `yaml:"telemetry"`
}

// KeysConfig locates the keyring: the master keys that wrap data keys, the
// pseudonym key and the envelope MAC key.
type KeysConfig struct {
	// KeyringFile is created by `syncguard keys init` with mode 0600.
	KeyringFile string `yaml:"keyring_file"`
}

// WhatsAppConfig lists the Meta apps. Ingest checks their signatures on
// arrival and processors check them again on every raw record, so both get
// the same list.
type WhatsAppConfig struct {
	Apps []ingest.WhatsAppApp `yaml:"apps"`
}

// Targets that `run --target` accepts; "all" runs every one in one process.
const (
	targetAll       = "all"
	targetIngest    = "ingest"
	targetProcessor = "processor"
	targetDetector  = "detector"
	targetSink      = "sink"
)

var allTargets = []string{targetIngest, targetProcessor, targetDetector, targetSink}

// parseTargets turns "all" or a comma-separated list into target names.
func parseTargets(s string) ([]string, error) {
	if s == targetAll {
		return slices.Clone(allTargets), nil
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(allTargets, t) {
			return nil, fmt.Errorf("--target: unknown target %q, use all or a list of %s", t, strings.Join(allTargets, ", "))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// defaultConfig returns the defaults of every block.
func defaultConfig() Config {
	return Config{
		Kafka:     kafkaclient.Defaults(),
		Keys:      KeysConfig{KeyringFile: "keyring.json"},
		Ingest:    ingest.DefaultConfig(),
		Processor: processors.DefaultConfig(),
		Detector:  detectors.DefaultConfig(),
		Sink:      sinks.DefaultConfig(),
		Telemetry: telemetry.DefaultConfig(),
	}
}

// loadConfig reads path (may be empty) over the defaults, applies the
// environment and copies the app list into ingest. It reads no secret
// file: validate does that for the targets that need one.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if err := config.LoadFile(path, &cfg); err != nil {
		return cfg, withUnknownEnv(err)
	}
	cfg.Ingest.WhatsAppApps = cfg.WhatsApp.Apps
	return cfg, nil
}

// scriptEnv lists SYNCGUARD_ variables that the scripts and tests read
// and that are not config keys.
var scriptEnv = []string{
	"SYNCGUARD_CLICKHOUSE_ADDR", "SYNCGUARD_REQUIRE_SERVICES", "SYNCGUARD_LOCAL_DIR",
	"SYNCGUARD_E2E_KEEP", "SYNCGUARD_LOAD_TEST",
}

// invalidConfig wraps an error of Config.validate.
func invalidConfig(err error) error {
	return withUnknownEnv(fmt.Errorf("invalid configuration: %w", err))
}

// withUnknownEnv adds to a configuration error the SYNCGUARD_ variables
// that set no config key. A misspelt override is a common cause of such
// errors, and the warning about it is logged only once a process starts.
func withUnknownEnv(err error) error {
	if unknown := unknownEnv(os.Environ()); len(unknown) > 0 {
		return fmt.Errorf("%w (%s set no config key; check the spelling)", err, strings.Join(unknown, ", "))
	}
	return err
}

// unknownEnv returns the SYNCGUARD_ variables of environ that set no config
// key, such as a misspelt key.
func unknownEnv(environ []string) []string {
	known := map[string]bool{}
	cfg := defaultConfig()
	_ = config.ApplyEnv(&cfg, func(name string) (string, bool) {
		known[name] = true
		return "", false
	})
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, config.EnvPrefix) && !known[name] && !slices.Contains(scriptEnv, name) {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

// processorApps converts the app list for the processors, reading secret
// files, because processors check the same signatures again.
func processorApps(apps []ingest.WhatsAppApp) ([]processors.App, error) {
	out := make([]processors.App, 0, len(apps))
	for i, app := range apps {
		p := processors.App{Name: app.Name}
		for j, s := range app.Secrets {
			secret := s.Secret
			if s.SecretFile != "" {
				var err error
				if secret, err = config.ReadSecretFile(s.SecretFile); err != nil {
					return nil, fmt.Errorf("whatsapp.apps[%d].secrets[%d].secret_file: %w", i, j, err)
				}
			}
			if secret == "" {
				return nil, fmt.Errorf("whatsapp.apps[%d].secrets[%d]: the secret is empty; set secret or a non-empty secret_file", i, j)
			}
			p.Secrets = append(p.Secrets, processors.AppSecret{ID: s.ID, Secret: secret})
		}
		out = append(out, p)
	}
	return out, nil
}

// validate checks the blocks that the given targets use, and reads the
// app secret files for the processor, which checks signatures again.
func (c *Config) validate(targets []string) error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Telemetry.Validate(); err != nil {
		return err
	}
	if err := c.validateAddrs(targets); err != nil {
		return err
	}
	if slices.Contains(targets, targetProcessor) {
		apps, err := processorApps(c.WhatsApp.Apps)
		if err != nil {
			return err
		}
		c.Processor.Apps = apps
	}
	needsKeys := slices.Contains(targets, targetIngest) || slices.Contains(targets, targetProcessor) || slices.Contains(targets, targetSink)
	if needsKeys && c.Keys.KeyringFile == "" {
		return errors.New("keys.keyring_file: required by the ingest, processor and sink targets; create one with `syncguard keys init --file FILE`")
	}
	checks := map[string]func() error{
		targetIngest:    c.Ingest.Validate,
		targetProcessor: c.Processor.Validate,
		targetDetector:  c.Detector.Validate,
		targetSink:      c.Sink.Validate,
	}
	for _, t := range targets {
		if err := checks[t](); err != nil {
			return err
		}
	}
	return nil
}

// validateAddrs checks every address key that the targets use: host:port
// with a port from 0 to 65535, and no two listeners on one port.
func (c *Config) validateAddrs(targets []string) error {
	for i, b := range c.Kafka.Brokers {
		if err := checkAddr(b); err != nil && !c.Kafka.InProcess {
			return fmt.Errorf("kafka.brokers[%d]: %w", i, err)
		}
	}
	if c.Telemetry.ListenAddr != "" {
		if err := checkAddr(c.Telemetry.ListenAddr); err != nil {
			return fmt.Errorf("telemetry.listen_addr: %w", err)
		}
	}
	if slices.Contains(targets, targetIngest) {
		if err := checkAddr(c.Ingest.ListenAddr); err != nil {
			return fmt.Errorf("ingest.listen_addr: %w", err)
		}
		_, ingestPort, _ := net.SplitHostPort(c.Ingest.ListenAddr)
		_, opsPort, _ := net.SplitHostPort(c.Telemetry.ListenAddr)
		if ingestPort == opsPort && ingestPort != "0" {
			return fmt.Errorf("telemetry.listen_addr: port %s is also ingest.listen_addr's; use another", opsPort)
		}
	}
	if slices.Contains(targets, targetSink) {
		if err := checkAddr(c.Sink.ClickHouse.Addr); err != nil {
			return fmt.Errorf("sink.clickhouse.addr: %w", err)
		}
	}
	return nil
}

// checkAddr reports whether addr is host:port with a numeric port.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has an invalid port; use a number from 0 to 65535", addr)
	}
	return nil
}
