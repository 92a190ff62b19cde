package sinks

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

// table describes one ClickHouse table that the Writer inserts into.
type table struct {
	name    string
	columns []string
	// hasTopic is true when the table has a kafka_topic column, because
	// more than one topic may feed it. audit_log has none: one audit topic
	// feeds one database.
	hasTopic bool
}

var (
	auditTable = &table{
		name: "audit_log",
		columns: []string{
			"time", "time_ns", "id", "stage", "action", "route", "outcome", "reason",
			"source", "account", "subject", "device", "message_id", "request_id",
			"status", "bytes_in", "bytes_out", "latency_seconds", "detail",
			"kafka_partition", "kafka_offset", "prev_hash", "hash",
		},
	}
	messagesTable = &table{
		name: "messages",
		columns: []string{
			"message_id", "kind", "type", "account", "subject", "device", "conversation",
			"sent_at", "received_at", "key_id", "nonce", "ciphertext", "client_encrypted",
			"client_alg", "client_iv", "meta", "errors", "request_id",
			"kafka_topic", "kafka_partition", "kafka_offset", "inserted_at",
		},
		hasTopic: true,
	}
	statusesTable = &table{
		name: "statuses",
		columns: []string{
			"message_id", "account", "recipient", "recipient_user", "status", "timestamp", "conversation",
			"pricing", "errors", "request_id",
			"kafka_topic", "kafka_partition", "kafka_offset", "inserted_at",
		},
		hasTopic: true,
	}
	alertsTable = &table{
		name: "alerts",
		columns: []string{
			"id", "rule", "key", "severity", "window_seconds", "window_start", "count",
			"threshold", "baseline", "score", "first_seen", "last_seen", "raised_at", "summary",
			"kafka_topic", "kafka_partition", "kafka_offset", "inserted_at",
		},
		hasTopic: true,
	}
)

// tableForTopic returns the table that stores a topic suffix's records.
func tableForTopic(suffix string) *table {
	switch suffix {
	case schemas.TopicAudit:
		return auditTable
	case schemas.TopicMessages, schemas.TopicSync:
		return messagesTable
	case schemas.TopicStatuses:
		return statusesTable
	case schemas.TopicAlerts:
		return alertsTable
	}
	return nil
}

func (t *table) insertSQL(database string) string {
	return "INSERT INTO " + database + "." + t.name + " (" + strings.Join(t.columns, ", ") + ")"
}

// row is one pending row and the Kafka record it came from.
type row struct {
	topic     string
	partition int32
	offset    int64
	values    []any // in table.columns order, typed as the columns
}

// Conversions of record values into rows. Each returns errUndecodable for
// a value that is not JSON of the topic's type.

// auditRowFromRecord converts an audit record, without its chain hashes. An
// undecodable value still becomes a row, marked as a sink parse error,
// so that the chain accounts for every record of the partition.
func auditRowFromRecord(rec *kgo.Record) (auditRow, error) {
	var ev schemas.AuditEvent
	decodeErr := json.Unmarshal(rec.Value, &ev)
	if decodeErr != nil {
		ev = schemas.AuditEvent{
			ID:      fmt.Sprintf("kafka:%d:%d", rec.Partition, rec.Offset),
			Stage:   schemas.StageSink,
			Action:  actionDecode,
			Outcome: schemas.OutcomeError,
			Reason:  schemas.ReasonParseError,
			Detail:  "audit record value is not a valid audit event",
		}
	}
	t := ev.Time
	if t.IsZero() {
		t = rec.Timestamp
	}
	sec, nsec := splitTime(t)
	r := auditRow{
		Time:           sec,
		TimeNS:         nsec,
		ID:             ev.ID,
		Stage:          ev.Stage,
		Action:         ev.Action,
		Route:          ev.Route,
		Outcome:        ev.Outcome,
		Reason:         ev.Reason,
		Source:         ev.Source,
		Account:        ev.Account,
		Subject:        ev.Subject,
		Device:         ev.Device,
		MessageID:      ev.MessageID,
		RequestID:      ev.RequestID,
		Status:         uint16(clampInt(int64(ev.Status), 0, math.MaxUint16)),
		BytesIn:        uint32(clampInt(int64(ev.BytesIn), 0, math.MaxUint32)),
		BytesOut:       uint32(clampInt(int64(ev.BytesOut), 0, math.MaxUint32)),
		LatencySeconds: ev.LatencySeconds,
		Detail:         ev.Detail,
		Partition:      rec.Partition,
		Offset:         rec.Offset,
	}
	if decodeErr != nil {
		return r, fmt.Errorf("%w: %w", errUndecodable, decodeErr)
	}
	return r, nil
}

// actionDecode is the action of the audit row that stands for an
// undecodable audit record.
const actionDecode = "decode"

func (r *auditRow) values() []any {
	return []any{
		time.Unix(int64(r.Time), 0).UTC(), r.TimeNS, r.ID, r.Stage, r.Action, r.Route,
		r.Outcome, r.Reason, r.Source, r.Account, r.Subject, r.Device, r.MessageID,
		r.RequestID, r.Status, r.BytesIn, r.BytesOut, r.LatencySeconds, r.Detail,
		r.Partition, r.Offset, r.PrevHash, r.Hash,
	}
}

// messageValues converts a messages or sync record. Records of the sync
// topic are stored with kind "sync", whatever kind their value contains.
func messageValues(rec *kgo.Record, syncTopic bool, insertedAt time.Time) ([]any, error) {
	var m schemas.EncryptedMessage
	if err := json.Unmarshal(rec.Value, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	kind := m.Kind
	switch {
	case syncTopic:
		kind = schemas.KindSync
	case kind == "":
		kind = schemas.KindWhatsApp
	}
	var clientEncrypted uint8
	if m.ClientEncrypted {
		clientEncrypted = 1
	}
	return []any{
		m.MessageID, kind, m.Type, m.Account, m.Subject, m.Device, m.Conversation,
		clampDateTime(m.SentAt), clampDateTime(m.ReceivedAt), m.KeyID,
		string(m.Nonce), string(m.Ciphertext), clientEncrypted, m.ClientAlg, m.ClientIV,
		rawJSON(m.Meta), rawJSON(m.Errors), m.RequestID,
		rec.Topic, rec.Partition, rec.Offset, insertedAt,
	}, nil
}

func statusValues(rec *kgo.Record, insertedAt time.Time) ([]any, error) {
	var s schemas.Status
	if err := json.Unmarshal(rec.Value, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	return []any{
		s.MessageID, s.Account, s.Recipient, s.RecipientUser, s.Status, clampDateTime(s.Timestamp),
		s.Conversation, rawJSON(s.Pricing), rawJSON(s.Errors), s.RequestID,
		rec.Topic, rec.Partition, rec.Offset, insertedAt,
	}, nil
}

func alertValues(rec *kgo.Record, insertedAt time.Time) ([]any, error) {
	var a schemas.Alert
	if err := json.Unmarshal(rec.Value, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	return []any{
		a.ID, a.Rule, a.Key, a.Severity,
		uint32(clampInt(int64(a.Window/time.Second), 0, math.MaxUint32)),
		clampDateTime(a.WindowStart),
		uint64(clampInt(a.Count, 0, math.MaxInt64)),
		a.Threshold, a.Baseline, a.Score,
		clampDateTime(a.FirstSeen), clampDateTime(a.LastSeen), clampDateTime(a.RaisedAt),
		a.Summary,
		rec.Topic, rec.Partition, rec.Offset, insertedAt,
	}, nil
}

// rawJSON returns raw JSON as stored: empty for an absent value.
func rawJSON(raw json.RawMessage) string {
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

func clampInt(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}
