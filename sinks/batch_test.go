package sinks

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func testRow(topic string, partition int32, offset int64) *row {
	return &row{topic: topic, partition: partition, offset: offset}
}

func TestPendingBatchDue(t *testing.T) {
	start := time.Unix(1000, 0)
	b := newPendingBatch()
	if b.due(start.Add(time.Hour), 1, time.Millisecond) {
		t.Error("empty batch is due")
	}

	rec := &kgo.Record{Topic: "a", Partition: 0, Offset: 1}
	b.handled(rec, auditTable, testRow("a", 0, 1), start)
	if b.due(start.Add(99*time.Millisecond), 2, 100*time.Millisecond) {
		t.Error("batch with 1 of 2 rows is due before the flush interval")
	}
	if !b.due(start.Add(100*time.Millisecond), 2, 100*time.Millisecond) {
		t.Error("batch is not due after the flush interval")
	}
	if !b.due(start, 1, time.Hour) {
		t.Error("batch at batch_max_rows is not due")
	}
	if got := b.deadline(100 * time.Millisecond); !got.Equal(start.Add(100 * time.Millisecond)) {
		t.Errorf("deadline = %v, want the first record's time plus the interval", got)
	}
}

func TestPendingBatchSkippedOnly(t *testing.T) {
	start := time.Unix(1000, 0)
	b := newPendingBatch()
	b.handled(&kgo.Record{Topic: "a", Offset: 1}, auditTable, nil, start)
	if b.empty() {
		t.Fatal("batch with a skipped record is empty: its offset would never be committed")
	}
	if b.rows != 0 {
		t.Errorf("rows = %d, want 0", b.rows)
	}
	if !b.due(start.Add(time.Second), 10, time.Second) {
		t.Error("batch with only skipped records never becomes due")
	}
}

func TestPendingBatchGroupsAndCommits(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newPendingBatch()
	add := func(topic string, p int32, off int64, tab *table, withRow bool) {
		var r *row
		if withRow {
			r = testRow(topic, p, off)
		}
		b.handled(&kgo.Record{Topic: topic, Partition: p, Offset: off}, tab, r, now)
	}
	add("audit", 0, 1, auditTable, true)
	add("messages", 0, 5, messagesTable, true)
	add("audit", 0, 2, auditTable, false)
	add("sync", 1, 7, messagesTable, true)
	add("audit", 1, 3, auditTable, true)

	if b.rows != 4 {
		t.Errorf("rows = %d, want 4", b.rows)
	}
	var names []string
	for _, tr := range b.tables {
		names = append(names, tr.table.name)
	}
	if !slices.Equal(names, []string{"audit_log", "messages"}) {
		t.Errorf("tables = %v, want [audit_log messages] (one INSERT per table)", names)
	}
	if n := len(b.tables[1].rows); n != 2 {
		t.Errorf("messages rows = %d, want 2 (messages and sync share the table)", n)
	}

	var commits []string
	for _, rec := range b.records() {
		commits = append(commits, rec.Topic+"/"+string(rune('0'+rec.Partition))+"@"+string(rune('0'+rec.Offset)))
	}
	slices.Sort(commits)
	want := []string{"audit/0@2", "audit/1@3", "messages/0@5", "sync/1@7"}
	if !slices.Equal(commits, want) {
		t.Errorf("commit records = %v, want %v (last handled per partition, skipped included)", commits, want)
	}

	b.reset()
	if !b.empty() || len(b.tables) != 0 || len(b.records()) != 0 {
		t.Errorf("reset left %d rows, %d tables, %d commits", b.rows, len(b.tables), len(b.records()))
	}
}

func TestTableRowsDropStored(t *testing.T) {
	tr := &tableRows{table: messagesTable}
	for _, r := range []*row{testRow("m", 0, 1), testRow("m", 0, 2), testRow("s", 0, 2), testRow("m", 1, 2), testRow("m", 0, 3)} {
		tr.rows = append(tr.rows, *r)
	}
	ranges := tr.offsetRanges()
	if got := ranges[topicPartition{"m", 0}]; got != [2]int64{1, 3} {
		t.Errorf("range of m/0 = %v, want [1 3]", got)
	}
	if len(ranges) != 3 {
		t.Errorf("%d ranges, want 3", len(ranges))
	}

	n := tr.dropStored(map[topicPartition]map[int64]bool{
		{"m", 0}: {2: true, 3: true},
		{"s", 0}: {},
	})
	if n != 2 {
		t.Errorf("dropped %d rows, want 2", n)
	}
	var left []string
	for _, r := range tr.rows {
		left = append(left, r.topic+string(rune('0'+r.partition))+string(rune('0'+r.offset)))
	}
	if got := strings.Join(left, ","); got != "m01,s02,m12" {
		t.Errorf("rows left = %s, want m01,s02,m12 in their original order", got)
	}
}

func TestPartitionStateAlreadyStored(t *testing.T) {
	st := &partitionState{
		stored:        map[int64]string{5: "h5", 7: "h7"},
		storedThrough: -1,
		tip:           "h4",
	}
	f := func(offset int64, want bool, wantTip string) {
		t.Helper()
		if got := st.alreadyStored(offset); got != want {
			t.Errorf("alreadyStored(%d) = %v, want %v", offset, got, want)
		}
		if st.tip != wantTip {
			t.Errorf("after offset %d tip = %s, want %s", offset, st.tip, wantTip)
		}
	}
	f(5, true, "h5")
	f(6, false, "h5") // a gap: the writer hashes it from tip h5
	st.tip = "h6"
	f(7, true, "h7")
	f(8, false, "h7")

	st = &partitionState{storedThrough: 10, tip: "h10"}
	f(0, true, "h10")
	f(10, true, "h10")
	f(11, false, "h10")
}
