package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/loadgen"
	"github.com/syncguard/syncguard/sinks"
)

// demoAppSecret signs the generated webhooks of the demo and the benchmark.
// It is a fixed, public value: never use it for a real Meta app.
const demoAppSecret config.Secret = "demo_app_secret_not_for_production"

// workspace is a folder with everything a self-contained run needs: a
// fresh keyring, a token signing key with its JWKS, and a configuration
// that points at them. The demo and the benchmark use one each.
type workspace struct {
	dir    string
	cfg    Config
	signer *loadgen.Signer
}

// newWorkspace prepares dir and a configuration whose topics, consumer
// groups and ClickHouse database are named after name, so that repeated
// runs never see each other's data.
func newWorkspace(dir, name string, brokers []string, inProcess bool, clickhouseAddr string) (*workspace, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	ring := keys.Generate()
	keyringPath := filepath.Join(dir, "keyring.json")
	if err := ring.Save(keyringPath); err != nil {
		return nil, err
	}
	signer, jwks, err := loadgen.GenerateSigningKey("demo-ed-1")
	if err != nil {
		return nil, err
	}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		return nil, fmt.Errorf("write jwks: %w", err)
	}

	cfg := defaultConfig()
	cfg.Kafka.InProcess = inProcess
	if len(brokers) > 0 {
		cfg.Kafka.Brokers = brokers
	}
	cfg.Kafka.TopicPrefix = name + "."
	cfg.Kafka.InstanceID = name
	cfg.Keys.KeyringFile = keyringPath
	cfg.WhatsApp.Apps = []ingest.WhatsAppApp{{
		Name:        "demo",
		VerifyToken: "demo_verify_token",
		Secrets:     []ingest.AppSecret{{ID: "v1", Secret: demoAppSecret}},
	}}
	cfg.Ingest.ListenAddr = "127.0.0.1:0"
	cfg.Ingest.SyncAuth.Issuer = loadgen.DefaultIssuer
	cfg.Ingest.SyncAuth.Audience = loadgen.DefaultAudience
	cfg.Ingest.SyncAuth.JWKSFile = jwksPath
	cfg.Processor.Group = name + "-processor"
	cfg.Detector.Group = name + "-detector"
	cfg.Sink.Group = name + "-sink"
	cfg.Sink.ClickHouse.Addr = clickhouseAddr
	cfg.Sink.ClickHouse.Database = name
	cfg.Sink.FlushInterval = 200 * time.Millisecond
	cfg.Telemetry.ListenAddr = "127.0.0.1:0"
	cfg.Ingest.WhatsAppApps = cfg.WhatsApp.Apps
	if err := cfg.validate(allTargets); err != nil {
		return nil, fmt.Errorf("BUG: workspace configuration invalid: %w", err)
	}
	return &workspace{dir: dir, cfg: cfg, signer: signer}, nil
}

// resetDatabase drops and re-creates the workspace's ClickHouse database.
func (w *workspace) resetDatabase(ctx context.Context) error {
	conn, err := sinks.OpenClickHouse(ctx, w.cfg.Sink.ClickHouse)
	if err != nil {
		return fmt.Errorf("connect to ClickHouse at %s (start it with scripts/services.sh start): %w", w.cfg.Sink.ClickHouse.Addr, err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+w.cfg.Sink.ClickHouse.Database); err != nil {
		return fmt.Errorf("drop database %s: %w", w.cfg.Sink.ClickHouse.Database, err)
	}
	return sinks.Migrate(ctx, conn, w.cfg.Sink.ClickHouse.Database, discardLogger())
}

// factories returns generators of signed webhooks for accounts and sync
// batches for devices.
func (w *workspace) factories(seed int64, accounts, devices int) (*loadgen.WebhookFactory, *loadgen.SyncFactory, []loadgen.Account, error) {
	acc := loadgen.ExampleAccounts(demoAppSecret, accounts)
	wf, err := loadgen.NewWebhookFactory(seed, acc)
	if err != nil {
		return nil, nil, nil, err
	}
	sf, err := loadgen.NewSyncFactory(seed+1, loadgen.ExampleDevices(devices), w.signer)
	if err != nil {
		return nil, nil, nil, err
	}
	return wf, sf, acc, nil
}

// deleteTopics removes the workspace's Kafka topics once a run is over, so
// that repeated benchmark runs do not pile up partitions on the broker. It
// is best effort: a topic left behind costs disk, not correctness.
func (w *workspace) deleteTopics() {
	if w.cfg.Kafka.InProcess {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.cfg.Kafka.DeleteTopics(ctx); err != nil {
		say("could not delete the run's topics: %v", err)
	}
}

// waitDrained waits until the processor, detector and sink groups have
// committed every record of the topics they read, so that a measured
// phase does not pay for the backlog of the one before. It gives up after
// timeout and reports the remaining lag.
func (w *workspace) waitDrained(ctx context.Context, timeout time.Duration) error {
	cl, err := w.cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups := []string{w.cfg.Processor.Group, w.cfg.Detector.Group, w.cfg.Sink.Group}
	deadline := time.Now().Add(timeout)
	for {
		lags, err := adm.Lag(ctx, groups...)
		var total int64
		if err == nil {
			for _, g := range lags {
				if g.Error() != nil {
					err = g.Error()
					break
				}
				for _, partitions := range g.Lag {
					for _, l := range partitions {
						// A transaction's commit marker ends a partition
						// one past the last record a read_committed
						// consumer can commit, so a lag of 1 is caught up.
						if l.Lag > 1 {
							total += l.Lag
						}
					}
				}
			}
		}
		if err == nil && total == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("pipeline not drained after %s: %w", timeout, err)
			}
			return fmt.Errorf("pipeline not drained after %s: %d records behind", timeout, total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
