package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTargets(t *testing.T) {
	f := func(in, want, wantErr string) {
		t.Helper()
		got, err := parseTargets(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("parseTargets(%q) error = %v, want one containing %q", in, err, wantErr)
			}
			return
		}
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("parseTargets(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	f("all", "ingest,processor,detector,sink", "")
	f("sink", "sink", "")
	f("ingest, processor,ingest", "ingest,processor", "")
	f("ingest,web", "", `unknown target "web"`)
	f("", "", "unknown target")
}

func TestParseMix(t *testing.T) {
	m, err := parseMix("webhook=3, sync=2,forged=1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Webhook != 3 || m.Sync != 2 || m.Forged != 1 || m.Text != 0 {
		t.Errorf("parseMix = %+v", m)
	}
	for _, bad := range []string{"webhook", "email=1", "sync=-1", "sync=x"} {
		if _, err := parseMix(bad); err == nil || !strings.Contains(err.Error(), "--mix") {
			t.Errorf("parseMix(%q) error = %v, want a --mix error", bad, err)
		}
	}
}

// clearEnv unsets the SYNCGUARD_ variables for the test, because they
// override the config files under test; `scripts/services.sh env` exports
// some of them.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SYNCGUARD_") {
			os.Unsetenv(name)
			t.Cleanup(func() { os.Setenv(name, value) })
		}
	}
}

func TestConfigErrorsNameKeys(t *testing.T) {
	clearEnv(t)
	f := func(yaml, wantKey string, targets ...string) {
		t.Helper()
		if len(targets) == 0 {
			targets = allTargets
		}
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		if err == nil {
			err = cfg.validate(targets)
		}
		if err == nil || !strings.Contains(err.Error(), wantKey) {
			t.Errorf("config %q: error = %v, want one naming %s", yaml, err, wantKey)
		}
	}
	// No app: webhooks would have no secret to check.
	f("keys: {keyring_file: k.json}\n", "whatsapp.apps")
	f("kafka: {brokers: []}\n", "kafka.brokers")
	f("kafka: {partitions: 0}\n", "kafka.partitions")
	f("telemetry: {log_level: loud}\n", "telemetry.log_level")
	f("ingest: {listen_addr: nowhere}\n", "ingest.listen_addr")
	f("sink: {clickhouse: {database: 'bad-name'}}\n", "sink.clickhouse.database", targetSink)
	f("detector: {window: 0s}\n", "detector.window", targetDetector)
	f("processor: {group: ''}\n", "processor.group", targetProcessor)
	f("ingset: {}\n", "ingset")
}

func TestAddressesValidated(t *testing.T) {
	f := func(mutate func(*Config), target, wantKey string) {
		t.Helper()
		cfg := defaultConfig()
		mutate(&cfg)
		err := cfg.validateAddrs([]string{target})
		if err == nil || !strings.Contains(err.Error(), wantKey) {
			t.Errorf("error = %v, want one naming %s", err, wantKey)
		}
	}
	f(func(c *Config) { c.Ingest.ListenAddr = "127.0.0.1:99999" }, targetIngest, "ingest.listen_addr")
	f(func(c *Config) { c.Telemetry.ListenAddr = c.Ingest.ListenAddr }, targetIngest, "telemetry.listen_addr")
	f(func(c *Config) { c.Sink.ClickHouse.Addr = "127.0.0.1:19x00" }, targetSink, "sink.clickhouse.addr")
	f(func(c *Config) { c.Kafka.Brokers = []string{"kafka:nine"} }, targetSink, "kafka.brokers[0]")

	cfg := defaultConfig()
	if err := cfg.validateAddrs(allTargets); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestUnknownEnv(t *testing.T) {
	got := unknownEnv([]string{
		"SYNCGUARD_KAFKA_BROKERS=a:1", "SYNCGUARD_KAFKA_BROKER=a:1", "SYNCGUARD_REQUIRE_SERVICES=1",
		"SYNCGUARD_INGEST_SYNC_AUTH_ISSUER=x", "PATH=/bin",
	})
	if strings.Join(got, ",") != "SYNCGUARD_KAFKA_BROKER" {
		t.Errorf("unknownEnv = %v, want only the misspelt SYNCGUARD_KAFKA_BROKER", got)
	}
}

func TestMigrateNeedsNoSecretFile(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "whatsapp: {apps: [{name: a, verify_token: v, secrets: [{id: s1, secret_file: /nonexistent/secret}]}]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatalf("loadConfig read a secret file it does not need: %v", err)
	}
	err = cfg.validate([]string{targetProcessor})
	if err == nil || !strings.Contains(err.Error(), "whatsapp.apps[0].secrets[0].secret_file") {
		t.Errorf("validate for the processor: error = %v, want one naming the secret file key", err)
	}
}

func TestRunWithoutConfigHintsFlag(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "SYNCGUARD_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	err := runCommand(context.Background(), []string{"--target=ingest"})
	if err == nil {
		t.Fatal("run without --config and without secrets succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "whatsapp.apps") {
		t.Errorf("error = %q, want it to name whatsapp.apps", err)
	}
	if !strings.Contains(err.Error(), "pass --config FILE") {
		t.Errorf("error = %q, want a hint to pass --config", err)
	}
}

func TestRunErrorNamesMisspeltVariable(t *testing.T) {
	clearEnv(t)
	t.Setenv("SYNCGUARD_INGEST_READ_TIMEOUT", "40s")
	t.Setenv("SYNCGUARD_INGEST_WRITE_TIMOUT", "45s")
	err := runCommand(context.Background(), []string{"--target=ingest", "--config", "../../deploy/syncguard.yaml"})
	if err == nil {
		t.Fatal("run with write_timeout below read_timeout succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "ingest.write_timeout") {
		t.Errorf("error = %q, want it to name ingest.write_timeout", err)
	}
	if !strings.Contains(err.Error(), "SYNCGUARD_INGEST_WRITE_TIMOUT set no config key") {
		t.Errorf("error = %q, want it to name the misspelt variable", err)
	}
}

func TestRunMissingKeyringHintsKeysInit(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	keyring := filepath.Join(dir, "keyring.json")
	yaml := "keys: {keyring_file: " + keyring + "}\n" +
		"kafka: {brokers: ['127.0.0.1:1']}\n" +
		"whatsapp: {apps: [{name: a, verify_token: v, secrets: [{id: s1, secret: abcdefabcdefabcdef}]}]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runCommand(context.Background(), []string{"--target=processor", "--config", path})
	if err == nil || !strings.Contains(err.Error(), "syncguard keys init --file "+keyring) {
		t.Errorf("error = %v, want a hint to run keys init for %s", err, keyring)
	}
}
