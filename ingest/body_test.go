package ingest

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"testing/iotest"
)

func TestReadLimitedReadsWholeBody(t *testing.T) {
	for _, tc := range []struct {
		size     int
		sizeHint int64
	}{
		{0, 0},
		{1, 1},
		{defaultReadHint, defaultReadHint},
		{defaultReadHint + 1, defaultReadHint + 1},
		{256 << 10, 256 << 10},
		{100_000, -1},
		{3 * defaultReadHint, 10}, // a hint that is too small
	} {
		want := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
		// HalfReader returns half of the bytes each Read requests, so the
		// buffer fills in many steps.
		got, err := readLimited(iotest.HalfReader(bytes.NewReader(want)), tc.sizeHint)
		if err != nil {
			t.Fatalf("size %d hint %d: %v", tc.size, tc.sizeHint, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("size %d hint %d: read %d bytes that differ from the body", tc.size, tc.sizeHint, len(got))
		}
	}
}

// TestReadLimitedDefersAllocation declares a 256 KiB body that never
// arrives: readLimited must not reserve the declared size up front.
func TestReadLimitedDefersAllocation(t *testing.T) {
	stalled := iotest.TimeoutReader(bytes.NewReader(make([]byte, 10)))
	// Warm up, so that only readLimited's own allocations are measured.
	_, _ = readLimited(bytes.NewReader(nil), 0)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readLimited(iotest.OneByteReader(stalled), 256<<10)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("error = %v, want the reader's timeout", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 64<<10 {
		t.Errorf("readLimited allocated %d bytes for a body that sent 1 byte, want at most 64 KiB", allocated)
	}
}
