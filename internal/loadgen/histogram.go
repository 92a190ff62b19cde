package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout, as in HdrHistogram: values below 2^subBucketBits have
// a bucket each. Above, every power-of-two range is split into
// 2^subBucketBits buckets of equal width. A bucket is thus at most 1/128
// (0.8%) of its values wide, which bounds the relative error of every
// percentile. Values are nanoseconds, so the buckets cover 0 ns to 292
// years in (63-7+1)*128 = 7296 counters.
const (
	subBucketBits  = 7
	subBucketCount = 1 << subBucketBits
	bucketCount    = (63 - subBucketBits + 1) * subBucketCount
)

// Histogram records durations in log-linear buckets, with at most 0.8%
// relative error and a fixed 57 KiB of counters. Record is safe for
// concurrent use and takes no lock. Reads while records are in flight see
// a state that may be off by the records in flight.
type Histogram struct {
	counts [bucketCount]atomic.Int64
	total  atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64
	max    atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketIndex returns the bucket of v, which must not be negative.
func bucketIndex(v int64) int {
	if v < subBucketCount {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - 1 // position of the top bit, >= subBucketBits
	shift := exp - subBucketBits
	mantissa := v >> shift // in [subBucketCount, 2*subBucketCount)
	return (shift+1)*subBucketCount + int(mantissa-subBucketCount)
}

// bucketHigh returns the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < subBucketCount {
		return int64(i)
	}
	shift := i/subBucketCount - 1
	mantissa := int64(i%subBucketCount + subBucketCount)
	return (mantissa+1)<<shift - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketIndex(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() int64 { return h.total.Load() }

// Max returns the largest recorded duration, exactly, or 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Min returns the smallest recorded duration, exactly, or 0 when empty.
func (h *Histogram) Min() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.min.Load())
}

// Mean returns the exact mean of the recorded durations, or 0 when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the duration below or at which a share q (0 to 1) of
// the recorded durations lie: the upper bound of the bucket that contains the
// ceil(q*n)-th smallest value, capped at Max. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	rank := min(max(int64(math.Ceil(q*float64(n))), 1), n)
	maxValue := h.max.Load()
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), maxValue))
		}
	}
	return time.Duration(maxValue)
}

// Merge adds every recorded duration of other to h.
func (h *Histogram) Merge(other *Histogram) {
	if other.Count() == 0 {
		return
	}
	for i := range other.counts {
		if c := other.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(other.total.Load())
	h.sum.Add(other.sum.Load())
	for {
		cur, v := h.max.Load(), other.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur, v := h.min.Load(), other.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
}

// LatencySummary is a fixed set of percentiles of a Histogram.
type LatencySummary struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean"`
	P50   time.Duration `json:"p50"`
	P90   time.Duration `json:"p90"`
	P99   time.Duration `json:"p99"`
	P999  time.Duration `json:"p999"`
	Max   time.Duration `json:"max"`
}

// Summary returns the histogram's percentiles.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{
		Count: h.Count(),
		Mean:  h.Mean(),
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		P999:  h.Quantile(0.999),
		Max:   h.Max(),
	}
}
