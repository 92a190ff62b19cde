package schemas

// Kinds of raw records, stored in the HeaderKind header.
const (
	KindWhatsApp = "whatsapp"
	KindSync     = "sync"
)

// Kafka record headers that ingest sets on raw records. The record value is
// the exact body bytes as received (WhatsApp) or the exact bytes of one sync
// event as sent inside the batch.
const (
	// HeaderKind is KindWhatsApp or KindSync.
	HeaderKind = "sg-kind"
	// HeaderRequestID is the ingest-assigned id of the HTTP request.
	HeaderRequestID = "sg-request-id"
	// HeaderReceivedAt is the receive time in RFC 3339 with nanoseconds.
	HeaderReceivedAt = "sg-received-at"
	// HeaderSource is the client address that ingest resolved.
	HeaderSource = "sg-source"
	// HeaderSignature is the X-Hub-Signature-256 value as received
	// ("sha256=<hex>"). WhatsApp records only.
	HeaderSignature = "sg-signature"
	// HeaderApp is the configured WhatsApp app name whose secret matched.
	HeaderApp = "sg-app"
	// HeaderDevice is the authenticated device id. Sync records only.
	HeaderDevice = "sg-device"
	// HeaderSubject is the authenticated token subject. Sync records only.
	HeaderSubject = "sg-subject"
	// HeaderMAC is the envelope MAC that ingest computes over a sync record,
	// see EnvelopeMAC. Sync records only.
	HeaderMAC = "sg-mac"
)
