package sinks

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"
	"time"
)

// GenesisHash is the prev_hash of the first audit row of every partition.
var GenesisHash = strings.Repeat("0", 64)

// canonicalVersion starts every canonical encoding, so that a future change
// of the encoding cannot produce the same bytes for a different row.
const canonicalVersion = "syncguard.audit_log.v1"

// auditRow is one audit_log row, typed exactly as ClickHouse stores it, so
// that the writer hashes the same values that the verifier reads back.
type auditRow struct {
	Time           uint32 // DateTime: Unix seconds
	TimeNS         uint32 // nanoseconds within the second
	ID             string
	Stage          string
	Action         string
	Route          string
	Outcome        string
	Reason         string
	Source         string
	Account        string
	Subject        string
	Device         string
	MessageID      string
	RequestID      string
	Status         uint16
	BytesIn        uint32
	BytesOut       uint32
	LatencySeconds float64
	Detail         string
	Partition      int32
	Offset         int64
	PrevHash       string // hex, 64 characters
	Hash           string // hex, 64 characters
}

// canonicalAuditRow encodes every column of r except prev_hash and hash.
// Each field is a 4-byte big-endian length followed by its bytes, and
// numbers are fixed-width big-endian, so no two different rows encode alike.
// The writer and VerifyChain both hash this encoding: changing it breaks
// the verification of every stored chain.
func canonicalAuditRow(r *auditRow) []byte {
	b := make([]byte, 0, 256)
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	str := func(s string) { field([]byte(s)) }
	u64 := func(v uint64) { field(binary.BigEndian.AppendUint64(nil, v)) }

	str(canonicalVersion)
	u64(uint64(r.Time))
	u64(uint64(r.TimeNS))
	str(r.ID)
	str(r.Stage)
	str(r.Action)
	str(r.Route)
	str(r.Outcome)
	str(r.Reason)
	str(r.Source)
	str(r.Account)
	str(r.Subject)
	str(r.Device)
	str(r.MessageID)
	str(r.RequestID)
	u64(uint64(r.Status))
	u64(uint64(r.BytesIn))
	u64(uint64(r.BytesOut))
	u64(math.Float64bits(r.LatencySeconds))
	str(r.Detail)
	u64(uint64(int64(r.Partition)))
	u64(uint64(r.Offset))
	return b
}

// chainHash returns hex(SHA-256(prevHash || canonicalAuditRow(r))), where
// prevHash is the 64 hex characters of the previous row's hash.
func chainHash(prevHash string, r *auditRow) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write(canonicalAuditRow(r))
	return hex.EncodeToString(h.Sum(nil))
}

// link sets r.PrevHash to prevHash and r.Hash to the row's chain hash.
func (r *auditRow) link(prevHash string) {
	r.PrevHash = prevHash
	r.Hash = chainHash(prevHash, r)
}

// splitTime returns the DateTime seconds and the nanoseconds of t, clamped
// to the range that a ClickHouse DateTime holds.
func splitTime(t time.Time) (sec, nsec uint32) {
	t = clampDateTime(t)
	return uint32(t.Unix()), uint32(t.Nanosecond())
}

var (
	minDateTime = time.Unix(0, 0).UTC()
	maxDateTime = time.Date(2105, 12, 31, 23, 59, 59, 0, time.UTC)
)

// clampDateTime maps times outside the DateTime range (1970 to 2105), such
// as the zero time, to the nearest end of that range, because ClickHouse
// would otherwise store them wrapped around.
func clampDateTime(t time.Time) time.Time {
	switch {
	case t.Before(minDateTime):
		return minDateTime
	case t.After(maxDateTime):
		return maxDateTime
	}
	return t
}
