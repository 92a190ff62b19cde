package sinks

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTableColumnsMatchValues(t *testing.T) {
	rec := &kgo.Record{Topic: "p.x", Partition: 1, Offset: 2, Value: []byte(`{}`)}
	now := time.Unix(1700000000, 0)

	ar, err := auditRowFromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := messageValues(rec, false, now)
	if err != nil {
		t.Fatal(err)
	}
	st, err := statusValues(rec, now)
	if err != nil {
		t.Fatal(err)
	}
	al, err := alertValues(rec, now)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		table  *table
		values []any
	}{
		{auditTable, ar.values()},
		{messagesTable, msg},
		{statusesTable, st},
		{alertsTable, al},
	}
	for _, tc := range cases {
		if len(tc.values) != len(tc.table.columns) {
			t.Errorf("%s: %d values for %d columns", tc.table.name, len(tc.values), len(tc.table.columns))
		}
	}
}

func TestAuditRowFromRecord(t *testing.T) {
	ev := schemas.AuditEvent{
		ID: "e1", Time: time.Unix(1700000000, 5), Stage: schemas.StageIngest,
		Action: schemas.ActionHTTPRequest, Outcome: schemas.OutcomeAccepted, Reason: schemas.ReasonOK,
		Status: 70000, BytesIn: -3, BytesOut: 10, LatencySeconds: 0.5,
	}
	rec := &kgo.Record{Partition: 3, Offset: 9, Value: mustJSON(t, ev), Timestamp: time.Unix(1800000000, 0)}
	r, err := auditRowFromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Time != 1700000000 || r.TimeNS != 5 {
		t.Errorf("time = (%d, %d), want (1700000000, 5)", r.Time, r.TimeNS)
	}
	if r.Status != 65535 {
		t.Errorf("status = %d, want 65535 (clamped to UInt16)", r.Status)
	}
	if r.BytesIn != 0 {
		t.Errorf("bytes_in = %d, want 0 (negative clamped)", r.BytesIn)
	}
	if r.Partition != 3 || r.Offset != 9 {
		t.Errorf("kafka position = (%d, %d), want (3, 9)", r.Partition, r.Offset)
	}
}

func TestAuditRowFromUndecodableRecord(t *testing.T) {
	rec := &kgo.Record{Partition: 1, Offset: 7, Value: []byte("not json"), Timestamp: time.Unix(1700000001, 0)}
	r, err := auditRowFromRecord(rec)
	if !errors.Is(err, errUndecodable) {
		t.Fatalf("error = %v, want errUndecodable", err)
	}
	if r.Stage != schemas.StageSink || r.Outcome != schemas.OutcomeError || r.Reason != schemas.ReasonParseError {
		t.Errorf("row = %s/%s/%s, want sink/error/parse_error", r.Stage, r.Outcome, r.Reason)
	}
	if r.ID != "kafka:1:7" {
		t.Errorf("id = %q, want kafka:1:7", r.ID)
	}
	if r.Time != 1700000001 {
		t.Errorf("time = %d, want the record timestamp 1700000001", r.Time)
	}
}

func TestMessageValuesKind(t *testing.T) {
	m := schemas.EncryptedMessage{MessageID: "m1", Kind: schemas.KindWhatsApp, Nonce: []byte{0, 1, 2}, Ciphertext: []byte{0xff, 0}}
	rec := &kgo.Record{Topic: "p.sync", Value: mustJSON(t, m)}
	f := func(name string, m schemas.EncryptedMessage, sync bool, want string) {
		t.Helper()
		rec.Value = mustJSON(t, m)
		v, err := messageValues(rec, sync, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := v[1]; got != want {
			t.Errorf("%s: kind = %v, want %s", name, got, want)
		}
		if got := v[10]; got != string([]byte{0, 1, 2}) {
			t.Errorf("%s: nonce = %q, want the raw bytes", name, got)
		}
	}
	f("whatsapp", m, false, schemas.KindWhatsApp)
	f("sync topic overrides", m, true, schemas.KindSync)
	m.Kind = ""
	f("empty kind", m, false, schemas.KindWhatsApp)
}

func TestUndecodableValues(t *testing.T) {
	rec := &kgo.Record{Value: []byte(`{"message_id": 5}`)}
	if _, err := messageValues(rec, false, time.Now()); !errors.Is(err, errUndecodable) {
		t.Errorf("messageValues error = %v, want errUndecodable", err)
	}
	if _, err := statusValues(rec, time.Now()); !errors.Is(err, errUndecodable) {
		t.Errorf("statusValues error = %v, want errUndecodable", err)
	}
	rec.Value = []byte(`[`)
	if _, err := alertValues(rec, time.Now()); !errors.Is(err, errUndecodable) {
		t.Errorf("alertValues error = %v, want errUndecodable", err)
	}
}

func TestAlertValues(t *testing.T) {
	a := schemas.Alert{ID: "a1", Window: 90 * time.Second, Count: -1, RaisedAt: time.Unix(1700000000, 0)}
	v, err := alertValues(&kgo.Record{Value: mustJSON(t, a)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if v[4] != uint32(90) {
		t.Errorf("window_seconds = %v, want 90", v[4])
	}
	if v[6] != uint64(0) {
		t.Errorf("count = %v, want 0 (negative clamped)", v[6])
	}
	if got := v[12].(time.Time); !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("raised_at = %v", got)
	}
	if got := v[11].(time.Time); !got.Equal(minDateTime) {
		t.Errorf("zero last_seen = %v, want 1970-01-01", got)
	}
}

func TestRawJSON(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := rawJSON(json.RawMessage(in)); got != want {
			t.Errorf("rawJSON(%q) = %q, want %q", in, got, want)
		}
	}
	f("", "")
	f("null", "")
	f(`[{"code":131051}]`, `[{"code":131051}]`)
}
