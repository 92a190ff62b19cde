package sinks

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/kafkaclient"
	"github.com/syncguard/syncguard/schemas"
)

// Problems that VerifyKafkaWitness reports.
const (
	// ProblemCommittedRowMissing means the sink committed a Kafka offset
	// past an audit record that audit_log does not hold: rows were deleted
	// after they were stored, for example the newest rows together with
	// the checkpoints that covered them.
	ProblemCommittedRowMissing = "committed_row_missing"
	// ProblemCommittedRowChanged means audit_log holds another event at
	// the offset of the last committed audit record.
	ProblemCommittedRowChanged = "committed_row_changed"
)

// witnessWindow bounds how far back from the committed offset the witness
// reads to find the last audit record. Transaction markers take offsets
// too, so the last record can lie a few offsets before the commit.
const witnessWindow = 2000

// VerifyKafkaWitness compares audit_log with the audit topic in Kafka, a
// store that someone with write access to ClickHouse alone cannot change.
// The sink group commits an offset only after the rows before it were
// inserted, so for every partition of the audit topic, the last audit
// record before the group's committed offset must be in audit_log with the
// same event id. That anchors the tail that signed checkpoints leave open,
// and it finds a partition whose rows and checkpoints were all deleted.
//
// Partitions whose committed records Kafka already deleted for retention
// cannot be checked and are skipped.
func VerifyKafkaWitness(ctx context.Context, conn driver.Conn, database string, kcfg kafkaclient.Config, group string) ([]Problem, error) {
	if err := checkDatabaseName(database); err != nil {
		return nil, err
	}
	topic := kcfg.Topic(schemas.TopicAudit)
	cl, err := kcfg.NewClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch the committed offsets of group %s: %w", group, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the start offsets of %s: %w", topic, err)
	}

	var problems []Problem
	for p, start := range starts[topic] {
		c, ok := committed.Lookup(topic, p)
		if !ok || c.Err != nil || c.At <= start.Offset {
			continue
		}
		from := max(start.Offset, c.At-witnessWindow)
		offset, id, found, err := lastRecord(ctx, kcfg, topic, p, from, c.At)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		stored, ok, err := storedEventID(ctx, conn, database, p, offset)
		if err != nil {
			return nil, err
		}
		switch {
		case !ok:
			problems = append(problems, Problem{
				Partition: p, Offset: offset, Problem: ProblemCommittedRowMissing,
				Detail: fmt.Sprintf("the sink committed offset %d in Kafka, but audit_log has no row for event %s at offset %d", c.At, id, offset),
			})
		case stored != id:
			problems = append(problems, Problem{
				Partition: p, Offset: offset, Problem: ProblemCommittedRowChanged,
				Detail: fmt.Sprintf("Kafka holds event %s at offset %d, audit_log holds %s", id, offset, stored),
			})
		}
	}
	return problems, nil
}

// lastRecord returns the offset and event id of the last committed audit
// record of partition in [from, to).
func lastRecord(ctx context.Context, kcfg kafkaclient.Config, topic string, partition int32, from, to int64) (int64, string, bool, error) {
	var (
		offset int64
		id     string
		found  bool
	)
	err := kcfg.ReadRanges(ctx, topic, map[int32]kafkaclient.Range{partition: {From: from, To: to}}, func(r *kgo.Record) error {
		var ev struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r.Value, &ev) == nil && ev.ID != "" {
			offset, id, found = r.Offset, ev.ID, true
		}
		return nil
	})
	if err != nil {
		return 0, "", false, fmt.Errorf("partition %d: %w", partition, err)
	}
	return offset, id, found, nil
}

// storedEventID returns the event id of the audit_log row at partition and
// offset.
func storedEventID(ctx context.Context, conn driver.Conn, database string, partition int32, offset int64) (string, bool, error) {
	var (
		count uint64
		id    string
	)
	q := "SELECT count(), any(id) FROM " + database + ".audit_log WHERE kafka_partition = ? AND kafka_offset = ?"
	if err := conn.QueryRow(ctx, q, partition, offset).Scan(&count, &id); err != nil {
		return "", false, fmt.Errorf("read audit_log partition %d offset %d: %w", partition, offset, err)
	}
	return id, count > 0, nil
}
