package sinks

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// backoff doubles a retry delay from minDelay up to maxDelay.
type backoff struct {
	minDelay, maxDelay time.Duration
	next               time.Duration
}

func newBackoff() *backoff {
	return &backoff{minDelay: 100 * time.Millisecond, maxDelay: 5 * time.Second}
}

// wait sleeps for the next delay and returns ctx.Err() if ctx ends first.
func (b *backoff) wait(ctx context.Context) error {
	if b.next == 0 {
		b.next = b.minDelay
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.maxDelay)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// limitedLogger logs at most one message per key and interval, and adds how
// many it suppressed since the last one. Keys are fixed strings, so its map
// stays small.
type limitedLogger struct {
	logger   *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newLimitedLogger(logger *slog.Logger, interval time.Duration) *limitedLogger {
	return &limitedLogger{
		logger:     logger,
		interval:   interval,
		last:       make(map[string]time.Time),
		suppressed: make(map[string]int),
	}
}

func (l *limitedLogger) log(level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if last, ok := l.last[key]; ok && now.Sub(last) < l.interval {
		l.suppressed[key]++
		l.mu.Unlock()
		return
	}
	n := l.suppressed[key]
	l.last[key] = now
	l.suppressed[key] = 0
	l.mu.Unlock()

	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.logger.Log(context.Background(), level, msg, args...)
}
