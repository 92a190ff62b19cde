package dashboards

import (
	"fmt"

	"github.com/syncguard/syncguard/schemas"
)

// OverviewUID is the uid of the SyncGuard overview dashboard.
const OverviewUID = "syncguard-overview"

// bucketExpr is the time bucket of a row's DateTime column: $__interval_s
// wide and aligned to the Unix epoch. It replaces the plugin's
// $__timeInterval macro, which expands to toStartOfInterval, a function
// that ClickHouse 18.16 lacks. The panels set a minimum interval of one
// minute, so a bucket is never shorter than that.
func bucketExpr(column string) string {
	return fmt.Sprintf("toDateTime(intDiv(toUInt32(%s), $__interval_s) * $__interval_s)", column)
}

// perMinute scales a row count per bucket to a count per minute, so that
// the value does not change with the bucket width.
const perMinute = "count() * 60 / $__interval_s"

// ingestRequests matches the one audit event per HTTP request that ingest
// emits.
var ingestRequests = fmt.Sprintf("stage = %s AND action = %s",
	sqlList(schemas.StageIngest), sqlList(schemas.ActionHTTPRequest))

// Overview returns the dashboard for security analysts, over the ClickHouse
// tables.
func Overview() Dashboard {
	panels := []Panel{
		requestsPanel(),
		latencyPanel(),
		rejectionsPanel(),
		topSignatureFailuresPanel(),
		messagesPanel(),
		statusesPanel(),
		lagPanel(),
		alertsPanel(),
		auditChainPanel(),
		checkpointsPanel(),
	}
	return Dashboard{
		UID:           OverviewUID,
		Title:         "SyncGuard overview",
		Description:   "Traffic, rejections, stored messages, alerts and the audit trail, from ClickHouse.",
		Tags:          []string{"syncguard", "clickhouse"},
		Timezone:      "utc",
		GraphTooltip:  1,
		Refresh:       "1m",
		SchemaVersion: schemaVersion,
		Version:       1,
		Time:          TimeRange{From: "now-6h", To: "now"},
		Templating:    List{List: []any{}},
		Annotations:   List{List: []any{}},
		Panels:        layout(panels),
	}
}

func requestsPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			%s AS bucket,
			outcome,
			%s AS requests_per_minute
		FROM audit_log
		WHERE $__timeFilter(time) AND %s
		GROUP BY bucket, outcome
		ORDER BY bucket, outcome`,
		bucketExpr("time"), perMinute, ingestRequests)
	p := timeSeriesPanel(12, "Requests per minute by outcome",
		"HTTP requests that ingest responded to, from the audit log: accepted (2xx), rejected (4xx) and error (5xx).",
		"cpm", sqlTarget(formatTimeSeries, sql))
	p.Interval = "1m"
	p.FieldConfig.Defaults.DisplayName = "${__field.labels.outcome}"
	return p
}

func latencyPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			%s AS bucket,
			quantile(0.5)(latency_seconds) AS p50,
			quantile(0.99)(latency_seconds) AS p99
		FROM audit_log
		WHERE $__timeFilter(time) AND %s
		GROUP BY bucket
		ORDER BY bucket`,
		bucketExpr("time"), ingestRequests)
	p := timeSeriesPanel(12, "Ingest latency p50 / p99",
		"Time from reading the request headers to the end of the response, from the audit log. "+
			"ClickHouse's quantile() samples at most 8192 values per bucket, so the quantiles are estimates.",
		"s", sqlTarget(formatTimeSeries, sql))
	p.Interval = "1m"
	return p
}

func rejectionsPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			concat(stage, ': ', reason) AS stage_reason,
			count() AS rejections
		FROM audit_log
		WHERE $__timeFilter(time) AND outcome = %s
		GROUP BY stage_reason
		ORDER BY rejections DESC, stage_reason
		LIMIT 20`,
		sqlList(schemas.OutcomeRejected))
	return barGaugePanel(12, "Rejections by reason",
		"Rejected requests (ingest) and records (processor) in the time range, by stage and reason code.",
		"short", sqlTarget(formatTable, sql))
}

func topSignatureFailuresPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			source,
			count() AS failed_signatures,
			min(time) AS first_seen,
			max(time) AS last_seen
		FROM audit_log
		WHERE $__timeFilter(time)
			AND stage = %s AND outcome = %s AND reason IN (%s)
			AND source != ''
		GROUP BY source
		ORDER BY failed_signatures DESC, source
		LIMIT 10`,
		sqlList(schemas.StageIngest), sqlList(schemas.OutcomeRejected),
		sqlList(schemas.ReasonInvalidSignature, schemas.ReasonMissingSignature))
	p := tablePanel(12, "Top 10 sources by failed signatures (last 1h)",
		"Client addresses whose webhook requests had an invalid or missing X-Hub-Signature-256 in the last hour.",
		sqlTarget(formatTable, sql))
	p.TimeFrom = "1h"
	return p
}

func messagesPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			%s AS bucket,
			type,
			%s AS messages_per_minute
		FROM messages
		WHERE $__timeFilter(inserted_at)
		GROUP BY bucket, type
		ORDER BY bucket, type`,
		bucketExpr("inserted_at"), perMinute)
	p := timeSeriesPanel(12, "Messages stored per minute by type",
		"Encrypted WhatsApp messages and sync events written to ClickHouse, by message or event type.",
		"cpm", sqlTarget(formatTimeSeries, sql))
	p.Interval = "1m"
	p.FieldConfig.Defaults.DisplayName = "${__field.labels.type}"
	return p
}

func statusesPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			%s AS bucket,
			status,
			%s AS updates_per_minute
		FROM statuses
		WHERE $__timeFilter(timestamp)
		GROUP BY bucket, status
		ORDER BY bucket, status`,
		bucketExpr("timestamp"), perMinute)
	p := timeSeriesPanel(12, "Delivery statuses per minute by status",
		"WhatsApp delivery status updates (sent, delivered, read, failed) by the time WhatsApp reported them.",
		"cpm", sqlTarget(formatTimeSeries, sql))
	p.Interval = "1m"
	p.FieldConfig.Defaults.DisplayName = "${__field.labels.status}"
	return p
}

func lagPanel() Panel {
	sql := fmt.Sprintf(`
		SELECT
			%s AS bucket,
			quantile(0.5)(lag_seconds) AS p50,
			quantile(0.99)(lag_seconds) AS p99,
			max(lag_seconds) AS max_lag
		FROM (
			SELECT
				inserted_at,
				toInt64(toUInt32(inserted_at)) - toInt64(toUInt32(received_at)) AS lag_seconds
			FROM messages
			WHERE $__timeFilter(inserted_at)
		)
		GROUP BY bucket
		ORDER BY bucket`,
		bucketExpr("inserted_at"))
	p := timeSeriesPanel(24, "End-to-end lag (received to stored)",
		"Seconds from ingest receiving a message to the sink inserting it into ClickHouse. "+
			"Both times have whole-second precision and come from different hosts' clocks, "+
			"so small values and negative ones reflect clock skew.",
		"s", sqlTarget(formatTimeSeries, sql))
	p.Interval = "1m"
	return p
}

func alertsPanel() Panel {
	sql := `
		SELECT
			raised_at,
			rule,
			key,
			severity,
			count,
			score,
			first_seen,
			last_seen,
			summary
		FROM alerts
		WHERE $__timeFilter(raised_at)
		ORDER BY raised_at DESC, id
		LIMIT 50`
	return tablePanel(24, "Latest alerts",
		"The 50 most recent alerts that the detectors raised in the time range.",
		sqlTarget(formatTable, sql))
}

// auditChainPanel reads the whole audit_log, whatever the time range,
// because the chain of a partition spans all its rows. The latest hash is
// read for the last offset of each partition only, through the sorting key,
// so that the query does not read every row's hash.
func auditChainPanel() Panel {
	sql := `
		SELECT
			kafka_partition,
			audit_rows,
			last_offset,
			last_time,
			hash AS last_hash
		FROM (
			SELECT
				kafka_partition,
				count() AS audit_rows,
				max(kafka_offset) AS last_offset,
				max(time) AS last_time
			FROM audit_log
			GROUP BY kafka_partition
		)
		ANY LEFT JOIN (
			SELECT kafka_partition, hash
			FROM audit_log
			WHERE (kafka_partition, kafka_offset) IN (
				SELECT kafka_partition, max(kafka_offset)
				FROM audit_log
				GROUP BY kafka_partition
			)
		) USING kafka_partition
		ORDER BY kafka_partition`
	return tablePanel(12, "Audit chain per partition",
		"Rows, last offset and the hash at the head of each partition's audit hash chain, over the whole table. "+
			"Compare the hash with the latest signed checkpoint or with `syncguard audit verify`.",
		sqlTarget(formatTable, sql))
}

// checkpointsPanel compares each checkpoint's hash with the hash stored in
// audit_log at the same partition and offset. A 0 in hash_matches means the
// row was rewritten or deleted after it was checkpointed. The signature
// itself is checked only by the audit verify command, not here.
func checkpointsPanel() Panel {
	sql := `
		SELECT
			kafka_partition,
			kafka_offset,
			signed_at,
			key_id,
			(kafka_partition, kafka_offset, hash) IN (
				SELECT kafka_partition, kafka_offset, hash
				FROM audit_log
				WHERE (kafka_partition, kafka_offset) IN (
					SELECT kafka_partition, kafka_offset
					FROM audit_checkpoints
					WHERE $__timeFilter(signed_at)
				)
			) AS hash_matches
		FROM audit_checkpoints
		WHERE $__timeFilter(signed_at)
		ORDER BY signed_at DESC, kafka_partition
		LIMIT 50`
	return tablePanel(12, "Signed audit checkpoints",
		"The latest 50 checkpoints in the time range. hash_matches is 0 when audit_log no longer holds the "+
			"checkpointed hash at that partition and offset.",
		sqlTarget(formatTable, sql))
}
