package sinks

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/syncguard/syncguard/internal/retry"
)

// newBackoff returns the retry delay of the sink's attempts to reach
// ClickHouse.
func newBackoff() *retry.Backoff {
	return &retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
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
