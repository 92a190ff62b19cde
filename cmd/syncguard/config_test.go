package main

import (
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
