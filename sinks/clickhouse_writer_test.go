package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// auditRecords returns n audit events spread over keys, and so over
// partitions, numbered from first.
func auditRecords(first, n int) []testRecord {
	out := make([]testRecord, 0, n)
	for i := first; i < first+n; i++ {
		out = append(out, testRecord{
			suffix: schemas.TopicAudit,
			key:    fmt.Sprintf("source-%d", i%5),
			value: schemas.AuditEvent{
				ID:             fmt.Sprintf("evt-%d", i),
				Time:           time.Unix(1700000000+int64(i), int64(i)*1000),
				Stage:          schemas.StageIngest,
				Action:         schemas.ActionHTTPRequest,
				Route:          "/v1/sync/events",
				Outcome:        schemas.OutcomeAccepted,
				Reason:         schemas.ReasonOK,
				Source:         "203.0.113.7",
				Status:         202,
				BytesIn:        100 + i,
				LatencySeconds: 0.001 * float64(i),
			},
		})
	}
	return out
}

func messageRecords(suffix string, first, n int) []testRecord {
	out := make([]testRecord, 0, n)
	for i := first; i < first+n; i++ {
		out = append(out, testRecord{
			suffix: suffix,
			key:    fmt.Sprintf("m-%d", i),
			value: schemas.EncryptedMessage{
				MessageID:  fmt.Sprintf("%s-%d", suffix, i),
				Kind:       schemas.KindWhatsApp,
				Type:       "text",
				Account:    "acct",
				SentAt:     time.Unix(1700000000, 0),
				ReceivedAt: time.Unix(1700000001, 0),
				KeyID:      "k1",
				Nonce:      []byte{0, 1, 2, 3},
				Ciphertext: []byte{0xde, 0xad, 0x00, 0xbe, 0xef},
				RequestID:  "req",
			},
		})
	}
	return out
}

func TestInsertEveryColumnType(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	insertedAt := time.Unix(1700000100, 0).UTC()

	// audit_log: FixedString, UInt16, UInt32, Float64, DateTime.
	ev := schemas.AuditEvent{ID: "e1", Time: time.Unix(1700000000, 999), Status: 429, BytesIn: 1 << 30, LatencySeconds: 0.125, Detail: "d"}
	ar, err := auditRowFromRecord(&kgo.Record{Partition: 2, Offset: 77, Value: mustJSON(t, ev)})
	if err != nil {
		t.Fatal(err)
	}
	ar.link(GenesisHash)
	audit := &tableRows{table: auditTable, rows: []row{{partition: 2, offset: 77, values: ar.values()}}}
	if err := insertRows(ctx, conn, ch.Database, audit); err != nil {
		t.Fatalf("insert audit_log: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT "+auditSelectColumns+" FROM "+ch.Database+".audit_log")
	if err != nil {
		t.Fatal(err)
	}
	var back auditRow
	if !rows.Next() {
		t.Fatal("audit_log is empty after the insert")
	}
	if err := scanAuditRow(rows, &back); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if back != ar {
		t.Errorf("audit row read back differs:\n got %+v\nwant %+v", back, ar)
	}

	// messages: UInt8, raw bytes in String, DateTime.
	m := schemas.EncryptedMessage{MessageID: "m1", ClientEncrypted: true, Nonce: []byte{0, 0xff}, Ciphertext: []byte{1, 0, 2}, SentAt: time.Unix(1700000000, 0)}
	mv, err := messageValues(&kgo.Record{Topic: "x.sync", Partition: 1, Offset: 5, Value: mustJSON(t, m)}, true, insertedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := insertRows(ctx, conn, ch.Database, &tableRows{table: messagesTable, rows: []row{{values: mv}}}); err != nil {
		t.Fatalf("insert messages: %v", err)
	}
	var (
		kind, nonce, ciphertext, topic string
		clientEncrypted                uint8
		sentAt, ins                    time.Time
		offset                         int64
	)
	err = conn.QueryRow(ctx, "SELECT kind, nonce, ciphertext, client_encrypted, sent_at, inserted_at, kafka_topic, kafka_offset FROM "+ch.Database+".messages").
		Scan(&kind, &nonce, &ciphertext, &clientEncrypted, &sentAt, &ins, &topic, &offset)
	if err != nil {
		t.Fatal(err)
	}
	if kind != schemas.KindSync || nonce != "\x00\xff" || ciphertext != "\x01\x00\x02" || clientEncrypted != 1 {
		t.Errorf("messages row = kind %q nonce %q ciphertext %q client_encrypted %d", kind, nonce, ciphertext, clientEncrypted)
	}
	if !sentAt.Equal(m.SentAt) || !ins.Equal(insertedAt) || topic != "x.sync" || offset != 5 {
		t.Errorf("messages row = sent_at %v inserted_at %v topic %q offset %d", sentAt, ins, topic, offset)
	}

	// statuses and alerts: raw JSON strings, UInt32, UInt64.
	s := schemas.Status{MessageID: "m1", Status: "read", RecipientUser: "ru1", Timestamp: time.Unix(1700000002, 0), Pricing: json.RawMessage(`{"billable":true}`)}
	sv, err := statusValues(&kgo.Record{Value: mustJSON(t, s)}, insertedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := insertRows(ctx, conn, ch.Database, &tableRows{table: statusesTable, rows: []row{{values: sv}}}); err != nil {
		t.Fatalf("insert statuses: %v", err)
	}
	var pricing, recipientUser string
	if err := conn.QueryRow(ctx, "SELECT pricing, recipient_user FROM "+ch.Database+".statuses").Scan(&pricing, &recipientUser); err != nil {
		t.Fatal(err)
	}
	if pricing != `{"billable":true}` {
		t.Errorf("pricing = %q", pricing)
	}
	if recipientUser != "ru1" {
		t.Errorf("recipient_user = %q, want ru1", recipientUser)
	}

	a := schemas.Alert{ID: "a1", Rule: "volume_account", Key: "acct", Window: time.Minute, Count: 1 << 40, Score: 3.5, RaisedAt: time.Unix(1700000003, 0)}
	av, err := alertValues(&kgo.Record{Value: mustJSON(t, a)}, insertedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := insertRows(ctx, conn, ch.Database, &tableRows{table: alertsTable, rows: []row{{values: av}}}); err != nil {
		t.Fatalf("insert alerts: %v", err)
	}
	var (
		window uint32
		count  uint64
		key    string
	)
	if err := conn.QueryRow(ctx, "SELECT window_seconds, count, key FROM "+ch.Database+".alerts").Scan(&window, &count, &key); err != nil {
		t.Fatal(err)
	}
	if window != 60 || count != 1<<40 || key != "acct" {
		t.Errorf("alert row = window %d count %d key %q", window, count, key)
	}
}

func TestWriterStoresEveryTopic(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	db := ch.Database

	var records []testRecord
	records = append(records, auditRecords(0, 30)...)
	records = append(records, messageRecords(schemas.TopicMessages, 0, 4)...)
	records = append(records, messageRecords(schemas.TopicSync, 0, 3)...)
	for i := range 5 {
		records = append(records, testRecord{suffix: schemas.TopicStatuses, key: "m", value: schemas.Status{
			MessageID: "m-0", Status: []string{"sent", "delivered", "read", "delivered", "sent"}[i],
			Timestamp: time.Unix(1700000000+int64(i), 0),
		}})
	}
	records = append(records,
		testRecord{suffix: schemas.TopicAlerts, key: "r/k", value: schemas.Alert{ID: "a1", Rule: "r", Key: "k", RaisedAt: time.Unix(1700000000, 0)}},
		testRecord{suffix: schemas.TopicAlerts, key: "r/k", value: schemas.Alert{ID: "a2", Rule: "r", Key: "k", RaisedAt: time.Unix(1700000060, 0)}},
		testRecord{suffix: schemas.TopicStatuses, key: "bad", value: []byte("{broken")},
	)
	produce(t, kcfg, records...)

	w := startWriter(t, ch, kcfg, "g-"+randomName(t), nil)
	want := map[string]uint64{"audit_log": 30, "messages": 7, "statuses": 5, "alerts": 2}
	waitFor(t, 20*time.Second, "every record stored", func() bool {
		for table, n := range want {
			if countRows(t, conn, "SELECT count() FROM "+db+"."+table) < n {
				return false
			}
		}
		return true
	})
	if !w.Ready() {
		t.Error("writer not ready after storing rows")
	}
	w.stop(t)

	for table, n := range want {
		if got := countRows(t, conn, "SELECT count() FROM "+db+"."+table); got != n {
			t.Errorf("%s has %d rows, want %d", table, got, n)
		}
		if got := w.metric(t, "syncguard_sink_rows_written_total", "table", table); got != float64(n) {
			t.Errorf("rows_written_total{table=%s} = %v, want %d", table, got, n)
		}
	}
	if got := countRows(t, conn, "SELECT count() FROM "+db+".messages WHERE kind = 'sync' AND kafka_topic = ?", kcfg.Topic(schemas.TopicSync)); got != 3 {
		t.Errorf("messages has %d sync rows, want 3", got)
	}
	if got := countRows(t, conn, "SELECT count() FROM "+db+".messages WHERE ciphertext = unhex('DEAD00BEEF')"); got != 7 {
		t.Errorf("%d messages keep the ciphertext bytes, want 7", got)
	}
	if got := w.metric(t, "syncguard_sink_records_undecodable_total", "table", "statuses"); got != 1 {
		t.Errorf("records_undecodable_total{table=statuses} = %v, want 1", got)
	}
	var latest string
	if err := conn.QueryRow(context.Background(), "SELECT latest_status FROM "+db+".statuses_latest WHERE message_id = 'm-0'").Scan(&latest); err != nil {
		t.Fatal(err)
	}
	if latest != "read" {
		t.Errorf("statuses_latest = %q, want read: a later delivered or sent must not move it back", latest)
	}

	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Rows != 30 {
		t.Errorf("VerifyChain = ok %v rows %d first broken %v, want ok with 30 rows", report.OK(), report.Rows, report.FirstBroken)
	}
}

// insertChain writes n linked audit rows of one partition straight into
// audit_log and returns them.
func insertChain(t *testing.T, ch ClickHouseConfig, partition int32, n int) []auditRow {
	t.Helper()
	conn, err := OpenClickHouse(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tip := GenesisHash
	tr := &tableRows{table: auditTable}
	out := make([]auditRow, n)
	for i := range n {
		ev := schemas.AuditEvent{ID: fmt.Sprintf("p%d-%d", partition, i), Time: time.Unix(1700000000+int64(i), 0), Detail: "original"}
		r, err := auditRowFromRecord(&kgo.Record{Partition: partition, Offset: int64(i), Value: mustJSON(t, ev)})
		if err != nil {
			t.Fatal(err)
		}
		r.link(tip)
		tip = r.Hash
		out[i] = r
		tr.rows = append(tr.rows, row{partition: partition, offset: int64(i), values: r.values()})
	}
	if err := insertRows(context.Background(), conn, ch.Database, tr); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyChainDetectsTampering(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	db := ch.Database
	insertChain(t, ch, 0, 20)
	insertChain(t, ch, 1, 10)

	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Rows != 30 || len(report.Partitions) != 2 {
		t.Fatalf("untouched chain: ok %v rows %d partitions %d, want ok, 30, 2", report.OK(), report.Rows, len(report.Partitions))
	}

	// ALTER TABLE ... UPDATE is a mutation (ClickHouse 18.12 and later) and
	// runs in the background, so wait until its effect shows.
	exec(t, conn, "ALTER TABLE "+db+".audit_log UPDATE detail = 'edited' WHERE kafka_partition = 1 AND kafka_offset = 4")
	waitFor(t, 20*time.Second, "the UPDATE mutation to apply", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log WHERE detail = 'edited'") == 1
	})
	report, err = VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if report.OK() {
		t.Fatal("VerifyChain accepted a modified row")
	}
	if b := report.FirstBroken; b.Partition != 1 || b.Offset != 4 || b.Problem != ProblemHash {
		t.Errorf("first broken = %v, want partition 1 offset 4 %s", b, ProblemHash)
	}
	if report.Partitions[0].FirstBroken != nil {
		t.Errorf("partition 0 reported broken: %v", report.Partitions[0].FirstBroken)
	}

	exec(t, conn, "ALTER TABLE "+db+".audit_log DELETE WHERE kafka_partition = 0 AND kafka_offset = 7")
	waitFor(t, 20*time.Second, "the DELETE mutation to apply", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log WHERE kafka_partition = 0") == 19
	})
	report, err = VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if b := report.Partitions[0].FirstBroken; b == nil || b.Offset != 8 || b.Problem != ProblemPrevHash {
		t.Errorf("after deleting offset 7, partition 0 first broken = %v, want offset 8 %s", b, ProblemPrevHash)
	}
}

func TestVerifyChainAcrossPages(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	db := ch.Database
	rows := insertChain(t, ch, 0, 10)

	// A duplicate of offset 6, the first offset of the third page of 3.
	dup := &tableRows{table: auditTable, rows: []row{{partition: 0, offset: 6, values: rows[6].values()}}}
	if err := insertRows(context.Background(), conn, db, dup); err != nil {
		t.Fatal(err)
	}

	for _, page := range []int64{1, 3, 4, 100} {
		pc, _, err := verifyPartition(context.Background(), conn, db, 0, page, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pc.Rows != 11 {
			t.Errorf("page %d: Rows = %d, want 11", page, pc.Rows)
		}
		if pc.FirstOffset != 0 || pc.LastOffset != 9 || pc.LastHash != rows[9].Hash {
			t.Errorf("page %d: offsets %d..%d last hash %s, want 0..9 and the last row's hash", page, pc.FirstOffset, pc.LastOffset, pc.LastHash)
		}
		if b := pc.FirstBroken; b == nil || b.Offset != 6 || b.Problem != ProblemDuplicateOffset {
			t.Errorf("page %d: first broken = %v, want offset 6 %s", page, b, ProblemDuplicateOffset)
		}
	}
}

func TestRetriedInsertSkipsStoredRows(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	w, err := New(Options{Config: DefaultConfig(), Kafka: kafkaclient.Defaults()})
	if err != nil {
		t.Fatal(err)
	}
	w.cfg.ClickHouse = ch
	w.conn = conn

	tr := &tableRows{table: messagesTable}
	for i, rec := range messageRecords(schemas.TopicMessages, 0, 6) {
		kr := &kgo.Record{Topic: "x.messages", Partition: 0, Offset: int64(i), Value: mustJSON(t, rec.value)}
		v, err := messageValues(kr, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tr.rows = append(tr.rows, row{topic: kr.Topic, partition: 0, offset: kr.Offset, values: v})
	}
	// An earlier attempt that looked failed stored the first four rows.
	stored := &tableRows{table: messagesTable, rows: tr.rows[:4:4]}
	if err := insertRows(context.Background(), conn, ch.Database, stored); err != nil {
		t.Fatal(err)
	}
	tr.attempted = true
	if err := w.tryInsert(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, conn, "SELECT count() FROM "+ch.Database+".messages"); got != 6 {
		t.Errorf("messages has %d rows after the retry, want 6", got)
	}
	if got := countRows(t, conn, "SELECT uniqExact(kafka_offset) FROM "+ch.Database+".messages"); got != 6 {
		t.Errorf("messages has %d distinct offsets, want 6", got)
	}
}

func TestWriterResumesAfterCrashBeforeCommit(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	db := ch.Database
	group := "g-" + randomName(t)

	first := append(auditRecords(0, 40), messageRecords(schemas.TopicMessages, 0, 10)...)
	produce(t, kcfg, first...)

	// The first writer stores everything but never commits an offset, as
	// if it crashed after each INSERT.
	crashed := startWriter(t, ch, kcfg, group, func(w *Writer) { w.skipCommit = true })
	waitFor(t, 20*time.Second, "the first writer to store 40 audit and 10 message rows", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log") == 40 &&
			countRows(t, conn, "SELECT count() FROM "+db+".messages") == 10
	})
	crashed.stop(t)

	second := append(auditRecords(40, 15), messageRecords(schemas.TopicMessages, 10, 5)...)
	produce(t, kcfg, second...)

	// The second writer of the same group starts at offset 0 again.
	w := startWriter(t, ch, kcfg, group, nil)
	waitFor(t, 20*time.Second, "the second writer to see every record", func() bool {
		return w.metric(t, "syncguard_sink_records_skipped_total", "table", "audit_log") == 40 &&
			w.metric(t, "syncguard_sink_records_skipped_total", "table", "messages") == 10 &&
			w.metric(t, "syncguard_sink_rows_written_total", "table", "audit_log") == 15 &&
			w.metric(t, "syncguard_sink_rows_written_total", "table", "messages") == 5
	})
	w.stop(t)

	for table, n := range map[string]uint64{"audit_log": 55, "messages": 15} {
		if got := countRows(t, conn, "SELECT count() FROM "+db+"."+table); got != n {
			t.Errorf("%s has %d rows, want %d", table, got, n)
		}
		if got := countRows(t, conn, "SELECT uniqExact(kafka_partition, kafka_offset) FROM "+db+"."+table); got != n {
			t.Errorf("%s has %d distinct Kafka positions, want %d", table, got, n)
		}
	}
	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Errorf("chain broken after the restart: %v", report.FirstBroken)
	}
}

func TestWriterFillsGapOfPartialInsert(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	db := ch.Database
	group := "g-" + randomName(t)
	produce(t, kcfg, auditRecords(0, 30)...)

	crashed := startWriter(t, ch, kcfg, group, func(w *Writer) { w.skipCommit = true })
	waitFor(t, 20*time.Second, "30 audit rows", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log") == 30
	})
	crashed.stop(t)

	// Act out an INSERT that reached only some ClickHouse partitions: rows
	// in the middle of each Kafka partition are missing, later ones stored.
	exec(t, conn, "ALTER TABLE "+db+".audit_log DELETE WHERE kafka_offset IN (3, 4, 5)")
	waitFor(t, 20*time.Second, "the DELETE mutation to apply", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log WHERE kafka_offset IN (3, 4, 5)") == 0
	})
	missing := 30 - countRows(t, conn, "SELECT count() FROM "+db+".audit_log")
	if missing == 0 {
		t.Fatal("no rows deleted: the partitions have fewer than 4 records each")
	}

	w := startWriter(t, ch, kcfg, group, nil)
	waitFor(t, 20*time.Second, "the gap to be filled", func() bool {
		return w.metric(t, "syncguard_sink_rows_written_total", "table", "audit_log") == float64(missing)
	})
	w.stop(t)

	if got := countRows(t, conn, "SELECT count() FROM "+db+".audit_log"); got != 30 {
		t.Errorf("audit_log has %d rows, want 30", got)
	}
	if got := countRows(t, conn, "SELECT uniqExact(kafka_partition, kafka_offset) FROM "+db+".audit_log"); got != 30 {
		t.Errorf("audit_log has %d distinct Kafka positions, want 30", got)
	}
	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Errorf("refilled chain does not verify: %v", report.FirstBroken)
	}
}

func TestWriterSurvivesClickHouseOutage(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	db := ch.Database
	proxy := startProxy(t, ch.Addr)
	viaProxy := ch
	viaProxy.Addr = proxy.addr()

	produce(t, kcfg, auditRecords(0, 10)...)
	w := startWriter(t, viaProxy, kcfg, "g-"+randomName(t), nil)
	waitFor(t, 20*time.Second, "10 audit rows", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log") == 10
	})

	proxy.setUp(false)
	produce(t, kcfg, append(auditRecords(10, 20), messageRecords(schemas.TopicMessages, 0, 5)...)...)
	waitFor(t, 20*time.Second, "the writer to report not ready", func() bool { return !w.Ready() })
	if got := countRows(t, conn, "SELECT count() FROM "+db+".audit_log"); got != 10 {
		t.Errorf("audit_log has %d rows during the outage, want 10", got)
	}

	proxy.setUp(true)
	waitFor(t, 20*time.Second, "every row after the outage", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+db+".audit_log") == 30 &&
			countRows(t, conn, "SELECT count() FROM "+db+".messages") == 5
	})
	waitFor(t, 10*time.Second, "the writer to report ready", w.Ready)
	w.stop(t)

	for table, n := range map[string]uint64{"audit_log": 30, "messages": 5} {
		if got := countRows(t, conn, "SELECT count() FROM "+db+"."+table); got != n {
			t.Errorf("%s has %d rows, want %d", table, got, n)
		}
		if got := countRows(t, conn, "SELECT uniqExact(kafka_partition, kafka_offset) FROM "+db+"."+table); got != n {
			t.Errorf("%s has %d distinct Kafka positions, want %d", table, got, n)
		}
	}
	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Errorf("chain broken after the outage: %v", report.FirstBroken)
	}
}

func TestWriterWaitsForClickHouseAtStart(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	proxy := startProxy(t, ch.Addr)
	proxy.setUp(false)
	viaProxy := ch
	viaProxy.Addr = proxy.addr()

	w := startWriter(t, viaProxy, kcfg, "g-"+randomName(t), nil)
	produce(t, kcfg, auditRecords(0, 10)...)
	if w.Ready() {
		t.Error("writer ready while ClickHouse is unreachable")
	}
	select {
	case err := <-w.done:
		t.Fatalf("Run returned while ClickHouse was unreachable: %v", err)
	default:
	}

	proxy.setUp(true)
	waitFor(t, 20*time.Second, "10 audit rows once ClickHouse is reachable", func() bool {
		return countRows(t, conn, "SELECT count() FROM "+ch.Database+".audit_log") == 10
	})
	waitFor(t, 10*time.Second, "the writer to report ready", w.Ready)
}

func TestWriterSkipsAbortedTransactions(t *testing.T) {
	conn, ch := migratedClickHouse(t)
	kcfg := testKafka(t)
	db := ch.Database

	cl, err := kcfg.NewClient(kgo.TransactionalID("tx-" + randomName(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	transact := func(first int, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, r := range auditRecords(first, 5) {
			rec := &kgo.Record{Topic: kcfg.Topic(r.suffix), Key: []byte(r.key), Value: mustJSON(t, r.value)}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	transact(0, kgo.TryAbort)
	transact(5, kgo.TryCommit)
	transact(10, kgo.TryAbort)
	transact(15, kgo.TryCommit)

	w := startWriter(t, ch, kcfg, "g-"+randomName(t), nil)
	waitFor(t, 20*time.Second, "10 committed audit rows", func() bool {
		return w.metric(t, "syncguard_sink_rows_written_total", "table", "audit_log") >= 10
	})
	w.stop(t)

	if got := countRows(t, conn, "SELECT count() FROM "+db+".audit_log"); got != 10 {
		t.Errorf("audit_log has %d rows, want the 10 of committed transactions", got)
	}
	if got := countRows(t, conn, "SELECT count() FROM "+db+".audit_log WHERE id IN ('evt-0', 'evt-4', 'evt-10', 'evt-14')"); got != 0 {
		t.Errorf("audit_log stores %d rows of aborted transactions", got)
	}
	report, err := VerifyChain(context.Background(), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Rows != 10 {
		t.Errorf("VerifyChain = ok %v rows %d first broken %v, want ok with 10 rows", report.OK(), report.Rows, report.FirstBroken)
	}
}
