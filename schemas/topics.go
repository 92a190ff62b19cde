package schemas

// Topic suffixes. The full topic name is the configured prefix followed by
// the suffix, so that several deployments can share one Kafka cluster.
const (
	// TopicRaw carries every accepted request as received: WhatsApp bodies
	// byte for byte, and one record per accepted sync event. The key is the
	// WhatsApp phone number id, or the sync device id.
	TopicRaw = "raw"
	// TopicMessages carries EncryptedMessage values keyed by message id.
	TopicMessages = "messages"
	// TopicStatuses carries Status values keyed by message id.
	TopicStatuses = "statuses"
	// TopicSync carries EncryptedMessage values of sync events keyed by
	// device id.
	TopicSync = "sync"
	// TopicDLQ carries DeadLetter values: raw records the processors could
	// not accept, with the reason.
	TopicDLQ = "dlq"
	// TopicAudit carries AuditEvent values keyed by their partition key
	// (source address for ingest events, account for processor events).
	TopicAudit = "audit"
	// TopicAlerts carries Alert values keyed by rule and key.
	TopicAlerts = "alerts"
	// TopicControl is compacted and carries ControlRecord values keyed by
	// "<kind>/<value>", so that the latest record per target wins.
	TopicControl = "control"
	// TopicKeys is compacted and carries WrappedKey values keyed by
	// "<subject>/<key id>". Erasing a subject writes tombstones for its keys.
	TopicKeys = "keys"
	// TopicDedupe is compacted and carries one marker per message id that a
	// processor has routed, written in the same transaction as the output
	// and in the same partition number as the raw record. A processor that
	// takes over a raw partition reads the markers back to rebuild its
	// deduplication state, so redeliveries stay dropped across restarts.
	TopicDedupe = "dedupe"
	// TopicReplay carries the claims that ingest instances share to accept
	// each DPoP proof once: a hashed (jkt, jti) key and the claim time.
	// Records are deleted after ReplayRetention.
	TopicReplay = "replay"
)

// AllTopics lists every topic suffix, for topic creation at start-up.
var AllTopics = []string{
	TopicRaw, TopicMessages, TopicStatuses, TopicSync, TopicDLQ,
	TopicAudit, TopicAlerts, TopicControl, TopicKeys, TopicDedupe,
	TopicReplay,
}

// CompactedTopics lists the suffixes that use cleanup.policy=compact.
var CompactedTopics = map[string]bool{TopicControl: true, TopicKeys: true, TopicDedupe: true}

// ReplayRetention is retention.ms of the replay topic. It must exceed the
// life of a claim (twice dpop_max_age, at most 20 minutes) plus the clock
// skew between instances.
const ReplayRetention = "3600000"

// Topic returns the full name of the topic with the given suffix.
func Topic(prefix, suffix string) string { return prefix + suffix }
