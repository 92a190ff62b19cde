package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type testInner struct {
	Addr    string        `yaml:"addr"`
	Timeout time.Duration `yaml:"timeout"`
}

type testConfig struct {
	Name    string    `yaml:"name"`
	Token   Secret    `yaml:"token"`
	Enabled bool      `yaml:"enabled"`
	Count   int       `yaml:"count"`
	Ratio   float64   `yaml:"ratio"`
	Brokers []string  `yaml:"brokers"`
	Inner   testInner `yaml:"inner"`
}

func TestSecretRedacted(t *testing.T) {
	s := Secret("hunter2")
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "token", s)
	js, err := json.Marshal(struct{ T Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(struct{ T Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s),
		"%q":   fmt.Sprintf("%q", s),
		"%x":   fmt.Sprintf("%x", s),
		"%#v":  fmt.Sprintf("%#v", s),
		"%+v":  fmt.Sprintf("%+v", struct{ T Secret }{s}),
		"slog": logged.String(),
		"json": string(js),
		"yaml": string(y),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s output %q contains the secret", name, out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q, want the value", s.Reveal())
	}
}

func TestDecodeRejectsUnknownKey(t *testing.T) {
	var c testConfig
	err := Decode([]byte("name: a\nnmae: b\n"), &c)
	if err == nil || !strings.Contains(err.Error(), `unknown key "nmae"`) {
		t.Fatalf("Decode error = %v, want one naming the unknown key", err)
	}
	if strings.Contains(err.Error(), "config.testConfig") {
		t.Errorf("Decode error %q names a Go type", err)
	}
}

func TestDecodeEmptyKeepsDefaults(t *testing.T) {
	c := testConfig{Name: "default"}
	if err := Decode(nil, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "default" {
		t.Errorf("Name = %q, want the default", c.Name)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"SYNCGUARD_NAME":          "from-env",
		"SYNCGUARD_TOKEN":         "s3cret",
		"SYNCGUARD_ENABLED":       "true",
		"SYNCGUARD_COUNT":         "42",
		"SYNCGUARD_RATIO":         "0.5",
		"SYNCGUARD_BROKERS":       "a:1, b:2,",
		"SYNCGUARD_INNER_ADDR":    "127.0.0.1:1",
		"SYNCGUARD_INNER_TIMEOUT": "3s",
	}
	var c testConfig
	err := ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-env" {
		t.Errorf("Name = %q", c.Name)
	}
	if c.Token.Reveal() != "s3cret" {
		t.Errorf("Token not set")
	}
	if !c.Enabled {
		t.Errorf("Enabled = false")
	}
	if c.Count != 42 {
		t.Errorf("Count = %d", c.Count)
	}
	if c.Ratio != 0.5 {
		t.Errorf("Ratio = %v", c.Ratio)
	}
	if strings.Join(c.Brokers, "|") != "a:1|b:2" {
		t.Errorf("Brokers = %q", c.Brokers)
	}
	if c.Inner.Addr != "127.0.0.1:1" {
		t.Errorf("Inner.Addr = %q", c.Inner.Addr)
	}
	if c.Inner.Timeout != 3*time.Second {
		t.Errorf("Inner.Timeout = %v", c.Inner.Timeout)
	}
}

func TestApplyEnvInvalid(t *testing.T) {
	f := func(name, value string) {
		t.Helper()
		var c testConfig
		err := ApplyEnv(&c, func(k string) (string, bool) { return value, k == name })
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error = %v, want one naming the variable", name, value, err)
		}
	}
	f("SYNCGUARD_COUNT", "many")
	f("SYNCGUARD_ENABLED", "perhaps")
	f("SYNCGUARD_INNER_TIMEOUT", "10")
	f("SYNCGUARD_RATIO", "half")
}

func TestDecodeNamesKeyPath(t *testing.T) {
	type inner struct {
		Partitions int32         `yaml:"partitions"`
		Timeout    time.Duration `yaml:"timeout"`
	}
	type app struct {
		Name string `yaml:"name"`
	}
	type outer struct {
		Kafka inner `yaml:"kafka"`
		Apps  []app `yaml:"apps"`
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown nested key", "kafka:\n  partitons: 3\n", `kafka.partitons (line 2): unknown key "partitons"`},
		{"integer as text", "kafka:\n  partitions: three\n", `kafka.partitions (line 2): invalid value "three", want an integer`},
		{"duration with words", "kafka:\n  timeout: 5 minutes\n", `kafka.timeout (line 2): invalid value "5 minutes", want a duration`},
		{"unknown key in a list item", "apps:\n  - name: a\n    nmae: b\n", `apps[0].nmae (line 3): unknown key "nmae"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c outer
			err := Decode([]byte(tt.doc), &c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
