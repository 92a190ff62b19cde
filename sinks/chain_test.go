package sinks

import (
	"testing"
	"time"
)

func sampleAuditRow() auditRow {
	return auditRow{
		Time:           1700000000,
		TimeNS:         123456789,
		ID:             "evt-1",
		Stage:          "ingest",
		Action:         "http_request",
		Route:          "/v1/sync/events",
		Outcome:        "accepted",
		Reason:         "ok",
		Source:         "203.0.113.7",
		Account:        "acct",
		Subject:        "subj",
		Device:         "dev",
		MessageID:      "wamid.1",
		RequestID:      "req-1",
		Status:         202,
		BytesIn:        512,
		BytesOut:       64,
		LatencySeconds: 0.25,
		Partition:      1,
		Offset:         42,
	}
}

// TestChainHashGolden pins the canonical encoding. The expected value was
// computed by an independent Python implementation of the encoding that
// canonicalAuditRow documents; if it changes, every stored chain stops
// verifying.
func TestChainHashGolden(t *testing.T) {
	r := sampleAuditRow()
	const want = "e0642e4be3514280cb02989cd84f2b0588ac7755438ad140e1c3254e5783087c"
	if got := chainHash(GenesisHash, &r); got != want {
		t.Errorf("chainHash = %s, want %s", got, want)
	}
}

func TestChainHashCoversEveryField(t *testing.T) {
	base := sampleAuditRow()
	baseHash := chainHash(GenesisHash, &base)
	cases := []struct {
		name   string
		change func(*auditRow)
	}{
		{"time", func(r *auditRow) { r.Time++ }},
		{"time_ns", func(r *auditRow) { r.TimeNS++ }},
		{"id", func(r *auditRow) { r.ID = "evt-2" }},
		{"stage", func(r *auditRow) { r.Stage = "processor" }},
		{"action", func(r *auditRow) { r.Action = "verify" }},
		{"route", func(r *auditRow) { r.Route = "/webhooks/whatsapp" }},
		{"outcome", func(r *auditRow) { r.Outcome = "rejected" }},
		{"reason", func(r *auditRow) { r.Reason = "blocked" }},
		{"source", func(r *auditRow) { r.Source = "203.0.113.8" }},
		{"account", func(r *auditRow) { r.Account = "acct2" }},
		{"subject", func(r *auditRow) { r.Subject = "subj2" }},
		{"device", func(r *auditRow) { r.Device = "dev2" }},
		{"message_id", func(r *auditRow) { r.MessageID = "wamid.2" }},
		{"request_id", func(r *auditRow) { r.RequestID = "req-2" }},
		{"status", func(r *auditRow) { r.Status = 401 }},
		{"bytes_in", func(r *auditRow) { r.BytesIn++ }},
		{"bytes_out", func(r *auditRow) { r.BytesOut++ }},
		{"latency_seconds", func(r *auditRow) { r.LatencySeconds = 0.26 }},
		{"detail", func(r *auditRow) { r.Detail = "x" }},
		{"kafka_partition", func(r *auditRow) { r.Partition = 2 }},
		{"kafka_offset", func(r *auditRow) { r.Offset = 43 }},
		{"field boundary", func(r *auditRow) { r.Subject, r.Device = "subjd", "ev" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			tc.change(&r)
			if got := chainHash(GenesisHash, &r); got == baseHash {
				t.Errorf("changing %s left the hash unchanged", tc.name)
			}
		})
	}
	other := GenesisHash[:63] + "1"
	if chainHash(other, &base) == baseHash {
		t.Error("changing prev_hash left the hash unchanged")
	}
}

func TestChainHashIgnoresStoredHashes(t *testing.T) {
	r := sampleAuditRow()
	want := chainHash(GenesisHash, &r)
	r.PrevHash, r.Hash = "p", "h"
	if got := chainHash(GenesisHash, &r); got != want {
		t.Errorf("chainHash depends on the PrevHash or Hash fields: %s != %s", got, want)
	}
}

// buildChain returns n linked rows of one partition at offsets 10, 12, ...
func buildChain(n int) []auditRow {
	rows := make([]auditRow, n)
	tip := GenesisHash
	for i := range rows {
		rows[i] = sampleAuditRow()
		rows[i].Offset = int64(10 + 2*i)
		rows[i].ID = "evt-" + string(rune('a'+i))
		rows[i].link(tip)
		tip = rows[i].Hash
	}
	return rows
}

func TestChainVerifier(t *testing.T) {
	cases := []struct {
		name        string
		tamper      func([]auditRow) []auditRow
		wantProblem string
		wantOffset  int64
	}{
		{"intact", func(rs []auditRow) []auditRow { return rs }, "", 0},
		{"modified detail", func(rs []auditRow) []auditRow {
			rs[2].Detail = "edited"
			return rs
		}, ProblemHash, 14},
		{"modified and rehashed", func(rs []auditRow) []auditRow {
			rs[2].Detail = "edited"
			rs[2].link(rs[2].PrevHash)
			return rs
		}, ProblemPrevHash, 16},
		{"deleted row", func(rs []auditRow) []auditRow {
			return append(rs[:1], rs[2:]...)
		}, ProblemPrevHash, 14},
		{"deleted first row", func(rs []auditRow) []auditRow {
			return rs[1:]
		}, ProblemPrevHash, 12},
		{"duplicated row", func(rs []auditRow) []auditRow {
			return append(rs[:3], rs[2:]...)
		}, ProblemDuplicateOffset, 14},
		{"forged row appended", func(rs []auditRow) []auditRow {
			forged := sampleAuditRow()
			forged.Offset = 100
			forged.link(GenesisHash)
			return append(rs, forged)
		}, ProblemPrevHash, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := tc.tamper(buildChain(5))
			v := newChainVerifier(1, "db", nil)
			for i := range rows {
				v.check(&rows[i])
			}
			got := v.pc
			if got.Rows != uint64(len(rows)) {
				t.Errorf("Rows = %d, want %d", got.Rows, len(rows))
			}
			if tc.wantProblem == "" {
				if got.FirstBroken != nil {
					t.Errorf("intact chain reported %v", got.FirstBroken)
				}
				if got.LastHash != rows[len(rows)-1].Hash {
					t.Errorf("LastHash = %s, want the last row's hash", got.LastHash)
				}
				return
			}
			if got.FirstBroken == nil {
				t.Fatalf("tampered chain verified")
			}
			if got.FirstBroken.Problem != tc.wantProblem {
				t.Errorf("problem = %s, want %s", got.FirstBroken.Problem, tc.wantProblem)
			}
			if got.FirstBroken.Offset != tc.wantOffset {
				t.Errorf("broken offset = %d, want %d", got.FirstBroken.Offset, tc.wantOffset)
			}
		})
	}
}

func TestSplitTimeClamps(t *testing.T) {
	f := func(name string, in time.Time, wantSec, wantNS uint32) {
		t.Helper()
		sec, ns := splitTime(in)
		if sec != wantSec || ns != wantNS {
			t.Errorf("%s: splitTime = (%d, %d), want (%d, %d)", name, sec, ns, wantSec, wantNS)
		}
	}
	f("zero time", time.Time{}, 0, 0)
	f("before 1970", time.Date(1969, 12, 31, 23, 59, 59, 5, time.UTC), 0, 0)
	f("normal", time.Unix(1700000000, 250), 1700000000, 250)
	f("after 2105", time.Date(2200, 1, 1, 0, 0, 0, 7, time.UTC), uint32(maxDateTime.Unix()), 0)
}
