package main

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/syncguard/syncguard/internal/config"
)

// docker-compose.yml cannot run on the development machines (no Docker
// engine), so this test checks that it agrees with the code: every
// SYNCGUARD_* variable names a real config key, the published ports are the
// ones the services listen on, and the mounted config file loads.

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// knownEnv returns every environment variable that the config reads.
func knownEnv(t *testing.T) []string {
	t.Helper()
	var names []string
	cfg := defaultConfig()
	err := config.ApplyEnv(&cfg, func(name string) (string, bool) {
		names = append(names, name)
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// publishedPorts returns the container ports of "host:port:container".
func publishedPorts(ports []string) []string {
	var out []string
	for _, p := range ports {
		parts := strings.Split(p, ":")
		out = append(out, parts[len(parts)-1])
	}
	return out
}

func portOfAddr(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return port
}

func TestComposeMatchesCode(t *testing.T) {
	c := loadCompose(t)
	sg, ok := c.Services["syncguard"]
	if !ok {
		t.Fatal("no syncguard service")
	}
	known := knownEnv(t)
	for name := range sg.Environment {
		if strings.HasPrefix(name, config.EnvPrefix) && !slices.Contains(known, name) {
			t.Errorf("syncguard environment %s names no config key", name)
		}
	}

	// The mounted config file must load with the compose overrides.
	cfg := defaultConfig()
	b, err := os.ReadFile("../../deploy/syncguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Decode(b, &cfg); err != nil {
		t.Fatalf("deploy/syncguard.yaml: %v", err)
	}
	err = config.ApplyEnv(&cfg, func(name string) (string, bool) { v, ok := sg.Environment[name]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sg.Volumes, "./deploy/syncguard.yaml:/etc/syncguard/syncguard.yaml:ro") ||
		!slices.Contains(sg.Command, "/etc/syncguard/syncguard.yaml") {
		t.Errorf("syncguard does not run with the mounted deploy/syncguard.yaml: command %v volumes %v", sg.Command, sg.Volumes)
	}

	published := publishedPorts(sg.Ports)
	for key, addr := range map[string]string{"ingest.listen_addr": cfg.Ingest.ListenAddr, "telemetry.listen_addr": cfg.Telemetry.ListenAddr} {
		if !slices.Contains(published, portOfAddr(t, addr)) {
			t.Errorf("%s %s is not published by the syncguard service (%v)", key, addr, sg.Ports)
		}
		if host, _, _ := net.SplitHostPort(addr); host != "0.0.0.0" {
			t.Errorf("%s %s listens on %s, unreachable from other containers", key, addr, host)
		}
	}

	// Kafka: the brokers syncguard uses are the broker's advertised
	// listener, and the broker does not create topics on its own, which
	// syncguard does at start.
	kafka := c.Services["kafka"]
	if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(adv, "//"+cfg.Kafka.Brokers[0]) {
		t.Errorf("kafka.brokers %v is not the advertised listener %q", cfg.Kafka.Brokers, adv)
	}
	if kafka.Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] != "false" {
		t.Error("the compose broker should leave topic creation to syncguard")
	}

	// ClickHouse: native protocol port and database.
	chHost, chPort, _ := net.SplitHostPort(cfg.Sink.ClickHouse.Addr)
	if ch, ok := c.Services[chHost]; !ok || !slices.Contains(publishedPorts(ch.Ports), chPort) {
		t.Errorf("sink.clickhouse.addr %s names no service publishing that port", cfg.Sink.ClickHouse.Addr)
	}
	if got := c.Services["clickhouse"].Environment["CLICKHOUSE_DB"]; got != cfg.Sink.ClickHouse.Database {
		t.Errorf("CLICKHOUSE_DB %q, sink.clickhouse.database %q", got, cfg.Sink.ClickHouse.Database)
	}

	// Prometheus scrapes the telemetry port.
	prom, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if want := "syncguard:" + portOfAddr(t, cfg.Telemetry.ListenAddr); !strings.Contains(string(prom), want) {
		t.Errorf("prometheus.yml does not scrape %s", want)
	}
}

func TestExampleConfigValid(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	secret := dir + "/app_secret"
	if err := os.WriteFile(secret, []byte("example-app-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../deploy/syncguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/syncguard.yaml"
	text := strings.ReplaceAll(string(b), "/var/lib/syncguard/app_secret", secret)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(allTargets); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if got := cfg.Processor.Apps[0].Secrets[0].Secret.Reveal(); got != "example-app-secret" {
		t.Errorf("processor app secret %q, want the file's content", got)
	}
}
