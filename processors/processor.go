// Package processors is the stage between ingest and the sinks. A Processor
// consumes the raw topic in a consumer group. For each record it verifies
// where the record came from, parses and validates it and drops
// redeliveries. It encrypts message content under per-subject data keys and
// routes the result to the messages, statuses, sync, dead-letter and audit
// topics. Everything one batch produces commits in one Kafka transaction
// together with the consumed offsets, so a crash at any point neither loses
// nor duplicates output.
package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/internal/retry"
	"github.com/syncguard/syncguard/schemas"
)

// batchTimeout bounds the work on one polled batch: rebuilding dedupe sets,
// producing and ending the transaction. It also bounds how long shutdown
// waits for the current batch.
const batchTimeout = 2 * time.Minute

// retryBackoff is the pause after an aborted batch before polling again, so
// that a broker outage does not turn into a hot loop. Start attempts begin
// with it and double up to startRetryMax.
const (
	retryBackoff  = time.Second
	startRetryMax = 30 * time.Second
)

// Options are the dependencies of a Processor.
type Options struct {
	Config   Config
	Kafka    kafkaclient.Config
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Keyring provides the pseudonym, envelope and master keys. Required.
	Keyring *keys.Keyring
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

type topicNames struct {
	raw, messages, statuses, sync, dlq, audit, keys, dedupe string
}

// Processor is the processor stage. Create it with New and start it with
// Run; one Processor runs once.
type Processor struct {
	cfg     Config
	kafka   kafkaclient.Config
	log     *slog.Logger
	ring    *keys.Keyring
	now     func() time.Time
	metrics *metrics
	topics  topicNames
	// apps maps an app name to its App Secrets.
	apps        map[string][][]byte
	envelopeKey []byte
	// sealer opens raw record values, which ingest encrypts.
	sealer *schemas.RawSealer

	keys    *keyStore
	dedupe  *dedupeState // used by the processing loop only
	ready   atomic.Bool
	started atomic.Bool
	// rawPartitions is the partition count of the raw topic, read at start.
	rawPartitions atomic.Int32

	// fetchWarnings rate-limits the log lines of fetch errors, which the
	// client may return on every poll while a partition is failing.
	fetchWarnings rateLimitedLog

	// invalidated collects the raw partitions that were assigned, revoked
	// or lost since the processing loop last looked. The group callbacks
	// append to it; the loop drops their dedupe sets.
	invalidatedMu sync.Mutex
	invalidated   []int32
}

// New checks opts and returns a Processor that is ready to Run.
func New(opts Options) (*Processor, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Kafka.Validate(); err != nil {
		return nil, err
	}
	if opts.Keyring == nil {
		return nil, errNoKeyring
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	p := &Processor{
		cfg:         opts.Config,
		kafka:       opts.Kafka,
		log:         log,
		ring:        opts.Keyring,
		now:         now,
		metrics:     m,
		apps:        make(map[string][][]byte, len(opts.Config.Apps)),
		envelopeKey: opts.Keyring.EnvelopeKey(),
		keys:        newKeyStore(opts.Keyring, opts.Config.KeyCacheMaxEntries),
		dedupe:      newDedupeState(opts.Config.DedupeMaxEntries),
	}
	for _, app := range opts.Config.Apps {
		for _, s := range app.Secrets {
			p.apps[app.Name] = append(p.apps[app.Name], []byte(s.Secret.Reveal()))
		}
	}
	t := func(suffix string) string { return opts.Kafka.Topic(suffix) }
	p.topics = topicNames{
		raw: t(schemas.TopicRaw), messages: t(schemas.TopicMessages), statuses: t(schemas.TopicStatuses),
		sync: t(schemas.TopicSync), dlq: t(schemas.TopicDLQ), audit: t(schemas.TopicAudit),
		keys: t(schemas.TopicKeys), dedupe: t(schemas.TopicDedupe),
	}
	sealer, err := schemas.NewRawSealer(p.envelopeKey)
	if err != nil {
		return nil, err
	}
	p.sealer = sealer
	if len(p.apps) == 0 {
		log.Warn("no WhatsApp apps configured: every WhatsApp record will be dead-lettered")
	}
	return p, nil
}

// Ready reports whether the processor has loaded its data keys and started
// its consumer group session.
func (p *Processor) Ready() bool { return p.ready.Load() }

// TransactionalID returns the transactional id this instance produces with.
func (p *Processor) TransactionalID() string {
	return p.kafka.TransactionalID(p.cfg.TransactionalID)
}

// Run processes raw records until ctx ends. On start it checks the topics
// and loads every data key from the keys topic. When ctx ends it stops
// polling, finishes the current batch, ends its transaction with a commit,
// leaves the group and closes its clients, in that order. It returns nil on
// such a clean stop. When Kafka fails in a way that a retry in the same
// session cannot fix, it replaces the session after a pause. It returns an
// error only when no session can be created.
func (p *Processor) Run(ctx context.Context) error {
	if p.started.Swap(true) {
		return errRunTwice
	}
	defer p.ready.Store(false)
	p.log.Info("processor starting", "group", p.cfg.Group, "transactional_id", p.TransactionalID(), "raw_topic", p.topics.raw)

	keyClient, err := p.startWithRetry(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// The key follower stops after the session is closed, so that keys that
	// other instances create keep arriving until the last batch is done.
	followCtx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
	var follower sync.WaitGroup
	follower.Go(func() { p.followKeys(followCtx, keyClient) })
	defer func() {
		stopFollow()
		follower.Wait()
		keyClient.Close()
	}()

	// A session that fails, for example because Kafka went away while a
	// transaction ended, is replaced after a pause: a new session resumes
	// from the committed offsets, as a restarted process would.
	backoff := retry.Backoff{Min: retryBackoff, Max: startRetryMax}
	for {
		sess, err := kgo.NewGroupTransactSession(p.sessionOpts()...)
		if err != nil {
			return fmt.Errorf("create transactional session: %w", err)
		}
		p.ready.Store(true)
		loopErr := p.loop(ctx, sess)
		p.ready.Store(false)
		sess.Close()
		if loopErr == nil || ctx.Err() != nil {
			p.log.Info("processor stopped")
			return loopErr
		}
		p.metrics.sessionRestarts.Inc()
		p.log.Error("processor session failed; starting a new one", "error", loopErr, "retry_in", backoff.Next())
		if backoff.Wait(ctx) != nil {
			p.log.Info("processor stopped")
			return nil
		}
	}
}

// startWithRetry calls start until it succeeds, ctx ends, or the topics
// turn out to be misconfigured. Kafka being down or the topics not existing
// yet are retried, and the processor stays unready meanwhile.
func (p *Processor) startWithRetry(ctx context.Context) (*kgo.Client, error) {
	backoff := retry.Backoff{Min: retryBackoff, Max: startRetryMax}
	for {
		cl, err := p.start(ctx)
		if err == nil {
			return cl, nil
		}
		var partitions *PartitionCountError
		if errors.As(err, &partitions) || ctx.Err() != nil {
			return nil, err
		}
		p.log.Warn("processor start failed; retrying", "error", err, "retry_in", backoff.Next())
		if err := backoff.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// start checks the partition counts and loads the data keys. It returns the
// client that read the keys topic, for the follower to continue with.
func (p *Processor) start(ctx context.Context) (*kgo.Client, error) {
	cl, err := p.kafka.NewClient(append(readerOpts(),
		kgo.ConsumeTopics(p.topics.keys),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return nil, err
	}
	if err := p.checkPartitions(ctx, kadm.NewClient(cl)); err != nil {
		cl.Close()
		return nil, err
	}

	began := time.Now()
	ends, err := kafkaclient.ReadEnds(ctx, kadm.NewClient(cl), p.topics.keys)
	if err == nil {
		err = consumeToEnd(ctx, cl, p.topics.keys, ends, p.keys.applyRecord)
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("load data keys: %w", err)
	}
	p.metrics.dataKeys.Set(float64(p.keys.len()))
	p.log.Info("data keys loaded", "subjects", p.keys.len(), "skipped_records", p.keys.skippedRecords(),
		"duration", time.Since(began).Round(time.Millisecond))
	return cl, nil
}

// checkPartitions makes sure that every raw partition has a dedupe
// partition of the same number, because markers go to the raw record's
// partition number.
func (p *Processor) checkPartitions(ctx context.Context, adm *kadm.Client) error {
	details, err := adm.ListTopics(ctx, p.topics.raw, p.topics.dedupe)
	if err == nil {
		err = details.Error()
	}
	if err != nil {
		return fmt.Errorf("check topics %s and %s: %w; syncguard run creates the topics once Kafka is reachable", p.topics.raw, p.topics.dedupe, err)
	}
	raw, dedupe := len(details[p.topics.raw].Partitions), len(details[p.topics.dedupe].Partitions)
	if dedupe < raw {
		return &PartitionCountError{Operation: "check topics", Topic: p.topics.dedupe, Have: dedupe, RawTopic: p.topics.raw, RawHave: raw}
	}
	p.rawPartitions.Store(int32(raw))
	return nil
}

func (p *Processor) sessionOpts() []kgo.Opt {
	onChange := func(event string) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, changed map[string][]int32) {
			p.invalidate(event, changed[p.topics.raw])
		}
	}
	opts := append(p.kafka.BaseOpts(), p.kafka.TransactOpts(p.cfg.TransactionalID)...)
	return append(opts,
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.topics.raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// read_committed so that records of aborted ingest or processor
		// transactions are never processed. Stable offset fetches
		// (KIP-447, RequireStableFetchOffsets) are always on in this
		// franz-go version, so a new owner of a partition waits for the
		// previous owner's transaction to end before it fetches.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(newOutputPartitioner(p.topics.dedupe)),
		kgo.OnPartitionsAssigned(onChange("assigned")),
		kgo.OnPartitionsRevoked(onChange("revoked")),
		kgo.OnPartitionsLost(onChange("lost")),
	)
}

// invalidate records raw partitions whose dedupe sets must be dropped: a
// revoked or lost partition is no longer ours, and a newly assigned one may
// have been processed by another instance since we last held it.
func (p *Processor) invalidate(event string, partitions []int32) {
	if len(partitions) == 0 {
		return
	}
	p.log.Info("raw partitions "+event, "partitions", partitions)
	p.invalidatedMu.Lock()
	p.invalidated = append(p.invalidated, partitions...)
	p.invalidatedMu.Unlock()
}

func (p *Processor) applyInvalidations() {
	p.invalidatedMu.Lock()
	parts := p.invalidated
	p.invalidated = nil
	p.invalidatedMu.Unlock()
	for _, part := range parts {
		p.dedupe.drop(part)
	}
	p.metrics.dedupeEntries.Set(float64(p.dedupe.entries()))
}

// loop polls and processes batches until ctx ends.
func (p *Processor) loop(ctx context.Context, sess *kgo.GroupTransactSession) error {
	for {
		fetches := sess.PollRecords(ctx, p.cfg.MaxPollRecords)
		if fetches.IsClientClosed() {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			if suppressed, ok := p.fetchWarnings.allow(time.Now()); ok {
				p.log.Warn("fetch failed", "topic", fe.Topic, "partition", fe.Partition, "error", fe.Err,
					"suppressed_since_last", suppressed)
			}
		}
		if fetches.NumRecords() > 0 {
			committed, err := p.processBatch(ctx, sess, fetches)
			if err != nil {
				return err
			}
			if !committed {
				// The session rewound to the committed offsets; the
				// same records come back with the next poll.
				select {
				case <-ctx.Done():
				case <-time.After(retryBackoff):
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// processBatch processes one polled batch in one transaction and reports
// whether it committed. It works on a context that shutdown does not
// cancel, so that a stop finishes the batch. An error means the session
// cannot continue.
func (p *Processor) processBatch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) (bool, error) {
	began := time.Now()
	workCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()

	p.applyInvalidations()
	if err := sess.Begin(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}

	b := newBatch(p.now())
	commit := true
	if err := p.prepareDedupe(workCtx, fetches); err != nil {
		p.log.Error("rebuilding dedupe sets failed; aborting the batch to retry", "error", err)
		commit = false
	}
	if commit {
		if err := p.processRecords(b, fetches); err != nil {
			// Abort, so that the open transaction does not hold back
			// read_committed consumers until it times out.
			if _, endErr := sess.End(workCtx, kgo.TryAbort); endErr != nil {
				p.log.Error("aborting the transaction failed", "error", endErr)
			}
			return false, err
		}
		results := sess.ProduceSync(workCtx, b.records...)
		if err := results.FirstErr(); err != nil {
			p.log.Error("producing the batch failed; aborting the transaction to retry", "records", len(b.records), "error", err)
			commit = false
		}
	}

	committed, err := sess.End(workCtx, kgo.TransactionEndTry(commit))
	if err != nil {
		return false, fmt.Errorf("end transaction: %w", err)
	}
	p.metrics.batchDuration.Observe(time.Since(began).Seconds())
	if !committed {
		p.metrics.transactions.WithLabelValues("aborted").Inc()
		p.log.Info("transaction aborted; the batch will be processed again", "raw_records", fetches.NumRecords())
		return false, nil
	}

	p.metrics.transactions.WithLabelValues("committed").Inc()
	p.applyCommitted(b)
	p.log.Debug("batch committed", "raw_records", fetches.NumRecords(), "output_records", len(b.records),
		"duration", time.Since(began))
	return true, nil
}

// prepareDedupe rebuilds the dedupe set of every raw partition in fetches
// that has none yet. Rebuilding only once records arrive is what makes the
// set complete: the group fetched the partition's offsets with
// RequireStable, so the previous owner's last transaction, markers
// included, had ended before these records were fetched.
func (p *Processor) prepareDedupe(ctx context.Context, fetches kgo.Fetches) error {
	var missing []int32
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic == p.topics.raw && len(fp.Records) > 0 && !p.dedupe.ready(fp.Partition) && !slices.Contains(missing, fp.Partition) {
			missing = append(missing, fp.Partition)
		}
	})
	for _, part := range missing {
		began := time.Now()
		set, err := p.rebuildDedupe(ctx, part)
		if err != nil {
			return err
		}
		p.dedupe.sets[part] = set
		p.metrics.rebuildSeconds.Observe(time.Since(began).Seconds())
		p.log.Info("dedupe set rebuilt", "partition", part, "entries", set.len(),
			"duration", time.Since(began).Round(time.Millisecond))
	}
	p.metrics.dedupeEntries.Set(float64(p.dedupe.entries()))
	return nil
}

// processRecords turns every raw record of fetches into output records.
func (p *Processor) processRecords(b *batch, fetches kgo.Fetches) error {
	var err error
	fetches.EachRecord(func(r *kgo.Record) {
		if err != nil || r.Topic != p.topics.raw {
			return
		}
		var outcome string
		outcome, err = p.processRecord(b, r)
		b.outcomes[outcome]++
	})
	return err
}

// applyCommitted makes the state that a committed batch created visible to
// later batches: its dedupe keys and its new data keys. An aborted batch
// never gets here, so its state is forgotten with it.
func (p *Processor) applyCommitted(b *batch) {
	for part, ks := range b.dedupeKeys {
		if !p.dedupe.ready(part) {
			continue // dropped by a rebalance; rebuilt from the topic later
		}
		for _, k := range ks {
			p.dedupe.add(part, k)
		}
	}
	for _, k := range b.newKeys {
		p.keys.add(k)
	}
	for outcome, n := range b.outcomes {
		p.metrics.records.WithLabelValues(outcome).Add(float64(n))
	}
	p.metrics.dedupeEntries.Set(float64(p.dedupe.entries()))
	p.metrics.dataKeys.Set(float64(p.keys.len()))
}

// followKeys keeps reading the keys topic after the initial load, so that
// tombstones that erase a subject's keys take effect here, and keys that
// other instances create can be reused. It returns when ctx ends.
func (p *Processor) followKeys(ctx context.Context, cl *kgo.Client) {
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			p.log.Warn("following the keys topic failed; retrying", "topic", errs[0].Topic,
				"partition", errs[0].Partition, "error", errs[0].Err, "errors", len(errs))
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryBackoff):
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				_ = p.keys.applyRecord(r) // counts bad records and always returns nil
			}
		})
		p.metrics.dataKeys.Set(float64(p.keys.len()))
	}
}

// fetchWarningInterval is the minimum time between two fetch error lines.
const fetchWarningInterval = 10 * time.Second

// rateLimitedLog lets one log line through per fetchWarningInterval and
// counts the lines it held back. Only the processing loop uses it.
type rateLimitedLog struct {
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged now and, if so, how many lines
// were held back since the last one.
func (l *rateLimitedLog) allow(now time.Time) (suppressed int, ok bool) {
	if now.Sub(l.last) < fetchWarningInterval {
		l.suppressed++
		return 0, false
	}
	suppressed, l.suppressed, l.last = l.suppressed, 0, now
	return suppressed, true
}
