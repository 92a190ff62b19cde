package sinks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/syncguard/syncguard/internal/keys"
	"github.com/syncguard/syncguard/schemas"
)

// checkpointMark is the newest checkpoint that the Writer wrote for one
// audit partition.
type checkpointMark struct {
	offset int64
	at     time.Time
}

// checkpointRetryDelay is how long the Writer waits after a failed
// checkpoint insert before it tries again, so that an idle Writer does not
// retry in a tight loop while ClickHouse is down.
const checkpointRetryDelay = time.Second

// errNoKeyring is the reason for turning checkpoints off when
// Options.Keyring is nil.
var errNoKeyring = errors.New("no keyring was given")

// checkpointSigner returns ring as a signer, or nil and the reason when it
// cannot sign checkpoints.
func checkpointSigner(ring *keys.Keyring) (CheckpointSigner, error) {
	if ring == nil {
		return nil, errNoKeyring
	}
	if ring.ActiveCheckpointKey() == "" {
		return nil, keys.ErrNoCheckpointKey
	}
	return ring, nil
}

// logCheckpointMode logs once at start whether checkpoints are written.
func (w *Writer) logCheckpointMode() {
	if !w.storesAudit() {
		return
	}
	switch {
	case w.signer != nil:
		w.logger.Info("writing signed audit checkpoints", "checkpoint_interval", w.cfg.CheckpointInterval)
	case errors.Is(w.checkpointOff, errNoKeyring):
		w.logger.Warn("audit checkpoints are off: no keyring was given, so rewriting the audit chain stays undetectable")
	default:
		w.logger.Error("audit checkpoints are off, so rewriting the audit chain stays undetectable", "error", w.checkpointOff)
	}
}

func (w *Writer) storesAudit() bool {
	_, ok := w.suffixes[w.kafka.Topic(schemas.TopicAudit)]
	return ok
}

// checkpointTips returns the stored chain tip of every audit partition
// whose chain advanced past its last checkpoint and, unless force is set,
// whose last checkpoint is at least sink.checkpoint_interval old. The
// caller makes sure that no audit row is pending, so every tip is stored.
func (w *Writer) checkpointTips(now time.Time, force bool) []checkpoint {
	audit := w.kafka.Topic(schemas.TopicAudit)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []checkpoint
	for tp, st := range w.parts {
		if tp.topic != audit || st.tipOffset < 0 {
			continue
		}
		mark, ok := w.marks[tp.partition]
		if ok && mark.offset >= st.tipOffset {
			continue
		}
		if ok && !force && now.Sub(mark.at) < w.cfg.CheckpointInterval {
			continue
		}
		out = append(out, checkpoint{Partition: tp.partition, Offset: st.tipOffset, Hash: st.tip})
	}
	return out
}

// nextCheckpointDue returns when the earliest owed checkpoint falls due,
// or false when no partition advanced past its last checkpoint.
func (w *Writer) nextCheckpointDue() (time.Time, bool) {
	if w.signer == nil {
		return time.Time{}, false
	}
	audit := w.kafka.Topic(schemas.TopicAudit)
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Time
	found := false
	for tp, st := range w.parts {
		if tp.topic != audit || st.tipOffset < 0 {
			continue
		}
		due := time.Now()
		if mark, ok := w.marks[tp.partition]; ok {
			if mark.offset >= st.tipOffset {
				continue
			}
			due = mark.at.Add(w.cfg.CheckpointInterval)
		}
		if !found || due.Before(next) {
			next, found = due, true
		}
	}
	if found && next.Before(w.checkpointRetryAt) {
		next = w.checkpointRetryAt
	}
	return next, found
}

// writeCheckpoints signs and inserts the checkpoints that checkpointTips
// returns. A failure is logged and counted, not retried here: the
// partitions stay owed and the next call tries them again.
func (w *Writer) writeCheckpoints(ctx context.Context, force bool) {
	if w.signer == nil {
		return
	}
	now := time.Now()
	if !force && now.Before(w.checkpointRetryAt) {
		return
	}
	tips := w.checkpointTips(now, force)
	if len(tips) == 0 {
		return
	}

	// Sign every tip, then insert them all in one INSERT.
	db := w.cfg.ClickHouse.Database
	signedAt := w.now().UTC()
	cps := make([]checkpoint, 0, len(tips))
	for _, tip := range tips {
		cp, err := signCheckpoint(w.signer, db, tip.Partition, tip.Offset, tip.Hash, signedAt)
		if err != nil {
			w.metrics.checkpointErrors.Inc()
			w.limited.log(slog.LevelError, "checkpoint:sign", "signing an audit checkpoint failed", "error", err)
			w.checkpointRetryAt = now.Add(checkpointRetryDelay)
			return
		}
		cps = append(cps, cp)
	}
	if err := insertCheckpoints(ctx, w.conn, db, cps); err != nil {
		w.metrics.checkpointErrors.Inc()
		w.checkpointRetryAt = now.Add(checkpointRetryDelay)
		if ctx.Err() == nil {
			w.limited.log(slog.LevelWarn, "checkpoint:insert", "inserting audit checkpoints failed; retrying after the next flush",
				"checkpoints", len(cps), "error", err)
		}
		return
	}

	for _, cp := range cps {
		w.marks[cp.Partition] = checkpointMark{offset: cp.Offset, at: now}
	}
	w.metrics.checkpoints.Add(float64(len(cps)))
	w.logger.Debug("wrote audit checkpoints", "checkpoints", len(cps), "forced", force)
}
