-- Initial SyncGuard tables.
--
-- Every statement runs on ClickHouse 18.16 and on current releases, so none
-- uses DateTime64, TTL, codecs, LowCardinality or the IPv6 type. {db} is the
-- database name, substituted by the migration runner. A semicolon at the end
-- of a line ends a statement; string literals contain no semicolons.
--
-- Every row written by the sink carries the Kafka partition and offset of the
-- record it came from: the sink reads them back after a restart to resume
-- exactly where the stored data ends, without duplicates.

-- audit_log is the append-only audit trail, one row per AuditEvent. The rows
-- of each Kafka partition form a hash chain in offset order:
-- hash = hex(SHA-256(prev_hash || canonical encoding of the row)), and the
-- first row of a partition has 64 zeros as prev_hash.
CREATE TABLE IF NOT EXISTS {db}.audit_log (
    time DateTime,
    time_ns UInt32,
    id String,
    stage String,
    action String,
    route String,
    outcome String,
    reason String,
    source String,
    account String,
    subject String,
    device String,
    message_id String,
    request_id String,
    status UInt16,
    bytes_in UInt32,
    bytes_out UInt32,
    latency_seconds Float64,
    detail String,
    kafka_partition Int32,
    kafka_offset Int64,
    prev_hash FixedString(64),
    hash String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (kafka_partition, kafka_offset);

-- messages holds encrypted WhatsApp messages and sync events (kind 'sync').
-- nonce and ciphertext are raw bytes; meta is a JSON object of the fields
-- that are not content (media ids, mime types, reply ids, context ids). A message is identified by kind, device
-- and message id, because sync event ids are unique only per device: two
-- devices that send the same event id keep one row each. ReplacingMergeTree
-- collapses a repeated identity within one month of received_at (reads
-- that must not see a duplicate before the merge use FINAL); the sink
-- itself writes each Kafka record once.
CREATE TABLE IF NOT EXISTS {db}.messages (
    message_id String,
    kind String,
    type String,
    account String,
    subject String,
    device String,
    conversation String,
    sent_at DateTime,
    received_at DateTime,
    key_id String,
    nonce String,
    ciphertext String,
    client_encrypted UInt8,
    client_alg String,
    client_iv String,
    meta String,
    errors String,
    request_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (kind, device, message_id);

-- statuses holds every WhatsApp delivery status update as received. The
-- same update stored twice collapses into one row when parts merge.
CREATE TABLE IF NOT EXISTS {db}.statuses (
    message_id String,
    account String,
    recipient String,
    recipient_user String,
    status String,
    timestamp DateTime,
    conversation String,
    pricing String,
    errors String,
    request_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (message_id, timestamp, status);

-- statuses_latest is the latest delivery state per message. latest_status
-- never moves backwards: sent < delivered < read ranks first and the timestamp
-- breaks ties, so a late "delivered" never hides an earlier "read". A failed
-- update ranks below every other status and also sets failed to 1.
CREATE VIEW IF NOT EXISTS {db}.statuses_latest AS
SELECT
    message_id,
    any(account) AS account,
    any(recipient) AS recipient,
    argMax(status, (transform(status, ['sent', 'delivered', 'read'], [1, 2, 3], 0), timestamp)) AS latest_status,
    max(status = 'failed') AS failed,
    min(timestamp) AS first_update,
    max(timestamp) AS last_update
FROM {db}.statuses
GROUP BY message_id;

-- alerts holds every alert that the detectors raised. Alert ids are
-- deterministic (rule, key, window and severity), so an alert raised again
-- after a detector restart collapses into one row when parts merge.
CREATE TABLE IF NOT EXISTS {db}.alerts (
    id String,
    rule String,
    key String,
    severity String,
    window_seconds UInt32,
    window_start DateTime,
    count UInt64,
    threshold Float64,
    baseline Float64,
    score Float64,
    first_seen DateTime,
    last_seen DateTime,
    raised_at DateTime,
    summary String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(raised_at)
ORDER BY (rule, id);

-- audit_checkpoints holds signed audit chain checkpoints: the hash of the row
-- at kafka_offset in kafka_partition of audit_log, signed with key_id.
CREATE TABLE IF NOT EXISTS {db}.audit_checkpoints (
    kafka_partition Int32,
    kafka_offset Int64,
    hash String,
    signed_at DateTime,
    signature String,
    key_id String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(signed_at)
ORDER BY (kafka_partition, kafka_offset);
