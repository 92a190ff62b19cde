package main

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// histogramSnapshot contains the cumulative bucket counts of one histogram
// family, summed over its series, so that two snapshots give the
// distribution of what was observed between them.
type histogramSnapshot struct {
	bounds []float64
	counts []uint64
	total  uint64
}

// snapshotHistogram reads the histogram called name from g. A family that
// is missing or not a histogram gives an empty snapshot.
func snapshotHistogram(g prometheus.Gatherer, name string) (histogramSnapshot, error) {
	families, err := g.Gather()
	if err != nil {
		return histogramSnapshot{}, fmt.Errorf("gather metrics: %w", err)
	}
	var s histogramSnapshot
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			if s.bounds == nil {
				for _, b := range h.GetBucket() {
					s.bounds = append(s.bounds, b.GetUpperBound())
				}
				s.counts = make([]uint64, len(s.bounds))
			}
			for i, b := range h.GetBucket() {
				if i < len(s.counts) {
					s.counts[i] += b.GetCumulativeCount()
				}
			}
			s.total += h.GetSampleCount()
		}
	}
	return s, nil
}

// quantileSince returns the upper bound of the bucket that contains quantile
// q of the observations made after before was taken, and how many there
// were. A quantile above the last bucket gives the largest time.Duration.
func (s histogramSnapshot) quantileSince(before histogramSnapshot, q float64) (time.Duration, uint64) {
	n := s.total - before.total
	if n == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	for i, bound := range s.bounds {
		var prev uint64
		if i < len(before.counts) {
			prev = before.counts[i]
		}
		if s.counts[i]-prev >= rank {
			return time.Duration(bound * float64(time.Second)), n
		}
	}
	return time.Duration(math.MaxInt64), n
}

// formatBucketBound formats a bound that quantileSince returned.
func formatBucketBound(d time.Duration) string {
	if d == time.Duration(math.MaxInt64) {
		return "above the last bucket"
	}
	return d.String()
}
