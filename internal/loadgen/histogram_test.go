package loadgen

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistogramSmallValuesExact(t *testing.T) {
	h := NewHistogram()
	for v := range 100 {
		h.Record(time.Duration(v + 1)) // 1ns .. 100ns
	}
	f := func(q float64, want time.Duration) {
		t.Helper()
		if got := h.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %d, want %d", q, got, want)
		}
	}
	f(0.5, 50)
	f(0.9, 90)
	f(0.99, 99)
	f(1, 100)
	f(0, 1)
}

func TestHistogramPercentilesWithinError(t *testing.T) {
	h := NewHistogram()
	// 1ms .. 10s in a shuffled order, 10000 values.
	values := make([]time.Duration, 10000)
	for i := range values {
		values[i] = time.Duration(i+1) * time.Millisecond
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
	for _, v := range values {
		h.Record(v)
	}

	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5000 * time.Millisecond},
		{0.9, 9000 * time.Millisecond},
		{0.99, 9900 * time.Millisecond},
		{0.999, 9990 * time.Millisecond},
	}
	for _, c := range cases {
		got := h.Quantile(c.q)
		// The quantile is the upper bound of a bucket at most 1/128 wide.
		if got < c.want || float64(got-c.want) > float64(c.want)/128 {
			t.Errorf("Quantile(%v) = %s, want %s within 1/128", c.q, got, c.want)
		}
	}
	if h.Max() != 10*time.Second {
		t.Errorf("Max = %s, want 10s", h.Max())
	}
	if h.Min() != time.Millisecond {
		t.Errorf("Min = %s, want 1ms", h.Min())
	}
	if h.Count() != 10000 {
		t.Errorf("Count = %d", h.Count())
	}
	if want := 5000500 * time.Microsecond; h.Mean() != want {
		t.Errorf("Mean = %s, want %s", h.Mean(), want)
	}
}

func TestHistogramQuantileAgainstSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := NewHistogram()
	values := make([]time.Duration, 5000)
	for i := range values {
		// Log-normal-ish spread from microseconds to seconds.
		values[i] = time.Duration(rng.ExpFloat64() * float64(rng.IntN(1000)+1) * float64(time.Millisecond))
		h.Record(values[i])
	}
	slices.Sort(values)
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
		exact := values[int(q*float64(len(values)))-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/128+1 {
			t.Errorf("Quantile(%v) = %s, exact %s", q, got, exact)
		}
	}
}

func TestHistogramBucketsCoverRange(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 257, 1 << 20, 1<<62 + 12345, 1<<63 - 1} {
		i := bucketIndex(v)
		if i < 0 || i >= bucketCount {
			t.Fatalf("bucketIndex(%d) = %d, out of range", v, i)
		}
		if high := bucketHigh(i); high < v {
			t.Errorf("bucketHigh(bucketIndex(%d)) = %d, below the value", v, high)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Errorf("value %d also fits the bucket before %d", v, i)
		}
	}
}

func TestHistogramConcurrentAndMerge(t *testing.T) {
	h := NewHistogram()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(time.Duration(w*1000+i+1) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if h.Count() != 4000 || h.Max() != 4000*time.Microsecond || h.Min() != time.Microsecond {
		t.Fatalf("count %d max %s min %s", h.Count(), h.Max(), h.Min())
	}

	other := NewHistogram()
	other.Record(time.Hour)
	h.Merge(other)
	if h.Count() != 4001 || h.Max() != time.Hour {
		t.Errorf("after merge: count %d max %s", h.Count(), h.Max())
	}
	empty := NewHistogram()
	if empty.Quantile(0.5) != 0 || empty.Min() != 0 || empty.Mean() != 0 {
		t.Error("empty histogram should report zeros")
	}
	h.Merge(empty)
	if h.Min() != time.Microsecond {
		t.Errorf("merging an empty histogram changed Min to %s", h.Min())
	}
}
