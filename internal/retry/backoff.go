// Package retry provides the doubling pause that SyncGuard's workers take
// between attempts to reach Kafka or ClickHouse.
package retry

import (
	"context"
	"time"
)

// Backoff is a retry delay that starts at Min and doubles after each Wait,
// up to Max. Set both fields, because a zero Min never waits.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the delay the next Wait sleeps.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		return b.Min
	}
	return b.next
}

// Wait sleeps for Next, then doubles the delay up to Max. It returns
// ctx.Err() if ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error {
	d := b.Next()
	b.next = min(2*d, b.Max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
