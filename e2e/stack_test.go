package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/sinks"
)

// binary is the syncguard binary that TestMain builds once.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "syncguard")
	build := exec.Command("go", "build", "-o", binary, "../cmd/syncguard")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build syncguard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Case conventions: the fake app secret and verify token of the recorded
// WhatsApp cases under testdata/whatsapp.
const (
	appSecret   = "fake_app_secret_9c1e7a5f2b"
	verifyToken = "fake_verify_token_4711"
)

// stack is one SyncGuard deployment under test: its own topics, consumer
// groups and ClickHouse database on the shared servers, and a syncguard
// process.
type stack struct {
	t          *testing.T
	dir        string
	configPath string
	name       string // unique per stack; prefixes topics, groups, database
	database   string
	brokers    []string
	ingestURL  string
	opsURL     string
	ch         driver.Conn
	kafka      *kgo.Client
	ring       *keys.Keyring
	signer     *loadgen.Signer
	proc       *exec.Cmd
	procDone   chan error
	logPath    string
}

// stackOptions change the generated configuration.
type stackOptions struct {
	// Brokers overrides the Kafka brokers that syncguard uses; the test
	// itself still reads the real broker.
	Brokers []string
	// Targets is the --target flag; default "all".
	Targets string
	// NotReady waits only for /healthz at start, for a process that cannot
	// become ready.
	NotReady bool
	// Apps replaces the whatsapp.apps list of the configuration (YAML list
	// items, indented as under "apps:"). Empty keeps the one app of the
	// recorded cases.
	Apps string
	// Extra is YAML appended to the generated configuration's blocks, keyed
	// by block name ("ingest", "detector", ...).
	Extra map[string]string
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	chAddr := testenv.ClickHouseAddr(t)

	s := &stack{t: t, dir: t.TempDir(), brokers: brokers, procDone: make(chan error, 1)}
	s.name = "e2e_" + randomHex(t, 6)
	s.database = s.name
	s.logPath = filepath.Join(s.dir, "syncguard.log")

	// Keys: the keyring through the binary, as an operator creates it, and
	// a token signing key with its JWKS for the sync API.
	keyringPath := filepath.Join(s.dir, "keyring.json")
	s.mustRun("keys", "init", "--file", keyringPath)
	ring, err := keys.Load(keyringPath)
	if err != nil {
		t.Fatal(err)
	}
	s.ring = ring
	signer, jwks, err := loadgen.GenerateSigningKey("ed-1")
	if err != nil {
		t.Fatal(err)
	}
	s.signer = signer
	jwksPath := filepath.Join(s.dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		t.Fatal(err)
	}

	addrs := freeAddrs(t, 2)
	ingestAddr, opsAddr := addrs[0], addrs[1]
	s.ingestURL, s.opsURL = "http://"+ingestAddr, "http://"+opsAddr
	runBrokers := brokers
	if opts.Brokers != nil {
		runBrokers = opts.Brokers
	}
	s.configPath = filepath.Join(s.dir, "syncguard.yaml")
	s.writeConfig(configValues{
		Name: s.name, Brokers: runBrokers, ClickHouse: chAddr, Database: s.database,
		Keyring: keyringPath, JWKS: jwksPath, IngestAddr: ingestAddr, OpsAddr: opsAddr,
		Apps: opts.Apps, Extra: opts.Extra,
	})

	// The test's own clients read what the pipeline wrote.
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	s.kafka = kcl
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sinks.OpenClickHouse(ctx, sinks.ClickHouseConfig{Addr: chAddr, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.ch = ch

	s.mustRun("migrate", "--config", s.configPath)
	t.Cleanup(s.cleanup)

	targets := opts.Targets
	if targets == "" {
		targets = "all"
	}
	s.start(targets, opts.NotReady)
	return s
}

type configValues struct {
	Name, ClickHouse, Database, Keyring, JWKS, IngestAddr, OpsAddr, Apps string
	Brokers                                                              []string
	Extra                                                                map[string]string
}

var configTemplate = template.Must(template.New("config").Funcs(template.FuncMap{
	"join":   strings.Join,
	"indent": func(s string) string { return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ") },
}).Parse(`kafka:
  brokers: [{{join .Brokers ", "}}]
  topic_prefix: {{.Name}}.
  instance_id: {{.Name}}
  partitions: 3
keys:
  keyring_file: {{.Keyring}}
whatsapp:
  apps:
{{if .Apps}}{{.Apps}}{{else}}    - name: main
      verify_token: ` + verifyToken + `
      secrets:
        - id: v1
          secret: ` + appSecret + `
{{end}}ingest:
  listen_addr: {{.IngestAddr}}
  produce_timeout: 2s
  retry_after: 2s
  sync_auth:
    issuer: ` + loadgen.DefaultIssuer + `
    audience: ` + loadgen.DefaultAudience + `
    jwks_file: {{.JWKS}}
{{with index .Extra "ingest"}}{{indent .}}
{{end}}processor:
  group: {{.Name}}-processor
{{with index .Extra "processor"}}{{indent .}}
{{end}}detector:
  group: {{.Name}}-detector
{{with index .Extra "detector"}}{{indent .}}
{{end}}sink:
  group: {{.Name}}-sink
  flush_interval: 100ms
  clickhouse:
    addr: {{.ClickHouse}}
    database: {{.Database}}
{{with index .Extra "sink"}}{{indent .}}
{{end}}telemetry:
  listen_addr: {{.OpsAddr}}
  log_format: text
  log_level: debug
`))

func (s *stack) writeConfig(v configValues) {
	s.t.Helper()
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, v); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.configPath, buf.Bytes(), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// mustRun runs a one-shot syncguard command and fails the test on error.
func (s *stack) mustRun(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("syncguard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs the syncguard binary with args and returns its combined output.
func (s *stack) run(args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs `syncguard run` and waits until /readyz returns 200.
func (s *stack) start(targets string, healthOnly bool) {
	s.t.Helper()
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--target="+targets, "--config", s.configPath)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.proc = cmd
	done := make(chan error, 1)
	s.procDone = done
	go func() {
		done <- cmd.Wait()
		logFile.Close()
	}()

	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			s.procDone <- err
			s.t.Fatalf("syncguard run exited during start-up: %v\n%s", err, s.logTail())
		default:
		}
		probe := "/readyz"
		if healthOnly {
			probe = "/healthz"
		}
		resp, err := http.Get(s.opsURL + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("syncguard not ready after 90s\n%s", s.logTail())
}

// stop sends SIGTERM and waits for a clean exit.
func (s *stack) stop() {
	s.t.Helper()
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.procDone:
		if err != nil {
			s.t.Errorf("syncguard run exited with %v after SIGTERM\n%s", err, s.logTail())
		}
	case <-time.After(60 * time.Second):
		_ = s.proc.Process.Kill()
		s.t.Errorf("syncguard run did not stop within 60s of SIGTERM\n%s", s.logTail())
	}
	s.proc = nil
}

// kill ends the process with SIGKILL, as a crash would.
func (s *stack) kill() {
	s.t.Helper()
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Kill()
	<-s.procDone
	s.proc = nil
}

func (s *stack) cleanup() {
	if s.proc != nil {
		_ = s.proc.Process.Kill()
		<-s.procDone
	}
	if s.t.Failed() {
		s.t.Logf("syncguard log:\n%s", s.logTail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if os.Getenv("SYNCGUARD_E2E_KEEP") == "" {
		_ = s.ch.Exec(ctx, "DROP DATABASE IF EXISTS "+s.database)
		adm := kadm.NewClient(s.kafka)
		if topics, err := adm.ListTopics(ctx); err == nil {
			var mine []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, s.name+".") {
					mine = append(mine, name)
				}
			}
			_, _ = adm.DeleteTopics(ctx, mine...)
		}
	}
	s.kafka.Close()
	s.ch.Close()
}

// logTail returns the last lines of the syncguard log.
func (s *stack) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return strings.Join(lines, "\n")
}

// childEnv returns this process's environment without SYNCGUARD_*
// variables: they would override the generated config file, for example
// SYNCGUARD_KAFKA_BROKERS that scripts/services.sh env exports.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SYNCGUARD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *stack) topic(suffix string) string { return s.name + "." + suffix }

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct loopback addresses whose ports were free a
// moment ago. The listeners stay open until all are chosen, so the kernel
// cannot hand out one port twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}
