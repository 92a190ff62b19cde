package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// timeFormat is the format of the sg-received-at header.
const timeFormat = time.RFC3339Nano

// Options are the dependencies of a Server.
type Options struct {
	Config Config
	Kafka  kafkaclient.Config
	// Logger already carries component=ingest. Nil discards logs.
	Logger *slog.Logger
	// Registry receives the metrics. Nil registers them nowhere.
	Registry prometheus.Registerer
	// EnvelopeKey keys the envelope MAC of sync records and, through
	// schemas.RawSealKey, the encryption of raw record values. It must be 32
	// bytes long.
	EnvelopeKey []byte
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Client, when set, produces the records and stays open after Run
	// returns. When nil, New creates a client from Kafka and Run closes it.
	Client *kgo.Client
}

// Server is the ingest HTTP server: it authenticates WhatsApp webhooks and
// sync batches, produces them to the raw topic, and writes one audit event
// per request.
type Server struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	client     *kgo.Client
	ownsClient bool
	// auditClient produces audit records. When New creates the clients it
	// is a second client with a linger, because audit records never hold a
	// response back and batching them spares the broker; otherwise it is
	// client.
	auditClient *kgo.Client
	rawTopic    string
	envelopeKey []byte
	// sealer encrypts raw record values, so that no Kafka record holds
	// message content in plaintext.
	sealer  *schemas.RawSealer
	keys    *webhookKeys
	tokens  *tokenVerifier
	dpop    *dpopVerifier
	replay  *replayLog
	idem    *idempotency
	metrics *metrics
	auditor auditWriter
	// produceLog limits the log lines about failed produces.
	produceLog rate.Sometimes
	retryAfter string
	handler    http.Handler

	// Readiness: Unix nanoseconds of the last successful ping or produce
	// and of the last failed produce.
	lastKafkaOK      atomic.Int64
	lastKafkaFailure atomic.Int64
	serving          atomic.Bool
	// inFlight counts the audited requests being handled.
	inFlight atomic.Int64

	addrMu sync.Mutex
	addr   string

	// Admission before the handlers: see guard.
	kafkaCfg           kafkaclient.Config
	controlTopic       string
	replayTopic        string
	resolver           addrResolver
	allow              allowlist
	limits             rateLimiters
	blocks             *blocklist
	blockMetrics       *blockMetrics
	forwardedMalformed prometheus.Counter
	controlLog         rate.Sometimes
	// blocksLoaded is set once the control topic was read to its end.
	blocksLoaded atomic.Bool
	tlsConfig    *tls.Config
}

// New checks the options, reads the key files and creates the Kafka client
// when none is given.
func New(opts Options) (*Server, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if len(opts.EnvelopeKey) != 32 {
		return nil, ErrNoEnvelopeKey
	}
	s := &Server{
		cfg:         opts.Config,
		log:         opts.Logger,
		now:         opts.Now,
		rawTopic:    opts.Kafka.Topic(schemas.TopicRaw),
		envelopeKey: append([]byte(nil), opts.EnvelopeKey...),
		retryAfter:  retryAfterSeconds(opts.Config.RetryAfter),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	var err error
	if s.sealer, err = schemas.NewRawSealer(s.envelopeKey); err != nil {
		return nil, err
	}
	if s.keys, err = newWebhookKeys(opts.Config.WhatsAppApps); err != nil {
		return nil, err
	}
	if s.tokens, err = newTokenVerifier(opts.Config.SyncAuth, s.now, s.log, reg); err != nil {
		return nil, err
	}
	if s.idem, err = newIdempotency(opts.Config, reg); err != nil {
		return nil, err
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	if err := s.setupEdge(opts.Config, reg); err != nil {
		return nil, err
	}
	s.kafkaCfg = opts.Kafka
	s.controlTopic = opts.Kafka.Topic(schemas.TopicControl)
	s.replayTopic = opts.Kafka.Topic(schemas.TopicReplay)
	if s.tlsConfig, err = loadTLS(opts.Config.TLS); err != nil {
		return nil, err
	}
	s.auditor = auditWriter{s: s, topic: opts.Kafka.Topic(schemas.TopicAudit)}
	s.auditor.logEach.Interval = auditLogInterval
	s.produceLog.Interval = auditLogInterval

	s.client = opts.Client
	if s.client == nil {
		if err := opts.Kafka.Validate(); err != nil {
			return nil, err
		}
		s.client, err = opts.Kafka.NewClient(
			// Acks from all in-sync replicas on an idempotent producer
			// are kgo's defaults, restated because the responses depend
			// on them. On the 2-core benchmark machine a 1 ms linger
			// raised the highest webhook rate by about a quarter and
			// added about 1.5 ms to the median ack.
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(opts.Config.ProduceLinger),
		)
		if err != nil {
			return nil, err
		}
		s.auditClient, err = opts.Kafka.NewClient(
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(auditLinger),
		)
		if err != nil {
			s.client.Close()
			return nil, err
		}
		s.ownsClient = true
	} else {
		s.auditClient = s.client
	}
	if s.replay, err = newReplayLogFor(s, reg); err != nil {
		s.closeClients()
		return nil, err
	}
	if s.dpop, err = newDPoPVerifier(opts.Config, s.now, s.replay); err != nil {
		s.closeClients()
		return nil, err
	}
	s.handler = s.routes()

	if n := s.keys.activeSecrets(s.now()); n == 0 {
		s.log.Warn("no WhatsApp app secret is active now; every webhook will be rejected until one is")
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/whatsapp", s.serveWebhookRoute)
	mux.HandleFunc("/v1/sync/events", s.serveSyncRoute)
	mux.HandleFunc("/healthz", s.serveHealthz)
	mux.HandleFunc("/readyz", s.serveReadyz)
	mux.HandleFunc("/", s.serveNotFound)
	return s.guard(mux)
}

// Handler returns the routes of the server: the two webhook methods, the
// sync API, /healthz and /readyz. Paths outside them get an audited 404.
func (s *Server) Handler() http.Handler { return s.handler }

// Addr returns the address the server listens on, or "" before it does.
func (s *Server) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Ready reports whether the server accepts requests and Kafka responded
// recently: a ping or produce succeeded within three ready_check_interval
// periods, no produce failed since, the control topic was read to its
// end once, and the replay topic follower started.
func (s *Server) Ready() bool {
	if !s.serving.Load() || !s.blocksLoaded.Load() || !s.replay.isStarted() {
		return false
	}
	ok, failed := s.lastKafkaOK.Load(), s.lastKafkaFailure.Load()
	if ok == 0 || failed > ok {
		return false
	}
	return time.Since(time.Unix(0, ok)) <= 3*s.cfg.ReadyCheckInterval
}

// auditLinger is how long the audit client waits to fill a batch.
const auditLinger = 5 * time.Millisecond

// closeClients closes the Kafka clients that New created.
func (s *Server) closeClients() {
	if s.ownsClient {
		s.client.Close()
		s.auditClient.Close()
	}
}

// Run listens on listen_addr and serves until ctx is cancelled; see Serve.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		s.closeClients()
		return fmt.Errorf("ingest: listen on %s: %w", s.cfg.ListenAddr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, with TLS when ingest.tls is
// set. While serving it follows the control topic for blocks and the
// replay topic for the DPoP proofs other instances accepted. It then
// shuts down in this order: stop accepting connections and drain in-flight
// requests (at most shutdown_timeout), stop the readiness pings and the
// control and replay topic consumers, flush buffered audit records (at most
// audit_flush_timeout), and close the Kafka client if New created it. It
// returns nil on a clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:         s.tlsConfig,
	}
	control, err := s.kafkaCfg.NewClient(controlConsumerOpts(s.controlTopic, s.cfg.Blocks.FetchMaxWait)...)
	if err != nil {
		s.closeClients()
		_ = ln.Close()
		return fmt.Errorf("ingest: control topic consumer: %w", err)
	}
	stopReplay, err := s.followReplay()
	if err != nil {
		control.Close()
		s.closeClients()
		_ = ln.Close()
		return err
	}
	s.addrMu.Lock()
	s.addr = ln.Addr().String()
	s.addrMu.Unlock()

	pingCtx, stopPings := context.WithCancel(context.Background())
	pingsDone := make(chan struct{})
	go func() {
		defer close(pingsDone)
		s.pingKafka(pingCtx)
	}()
	// The JWKS refresh stops with the pings.
	jwksDone := make(chan struct{})
	go func() {
		defer close(jwksDone)
		s.tokens.keys.run(pingCtx)
	}()

	controlCtx, stopControl := context.WithCancel(context.Background())
	controlDone := make(chan struct{})
	go func() {
		defer close(controlDone)
		s.followControl(controlCtx, control)
	}()

	served := make(chan error, 1)
	go func() {
		if s.tlsConfig != nil {
			// The certificate is in TLSConfig, so no file names.
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		served <- srv.Serve(ln)
	}()
	s.serving.Store(true)
	s.log.Info("ingest listening", "addr", ln.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	s.serving.Store(false)

	// 1. Stop accepting and drain the requests in flight.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.log.Error("ingest shutdown did not drain every request", "err", err)
		_ = srv.Close()
	}
	cancel()
	if serveErr == nil {
		serveErr = <-served
	}
	// 2. Stop the readiness pings and the control and replay topic
	// consumers.
	stopPings()
	<-pingsDone
	<-jwksDone
	stopControl()
	<-controlDone
	control.Close()
	stopReplay()
	// 3. Flush the audit records of the drained requests.
	flushCtx, cancel := context.WithTimeout(context.Background(), s.cfg.AuditFlushTimeout)
	if err := s.auditClient.Flush(flushCtx); err != nil {
		s.log.Error("ingest could not flush audit records before closing", "err", err)
	}
	cancel()
	// 4. Close the clients that New created.
	s.closeClients()
	s.log.Info("ingest stopped")

	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	if serveErr != nil {
		return fmt.Errorf("ingest: serve: %w", serveErr)
	}
	return nil
}

// pingKafka pings the brokers every ready_check_interval until ctx ends,
// recording successes for Ready.
func (s *Server) pingKafka(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReadyCheckInterval)
	defer t.Stop()
	wasOK := true
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyCheckInterval)
		err := s.client.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			s.lastKafkaOK.Store(time.Now().UnixNano())
			if !wasOK {
				s.log.Info("kafka reachable again")
			}
			wasOK = true
		case wasOK:
			// Logged once per outage, not once per ping.
			s.log.Warn("kafka ping failed", "err", err)
			wasOK = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	closeIfBody(w, r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	closeIfBody(w, r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// closeIfBody closes an HTTP/1 connection after a probe that sent a body,
// which probes do not need: net/http would otherwise read that body
// before responding, and wait read_timeout for one that stalls.
func closeIfBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		closeConn(w)
	}
}

func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, routeUnknown)
	defer s.finish(x)
	s.fail(x, schemas.ReasonNotFound, "no such route")
}

func (s *Server) serveMethodNotAllowed(w http.ResponseWriter, r *http.Request, route, allow string) {
	x := s.begin(w, r, route)
	defer s.finish(x)
	x.Header().Set("Allow", allow)
	s.fail(x, schemas.ReasonMethodNotAllowed, "the method is not allowed on this route")
}

// loadTLS returns the TLS configuration of the listener, or nil when
// ingest.tls names no files. It allows TLS 1.3 only and offers HTTP/2
// before HTTP/1.1 in ALPN; net/http serves HTTP/2 on it because it then
// configures h2 itself.
func loadTLS(c TLSConfig) (*tls.Config, error) {
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ingest.tls: load cert_file %s and key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}
