package prometheus_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/syncguard/syncguard/dashboards/metricnames"
	"github.com/syncguard/syncguard/internal/testenv"
)

const (
	rulesFile     = "rules.yml"
	rulesTestFile = "rules_test.yml"
	configFile    = "prometheus.yml"
	// containerDir is where docker-compose.yml mounts this folder in the
	// Prometheus container.
	containerDir = "/etc/prometheus/"
	repoRoot     = "../.."
)

// promtool returns the path of promtool. When promtool is not installed, it
// skips the test, or fails it if SYNCGUARD_REQUIRE_SERVICES=1.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	if os.Getenv(testenv.EnvRequireServices) == "1" {
		t.Fatalf("promtool not found on PATH: run `apt-get install prometheus`, whose package contains promtool (%v)", err)
	}
	t.Skipf("promtool not found on PATH: run `apt-get install prometheus` to test the rules (%v)", err)
	return ""
}

// runPromtool runs promtool with args and fails the test, showing its
// output, when it exits with an error.
func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := promtool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesCheck(t *testing.T) {
	out := runPromtool(t, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules printed no SUCCESS:\n%s", out)
	}
}

func TestRulesUnitTests(t *testing.T) {
	out := runPromtool(t, "test", "rules", rulesTestFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules printed no SUCCESS:\n%s", out)
	}
}

// TestConfigCheck checks prometheus.yml with its rule files rewritten from
// the container path to this folder, where promtool can read them.
func TestConfigCheck(t *testing.T) {
	var config map[string]any
	readYAML(t, configFile, &config)

	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := config["rule_files"].([]any)
	var rewritten []any
	loadsRules := false
	for _, f := range files {
		path, _ := f.(string)
		if !strings.HasPrefix(path, containerDir) {
			t.Fatalf("%s: rule file %q is not under %s, where docker-compose.yml mounts this folder", configFile, path, containerDir)
		}
		local := filepath.Join(dir, strings.TrimPrefix(path, containerDir))
		if _, err := os.Stat(local); err != nil {
			t.Errorf("%s loads %s, but this folder lacks it: %v", configFile, path, err)
		}
		loadsRules = loadsRules || filepath.Base(local) == rulesFile
		rewritten = append(rewritten, local)
	}
	if !loadsRules {
		t.Errorf("%s: rule_files %v do not load %s", configFile, files, rulesFile)
	}
	config["rule_files"] = rewritten

	b, err := yaml.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), configFile)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, "check", "config", tmp)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check config printed no SUCCESS:\n%s", out)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T) []alertRule {
	t.Helper()
	var file struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, rulesFile, &file)
	var out []alertRule
	for _, g := range file.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

var jobMatcher = regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)

// TestRulesQueryRegisteredMetrics checks that every rule queries metrics
// that the Go code registers, in scrape jobs that prometheus.yml defines,
// and carries the labels and annotations that routing and paging need.
func TestRulesQueryRegisteredMetrics(t *testing.T) {
	registered, err := metricnames.Registered(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	series := metricnames.Series(registered)
	// up is written by Prometheus itself for every scrape target.
	series["up"] = true

	var config struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, configFile, &config)
	jobs := map[string]bool{}
	for _, sc := range config.ScrapeConfigs {
		jobs[sc.JobName] = true
	}

	seen := map[string]bool{}
	for _, r := range readRules(t) {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alerting rule", r.Expr)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s is defined twice", r.Alert)
		}
		seen[r.Alert] = true

		names, err := metricnames.InExpr(r.Expr)
		if err != nil {
			t.Errorf("alert %s: %v", r.Alert, err)
		}
		if len(names) == 0 {
			t.Errorf("alert %s selects no metric: %s", r.Alert, r.Expr)
		}
		for _, n := range names {
			if !series[n] {
				t.Errorf("alert %s uses metric %s, which no Go code registers", r.Alert, n)
			}
		}
		for _, m := range jobMatcher.FindAllStringSubmatch(r.Expr, -1) {
			if !jobs[m[1]] {
				t.Errorf("alert %s selects job %q, which %s does not scrape", r.Alert, m[1], configFile)
			}
		}

		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity label %q, want critical or warning", r.Alert, s)
		}
		if r.Labels["component"] == "" {
			t.Errorf("alert %s has no component label", r.Alert)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
	}
}

// TestRulesUnitTestsCoverEveryRule checks that rules_test.yml shows every
// rule firing at least once, and at least one rule staying silent.
func TestRulesUnitTestsCoverEveryRule(t *testing.T) {
	var file struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, rulesTestFile, &file)
	if !slices.Contains(file.RuleFiles, rulesFile) {
		t.Errorf("%s: rule_files %v do not include %s", rulesTestFile, file.RuleFiles, rulesFile)
	}

	fired := map[string]bool{}
	silent := 0
	for _, tc := range file.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fired[at.Alertname] = true
			} else {
				silent++
			}
		}
	}
	for _, r := range readRules(t) {
		if !fired[r.Alert] {
			t.Errorf("%s has no test in which alert %s fires", rulesTestFile, r.Alert)
		}
	}
	if silent == 0 {
		t.Errorf("%s has no test in which a rule stays silent", rulesTestFile)
	}
}
