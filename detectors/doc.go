// Package detectors reads the audit stream, counts events per key in
// tumbling event-time windows, compares the counts with fixed thresholds and
// learned baselines, and raises deduplicated alerts to the alerts topic.
// Failure alerts against a source address or a device can also block that
// address or device for detector.containment.block_ttl, through a record on
// the control topic that ingest enforces.
//
// The rule logic lives in Rules, which does not use Kafka, so tests and
// scripted scenarios feed it audit events through Observe. Engine wraps
// Rules in a transactional consume-produce loop, so that the alerts raised
// for a batch of audit records and the consumed offsets of that batch are
// committed together.
//
// Rule families, one file each: detector_volume.go counts routed messages
// per account and per data subject; detector_failure.go counts failed
// authentications per source address and device, and forged raw records per
// account. window.go holds the bounded per-key state (windows, baselines,
// the watermark) and alerts.go the alert lifecycle (cooldown, escalation,
// deterministic IDs). containment.go turns alerts into blocks and
// remembers the blocks it published until they expire.
package detectors
