package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/schemas"
)

// Options are the dependencies of a Writer.
type Options struct {
	Config   Config
	Kafka    kafkaclient.Config
	Logger   *slog.Logger          // already carries component=sink; discards when nil
	Registry prometheus.Registerer // a private registry when nil
	// Now returns the inserted_at time of rows and the signed_at time of
	// checkpoints; time.Now when nil.
	Now func() time.Time
	// Keyring signs audit chain checkpoints. When it is nil the Writer
	// writes no checkpoints and warns about it once at start.
	Keyring *keys.Keyring
}

// Writer consumes the sink topics and writes their records into
// ClickHouse, exactly once and in offset order per partition.
//
// Each flush sends one INSERT per table and commits the Kafka offsets only
// after every INSERT succeeded. When a partition is assigned, the Writer
// reads from its table which offsets are already stored and skips those
// records, so a crash between an INSERT and its commit neither loses nor
// duplicates rows. While ClickHouse fails, the Writer retries with backoff,
// commits nothing and reports not ready.
//
// NOTE: rebalances wait while a flush retries. If a failing flush outlasts
// the group's rebalance timeout, the group drops this member and another
// one resumes from ClickHouse; a retry of this member racing that
// resumption could then store a row twice.
type Writer struct {
	cfg     Config
	kafka   kafkaclient.Config
	logger  *slog.Logger
	limited *limitedLogger
	metrics *metrics
	now     func() time.Time
	// suffixes maps full topic names to their suffixes.
	suffixes map[string]string

	started atomic.Bool
	ready   atomic.Bool

	// Set by Run before consuming.
	conn   driver.Conn
	client *kgo.Client

	// mu guards parts and lag, which the partition callbacks reset from
	// the group management goroutine.
	mu    sync.Mutex
	parts map[topicPartition]*partitionState
	lag   map[topicPartition]int64

	pending *pendingBatch

	// signer signs checkpoints; nil turns them off. checkpointOff is the
	// reason, logged at start.
	signer        CheckpointSigner
	checkpointOff error
	// marks holds the newest checkpoint that this Writer wrote per audit
	// partition. Only the consume goroutine uses it.
	marks map[int32]checkpointMark
	// checkpointRetryAt delays the next attempt after a failed one.
	checkpointRetryAt time.Time

	// skipCommit makes the Writer insert rows but never commit offsets;
	// tests use it to act out a crash between the two.
	skipCommit bool
}

// New returns a Writer for the configured topics. It connects to nothing
// until Run.
func New(opts Options) (*Writer, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Kafka.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
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

	w := &Writer{
		cfg:      opts.Config,
		kafka:    opts.Kafka,
		logger:   logger,
		limited:  newLimitedLogger(logger, 10*time.Second),
		metrics:  m,
		now:      now,
		suffixes: make(map[string]string),
		parts:    make(map[topicPartition]*partitionState),
		lag:      make(map[topicPartition]int64),
		pending:  newPendingBatch(),
		marks:    make(map[int32]checkpointMark),
	}
	w.signer, w.checkpointOff = checkpointSigner(opts.Keyring)
	for _, s := range opts.Config.Topics {
		w.suffixes[opts.Kafka.Topic(s)] = s
	}
	return w, nil
}

// Ready reports whether the Writer is connected and its last ClickHouse
// request succeeded.
func (w *Writer) Ready() bool { return w.ready.Load() }

// Run connects, applies the migrations when sinks.migrate is set, and
// writes records until ctx ends. Then it stops fetching, flushes the
// pending rows, commits their offsets and closes its clients, and returns
// nil. Errors of ClickHouse and Kafka are retried, not returned.
func (w *Writer) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("BUG: sinks.Writer.Run called twice")
	}
	defer w.ready.Store(false)

	conn, err := w.connect(ctx)
	if err != nil {
		return nil // ctx ended before ClickHouse accepted a connection
	}
	w.conn = conn
	defer func() {
		if err := conn.Close(); err != nil {
			w.logger.Warn("closing the clickhouse connection failed", "addr", w.cfg.ClickHouse.Addr, "error", err)
		}
	}()

	topics := make([]string, 0, len(w.suffixes))
	for topic := range w.suffixes {
		topics = append(topics, topic)
	}
	opts := append(w.kafka.GroupOpts(),
		kgo.ConsumerGroup(w.cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(w.onAssigned),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onRevoked),
	)
	client, err := w.kafka.NewClient(opts...)
	if err != nil {
		return err
	}
	w.client = client

	w.logger.Info("sink started", "group", w.cfg.Group, "topics", topics,
		"database", w.cfg.ClickHouse.Database, "batch_max_rows", w.cfg.BatchMaxRows,
		"flush_interval", w.cfg.FlushInterval)
	w.logCheckpointMode()
	w.ready.Store(true)
	w.consume(ctx)

	// Shutdown order: fetching stopped when ctx ended; flush the pending
	// rows and commit their offsets, then leave the group and close.
	w.ready.Store(false)
	w.shutdown()
	w.logger.Info("sink stopped")
	return nil
}

// connect opens ClickHouse and applies the migrations, retrying both until
// they succeed or ctx ends.
func (w *Writer) connect(ctx context.Context) (driver.Conn, error) {
	var conn driver.Conn
	b := newBackoff()
	for {
		var err error
		if conn == nil {
			conn, err = OpenClickHouse(ctx, w.cfg.ClickHouse)
		}
		if err == nil && w.cfg.Migrate {
			err = Migrate(ctx, conn, w.cfg.ClickHouse.Database, w.logger)
		}
		if err == nil {
			return conn, nil
		}
		if ctx.Err() == nil {
			w.limited.log(slog.LevelWarn, "connect", "clickhouse not available, retrying",
				"addr", w.cfg.ClickHouse.Addr, "error", err)
		}
		if werr := b.Wait(ctx); werr != nil {
			if conn != nil {
				_ = conn.Close()
			}
			return nil, werr
		}
	}
}

// consume polls, converts and flushes until ctx ends.
func (w *Writer) consume(ctx context.Context) {
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if !w.pending.empty() {
			pollCtx, cancel = context.WithDeadline(ctx, w.pending.deadline(w.cfg.FlushInterval))
		} else if due, ok := w.nextCheckpointDue(); ok {
			// Wake up for a checkpoint that falls due while no record
			// arrives, so an idle partition's tail gets anchored too.
			pollCtx, cancel = context.WithDeadline(ctx, due)
		}
		fetches := w.client.PollRecords(pollCtx, w.cfg.BatchMaxRows-w.pending.rows)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		w.logFetchErrors(fetches)

		if err := w.addFetches(ctx, fetches); err != nil {
			return // ctx ended while a partition's state was loading
		}
		w.publishLag()

		if w.pending.due(time.Now(), w.cfg.BatchMaxRows, w.cfg.FlushInterval) {
			if err := w.flush(ctx); err != nil {
				return // ctx ended while an insert was retried
			}
		}
		if w.pending.empty() {
			// Every tip is a stored row now, so it may be checkpointed.
			w.writeCheckpoints(ctx, false)
			w.client.AllowRebalance()
		}
	}
}

func (w *Writer) logFetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return // the flush timer of PollRecords
		}
		w.limited.log(slog.LevelWarn, "fetch", "kafka fetch failed",
			"topic", topic, "partition", partition, "error", err)
	})
}

// addFetches turns every fetched record into a pending row, or skips it
// when its table already stores it.
func (w *Writer) addFetches(ctx context.Context, fetches kgo.Fetches) error {
	var err error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		// With read_committed, records past the last stable offset cannot
		// be fetched yet, so they do not count as lag.
		end := p.HighWatermark
		if p.LastStableOffset >= 0 {
			end = min(end, p.LastStableOffset)
		}
		last := p.Records[len(p.Records)-1].Offset
		w.mu.Lock()
		w.lag[topicPartition{p.Topic, p.Partition}] = max(end-last-1, 0)
		w.mu.Unlock()
		err = w.addPartition(ctx, p.Topic, p.Partition, p.Records)
	})
	return err
}

func (w *Writer) addPartition(ctx context.Context, topic string, partition int32, records []*kgo.Record) error {
	suffix, ok := w.suffixes[topic]
	if !ok {
		return fmt.Errorf("BUG: fetched unsubscribed topic %s", topic)
	}
	t := tableForTopic(suffix)
	tp := topicPartition{topic, partition}
	st, err := w.partitionState(ctx, t, tp, records[0].Offset)
	if err != nil {
		return err
	}

	now := w.now().UTC().Truncate(time.Second)
	for _, rec := range records {
		if st.alreadyStored(rec.Offset) {
			w.metrics.recordsSkipped.WithLabelValues(t.name).Inc()
			w.pending.handled(rec, t, nil, time.Now())
			continue
		}
		values, err := w.rowValues(rec, suffix, st, now)
		if err != nil {
			w.metrics.recordsUndecodable.WithLabelValues(t.name).Inc()
			w.limited.log(slog.LevelWarn, "undecodable:"+t.name, "skipped undecodable record",
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "error", err)
			w.pending.handled(rec, t, nil, time.Now())
			continue
		}
		w.pending.handled(rec, t, &row{
			topic:     rec.Topic,
			partition: rec.Partition,
			offset:    rec.Offset,
			values:    values,
		}, time.Now())
	}
	return nil
}

// rowValues converts rec into the values of its table's row. Audit records
// always get a row, linked into the partition's chain; an undecodable
// record of another topic returns an error and gets none.
func (w *Writer) rowValues(rec *kgo.Record, suffix string, st *partitionState, insertedAt time.Time) ([]any, error) {
	switch suffix {
	case schemas.TopicAudit:
		r, err := auditRowFromRecord(rec)
		if err != nil {
			w.metrics.recordsUndecodable.WithLabelValues(auditTable.name).Inc()
			w.limited.log(slog.LevelWarn, "undecodable:audit", "stored undecodable audit record as a parse error row",
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "error", err)
		}
		r.link(st.tip)
		st.tip, st.tipOffset = r.Hash, rec.Offset
		return r.values(), nil
	case schemas.TopicMessages, schemas.TopicSync:
		return messageValues(rec, suffix == schemas.TopicSync, insertedAt)
	case schemas.TopicStatuses:
		return statusValues(rec, insertedAt)
	case schemas.TopicAlerts:
		return alertValues(rec, insertedAt)
	}
	return nil, fmt.Errorf("BUG: no table for topic suffix %q", suffix)
}

// partitionState returns the state of tp, loading it from ClickHouse on
// the partition's first fetch after an assignment. It retries until the
// load succeeds or ctx ends.
func (w *Writer) partitionState(ctx context.Context, t *table, tp topicPartition, from int64) (*partitionState, error) {
	w.mu.Lock()
	st := w.parts[tp]
	w.mu.Unlock()
	if st != nil {
		return st, nil
	}

	b := newBackoff()
	for {
		st, err := loadPartitionState(ctx, w.conn, w.cfg.ClickHouse.Database, t, tp, from)
		if err == nil {
			w.mu.Lock()
			w.parts[tp] = st
			w.mu.Unlock()
			w.ready.Store(true)
			w.logger.Info("resuming partition", "topic", tp.topic, "partition", tp.partition,
				"table", t.name, "from_offset", from, "stored_after", len(st.stored), "stored_through", st.storedThrough)
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		w.ready.Store(false)
		w.limited.log(slog.LevelWarn, "resume", "reading stored offsets failed, retrying",
			"topic", tp.topic, "partition", tp.partition, "error", err)
		if err := b.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// flush inserts the pending rows, one INSERT per table, and then commits
// the offsets of every handled record. It returns an error only when ctx
// ends first; then nothing is committed.
func (w *Writer) flush(ctx context.Context) error {
	for _, tr := range w.pending.tables {
		if err := w.insertWithRetry(ctx, tr); err != nil {
			return err
		}
	}
	if !w.skipCommit && len(w.pending.commit) > 0 {
		if err := w.client.CommitRecords(ctx, w.pending.records()...); err != nil {
			if ctx.Err() != nil {
				// Keep the offsets for the commit of the final flush.
				return ctx.Err()
			}
			// The rows are stored, and the next owner of the partition
			// reads which ones from ClickHouse and skips them.
			w.metrics.commitErrors.Inc()
			w.limited.log(slog.LevelWarn, "commit", "kafka offset commit failed", "error", err)
		}
	}
	w.pending.reset()
	return nil
}

func (w *Writer) insertWithRetry(ctx context.Context, tr *tableRows) error {
	b := newBackoff()
	for {
		err := w.tryInsert(ctx, tr)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.metrics.insertErrors.WithLabelValues(tr.table.name).Inc()
		w.ready.Store(false)
		w.limited.log(slog.LevelWarn, "insert:"+tr.table.name, "clickhouse insert failed, retrying",
			"table", tr.table.name, "rows", len(tr.rows), "error", err)
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

// tryInsert sends one INSERT of tr's rows. On a repeated attempt it first
// drops the rows that an earlier, failed-looking attempt stored anyway.
func (w *Writer) tryInsert(ctx context.Context, tr *tableRows) error {
	db := w.cfg.ClickHouse.Database
	if tr.attempted {
		stored, err := storedOffsets(ctx, w.conn, db, tr)
		if err != nil {
			return err
		}
		if n := tr.dropStored(stored); n > 0 {
			w.metrics.rowsWritten.WithLabelValues(tr.table.name).Add(float64(n))
			w.logger.Info("a failed insert stored rows anyway; not repeating them", "table", tr.table.name, "rows", n)
		}
	}
	if len(tr.rows) == 0 {
		return nil
	}

	tr.attempted = true
	start := time.Now()
	if err := insertRows(ctx, w.conn, db, tr); err != nil {
		return err
	}
	w.metrics.insertDuration.WithLabelValues(tr.table.name).Observe(time.Since(start).Seconds())
	w.metrics.rowsWritten.WithLabelValues(tr.table.name).Add(float64(len(tr.rows)))
	w.ready.Store(true)
	tr.rows = nil
	return nil
}

func insertRows(ctx context.Context, conn driver.Conn, database string, tr *tableRows) error {
	batch, err := conn.PrepareBatch(ctx, tr.table.insertSQL(database))
	if err != nil {
		return &InsertError{Table: tr.table.name, Rows: len(tr.rows), Err: err}
	}
	// Close does nothing after Send. On an early return it ends the INSERT
	// without the buffered rows, and the function returns the Append error.
	defer func() { _ = batch.Close() }()

	for _, r := range tr.rows {
		if err := batch.Append(r.values...); err != nil {
			return &InsertError{Table: tr.table.name, Rows: len(tr.rows), Err: err}
		}
	}
	if err := batch.Send(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &InsertError{Table: tr.table.name, Rows: len(tr.rows), Err: err}
	}
	return nil
}

// shutdown flushes and commits what is pending, bounded by
// sinks.shutdown_timeout, writes a checkpoint of every audit partition
// whose chain advanced since its last one, and closes the Kafka client.
// Records that could not be flushed stay uncommitted and are read again
// after a restart.
func (w *Writer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout)
	defer cancel()
	if !w.pending.empty() {
		if err := w.flush(ctx); err != nil {
			w.logger.Warn("final flush did not finish; its records are read again after a restart",
				"rows", w.pending.rows, "error", err)
		}
	}
	// Anchor every partition's stored tail, unless rows are still pending:
	// then the tips include rows that ClickHouse does not hold.
	if w.pending.empty() {
		w.writeCheckpoints(ctx, true)
	}
	w.client.CloseAllowingRebalance()
}

// onAssigned drops the state of newly assigned partitions, so that their
// first fetch reloads it from ClickHouse, because another member may have
// written them since this one last owned them.
func (w *Writer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	w.forget(assigned)
}

// onRevoked drops the state of revoked or lost partitions. Offsets need no
// commit here, because BlockRebalanceOnPoll lets a rebalance run only
// between flushes and each flush commits its own offsets.
func (w *Writer) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	w.forget(revoked)
}

func (w *Writer) forget(partitions map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for topic, ps := range partitions {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			delete(w.parts, tp)
			delete(w.lag, tp)
		}
	}
}

// publishLag sets the lag gauge of every topic to its sum over partitions.
func (w *Writer) publishLag() {
	sums := make(map[string]int64, len(w.cfg.Topics))
	for _, s := range w.cfg.Topics {
		sums[s] = 0
	}
	w.mu.Lock()
	for tp, lag := range w.lag {
		sums[w.suffixes[tp.topic]] += lag
	}
	w.mu.Unlock()
	for s, lag := range sums {
		w.metrics.lag.WithLabelValues(s).Set(float64(lag))
	}
}
