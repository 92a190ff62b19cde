package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/syncguard/syncguard/detectors"
	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/telemetry"
	"github.com/syncguard/syncguard/processors"
	"github.com/syncguard/syncguard/sinks"
)

// topicSetupTimeout bounds topic creation at start-up.
const topicSetupTimeout = 15 * time.Second

// component is the interface every pipeline stage implements.
type component interface {
	Run(ctx context.Context) error
	Ready() bool
}

// pipeline holds the components of one process in shutdown order.
type pipeline struct {
	logger   *slog.Logger
	registry *prometheus.Registry
	names    []string
	parts    []component
	ingest   *ingest.Server
	cluster  *kfake.Cluster // in-process Kafka, nil when real brokers are used
	opsLn    net.Listener   // operator endpoints, nil when turned off
	// pendingTopics is set when topic creation failed at start; run keeps
	// trying until it succeeds.
	pendingTopics *kafkaclient.Config
}

// newPipeline builds the components that targets name. Nothing runs until
// run is called.
func newPipeline(ctx context.Context, cfg Config, targets []string, logger *slog.Logger) (*pipeline, error) {
	p := &pipeline{logger: logger, registry: telemetry.NewRegistry()}

	if cfg.Kafka.InProcess {
		cluster, kcfg, err := cfg.Kafka.StartInProcess()
		if err != nil {
			return nil, err
		}
		p.cluster = cluster
		cfg.Kafka = kcfg
		logger.Info("started in-process kafka; it keeps nothing across restarts", "brokers", kcfg.Brokers)
	} else {
		// A process must start while Kafka is down: ingest then responds 503
		// and /readyz reports it, instead of the process exiting.
		tctx, cancel := context.WithTimeout(ctx, topicSetupTimeout)
		err := cfg.Kafka.EnsureTopics(tctx)
		cancel()
		if err != nil {
			logger.Error("could not create kafka topics; retrying in the background, and components stay unready until they exist",
				"brokers", cfg.Kafka.Brokers, "err", err)
			p.pendingTopics = &cfg.Kafka
		}
	}

	var ring *keys.Keyring
	if slices.Contains(targets, targetIngest) || slices.Contains(targets, targetProcessor) || slices.Contains(targets, targetSink) {
		var err error
		if ring, err = keys.Load(cfg.Keys.KeyringFile); err != nil {
			p.close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("keys.keyring_file: %w (create it with `syncguard keys init --file %s`)", err, cfg.Keys.KeyringFile)
			}
			return nil, fmt.Errorf("keys.keyring_file: %w", err)
		}
	}

	// Components are added in shutdown order: the edge stops taking
	// requests first, then each consumer finishes and commits what its
	// producers already wrote, and the sink stops last.
	for _, t := range allTargets {
		if !slices.Contains(targets, t) {
			continue
		}
		c, err := p.build(t, cfg, ring)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("start %s: %w", t, err)
		}
		p.names = append(p.names, t)
		p.parts = append(p.parts, c)
	}

	if cfg.Telemetry.ListenAddr != "" {
		ln, err := net.Listen("tcp", cfg.Telemetry.ListenAddr)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("telemetry.listen_addr: %w", err)
		}
		p.opsLn = ln
	}
	return p, nil
}

func (p *pipeline) build(target string, cfg Config, ring *keys.Keyring) (component, error) {
	logger := p.logger.With("component", target)
	switch target {
	case targetIngest:
		srv, err := ingest.New(ingest.Options{
			Config:      cfg.Ingest,
			Kafka:       cfg.Kafka,
			Logger:      logger,
			Registry:    p.registry,
			EnvelopeKey: ring.EnvelopeKey(),
		})
		p.ingest = srv
		return srv, err
	case targetProcessor:
		return processors.New(processors.Options{
			Config:   cfg.Processor,
			Kafka:    cfg.Kafka,
			Logger:   logger,
			Registry: p.registry,
			Keyring:  ring,
		})
	case targetDetector:
		return detectors.New(detectors.Options{
			Config:   cfg.Detector,
			Kafka:    cfg.Kafka,
			Logger:   logger,
			Registry: p.registry,
		})
	case targetSink:
		return sinks.New(sinks.Options{
			Config:   cfg.Sink,
			Kafka:    cfg.Kafka,
			Logger:   logger,
			Registry: p.registry,
			Keyring:  ring,
		})
	}
	return nil, fmt.Errorf("BUG: no builder for target %q", target)
}

// ready reports whether every component is ready.
func (p *pipeline) ready() bool {
	for _, c := range p.parts {
		if !c.Ready() {
			return false
		}
	}
	return true
}

// ingestAddr returns the address the ingest server listens on, or "".
func (p *pipeline) ingestAddr() string {
	if p.ingest == nil {
		return ""
	}
	return p.ingest.Addr()
}

// run starts every component and blocks until ctx is done or one fails.
// Then it stops them one at a time in shutdown order, each after the one
// before it has returned, so a consumer reads everything its upstream wrote.
func (p *pipeline) run(ctx context.Context) error {
	defer p.close()

	failed := make(chan error, len(p.parts)+1)
	cancels := make([]context.CancelFunc, len(p.parts))
	dones := make([]chan struct{}, len(p.parts))
	for i, c := range p.parts {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i], dones[i] = cancel, make(chan struct{})
		go func(name string, c component, done chan struct{}) {
			defer close(done)
			if err := c.Run(cctx); err != nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		}(p.names[i], c, dones[i])
	}

	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	var opsWG sync.WaitGroup
	if p.opsLn != nil {
		ready := map[string]telemetry.ReadyFunc{}
		for i, c := range p.parts {
			ready[p.names[i]] = c.Ready
		}
		opsWG.Add(1)
		go func() {
			defer opsWG.Done()
			if err := telemetry.Serve(opsCtx, p.opsLn, telemetry.Handler(p.registry, ready)); err != nil {
				failed <- err
			}
		}()
		p.logger.Info("serving operator endpoints", "addr", p.opsLn.Addr().String(), "paths", "/metrics /healthz /readyz")
	}

	if p.pendingTopics != nil {
		opsWG.Add(1)
		go func() {
			defer opsWG.Done()
			p.createTopicsLater(opsCtx, *p.pendingTopics)
		}()
	}

	var first error
	select {
	case <-ctx.Done():
		p.logger.Info("shutting down", "order", p.names)
	case first = <-failed:
		p.logger.Error("component failed, shutting down", "err", first)
	}

	for i := range p.parts {
		cancels[i]()
		<-dones[i]
		p.logger.Info("stopped", "component", p.names[i])
	}
	stopOps()
	opsWG.Wait()

	// Collect errors that components returned while stopping.
	errs := []error{first}
	for {
		select {
		case err := <-failed:
			errs = append(errs, err)
		default:
			return errors.Join(errs...)
		}
	}
}

// topicRetryInterval is the pause between attempts to create the topics
// after a failed attempt.
const topicRetryInterval = 5 * time.Second

// createTopicsLater retries topic creation until it succeeds or ctx ends.
func (p *pipeline) createTopicsLater(ctx context.Context, kcfg kafkaclient.Config) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(topicRetryInterval):
		}
		tctx, cancel := context.WithTimeout(ctx, topicSetupTimeout)
		err := kcfg.EnsureTopics(tctx)
		cancel()
		if err == nil {
			p.logger.Info("created kafka topics", "brokers", kcfg.Brokers)
			return
		}
		p.logger.Debug("kafka topics still not created", "err", err)
	}
}

// close releases what newPipeline opened outside the components.
func (p *pipeline) close() {
	if p.opsLn != nil {
		// After run the listener is already closed, because the http.Server
		// in telemetry.Serve closes it when it stops.
		if err := p.opsLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			p.logger.Warn("closing the operator endpoint listener failed", "addr", p.opsLn.Addr().String(), "err", err)
		}
	}
	if p.cluster != nil {
		p.cluster.Close()
		p.cluster = nil
	}
}
