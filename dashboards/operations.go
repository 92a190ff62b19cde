package dashboards

// OperationsUID is the uid of the SyncGuard operations dashboard.
const OperationsUID = "syncguard-operations"

// scrapeJob is the job name of the SyncGuard targets in
// deploy/prometheus/prometheus.yml.
const scrapeJob = "syncguard"

// Operations returns the dashboard for operators, over the Prometheus
// metrics of every SyncGuard process.
func Operations() Dashboard {
	panels := []Panel{
		statPanel(6, "Targets up",
			"SyncGuard processes that Prometheus scraped successfully.",
			"short",
			promTarget(`sum(up{job="`+scrapeJob+`"})`, "up")),
		statPanel(6, "Request rate",
			"HTTP requests per second answered by every ingest instance.",
			"reqps",
			promTarget(`sum(rate(syncguard_ingest_requests_total[$__rate_interval]))`, "requests")),
		withThresholds(statPanel(6, "5xx ratio",
			"Share of ingest requests answered with a 5xx status over the last 5 minutes.",
			"percentunit",
			promTarget(`sum(rate(syncguard_ingest_requests_total{outcome="error"}[5m])) / sum(rate(syncguard_ingest_requests_total[5m]))`, "5xx")),
			0.01, 0.05),
		statPanel(6, "Alerts raised (1h)",
			"Alerts that the detectors raised in the last hour, over every rule and severity.",
			"short",
			promTarget(`sum(increase(syncguard_detector_alerts_total[1h]))`, "alerts")),

		timeSeriesPanel(12, "Request rate by outcome",
			"Ingest requests per second: accepted (2xx), rejected (4xx) and error (5xx).",
			"reqps",
			promTarget(`sum by (outcome) (rate(syncguard_ingest_requests_total[$__rate_interval]))`, "{{outcome}}")),
		timeSeriesPanel(12, "5xx and 503 rate",
			"Ingest requests per second answered with any 5xx status, and those answered 503 because Kafka did not acknowledge the record in time.",
			"reqps",
			promTarget(`sum(rate(syncguard_ingest_requests_total{outcome="error"}[$__rate_interval]))`, "5xx"),
			promTarget(`sum(rate(syncguard_ingest_requests_total{reason="unavailable"}[$__rate_interval]))`, "503 unavailable")),

		timeSeriesPanel(12, "Request duration p50 / p99",
			"Ingest request duration by route, and the part of it spent waiting for Kafka to acknowledge the raw records. A p99 that follows the Kafka wait points at the broker, one that does not at ingest itself.",
			"s",
			promTarget(`histogram_quantile(0.5, sum by (le, route) (rate(syncguard_ingest_request_duration_seconds_bucket[$__rate_interval])))`, "p50 {{route}}"),
			promTarget(`histogram_quantile(0.99, sum by (le, route) (rate(syncguard_ingest_request_duration_seconds_bucket[$__rate_interval])))`, "p99 {{route}}"),
			promTarget(`histogram_quantile(0.99, sum by (le) (rate(syncguard_ingest_produce_seconds_bucket[$__rate_interval])))`, "p99 Kafka acknowledgement")),
		timeSeriesPanel(12, "Produce errors and audit drops",
			"Raw records Kafka did not acknowledge (their requests got 503), and audit events ingest could not deliver.",
			"ops",
			promTarget(`sum(rate(syncguard_ingest_produce_errors_total[$__rate_interval]))`, "produce errors"),
			promTarget(`sum(rate(syncguard_ingest_audit_dropped_total[$__rate_interval]))`, "audit dropped")),

		timeSeriesPanel(12, "Processor records by outcome",
			"Raw records processed in committed transactions per second.",
			"ops",
			promTarget(`sum by (outcome) (rate(syncguard_processor_records_total[$__rate_interval]))`, "{{outcome}}")),
		timeSeriesPanel(12, "Sink rows written by table",
			"Rows inserted into ClickHouse per second.",
			"wps",
			promTarget(`sum by (table) (rate(syncguard_sink_rows_written_total[$__rate_interval]))`, "{{table}}")),

		timeSeriesPanel(12, "Sink insert errors by table",
			"Failed ClickHouse INSERT attempts per second. The sink retries each one, so sustained errors mean rows are not being stored.",
			"ops",
			promTarget(`sum by (table) (rate(syncguard_sink_insert_errors_total[$__rate_interval]))`, "{{table}}")),
		timeSeriesPanel(12, "Sink lag",
			"Records between the last fetched record and the high watermark, by topic.",
			"short",
			promTarget(`sum by (topic) (syncguard_sink_lag_records)`, "{{topic}}")),

		timeSeriesPanel(12, "Detector keys vs capacity",
			"Keys each detector rule tracks, per instance, and the maximum it may track (detector.max_keys).",
			"short",
			promTarget(`syncguard_detector_keys`, "{{rule}} keys {{instance}}"),
			promTarget(`syncguard_detector_keys_capacity`, "{{rule}} capacity {{instance}}")),
		withThresholds(timeSeriesPanel(12, "Detector key usage",
			"Tracked keys as a share of capacity, the highest instance per rule. At capacity, rules evict keys with their windows and baselines.",
			"percentunit",
			promTarget(`max by (rule) (syncguard_detector_keys / (syncguard_detector_keys_capacity > 0))`, "{{rule}}")),
			0.75, 0.9),

		timeSeriesPanel(12, "Alert rate by rule and severity",
			"Alerts the detectors raised per second.",
			"ops",
			promTarget(`sum by (rule, severity) (rate(syncguard_detector_alerts_total[$__rate_interval]))`, "{{rule}} {{severity}}")),
		timeSeriesPanel(12, "Detector evictions",
			"Keys evicted per second because their rule was at capacity.",
			"ops",
			promTarget(`sum by (rule) (rate(syncguard_detector_evictions_total[$__rate_interval]))`, "{{rule}}")),
	}
	return Dashboard{
		UID:           OperationsUID,
		Title:         "SyncGuard operations",
		Description:   "Request rates, errors, sink and detector health, from the Prometheus metrics.",
		Tags:          []string{"syncguard", "prometheus"},
		Timezone:      "utc",
		GraphTooltip:  1,
		Refresh:       "30s",
		SchemaVersion: schemaVersion,
		Version:       1,
		Time:          TimeRange{From: "now-3h", To: "now"},
		Templating:    List{List: []any{}},
		Annotations:   List{List: []any{}},
		Panels:        layout(panels),
	}
}
