package schemas

import "time"

// Stages that emit audit events.
const (
	StageIngest    = "ingest"
	StageProcessor = "processor"
	StageDetector  = "detector"
	StageSink      = "sink"
	// StageOperator marks steps that a person took with the syncguard
	// command, such as publishing a block.
	StageOperator = "operator"
)

// Outcomes of an audited step.
const (
	OutcomeAccepted  = "accepted"
	OutcomeRejected  = "rejected"
	OutcomeDuplicate = "duplicate"
	OutcomeError     = "error"
)

// Actions of audited steps.
const (
	ActionHTTPRequest = "http_request" // ingest: one per HTTP request
	ActionVerify      = "verify"       // processor: signature or MAC check
	ActionEncrypt     = "encrypt"      // processor: content encrypted
	ActionRoute       = "route"        // processor: record routed to a topic
	ActionDeadLetter  = "dead_letter"  // processor: record sent to the DLQ
	ActionAlert       = "alert"        // detector: alert raised
	ActionContain     = "contain"      // detector or operator: control record
)

// Reason codes are stable and documented; dashboards and detectors group by
// them. They double as the problem "code" in ingest error responses.
const (
	ReasonOK               = "ok"
	ReasonInvalidSignature = "invalid_signature"
	ReasonMissingSignature = "missing_signature"
	ReasonInvalidToken     = "invalid_token"
	// ReasonInvalidDPoPProof is a DPoP proof that is missing, malformed,
	// replayed or not bound to the token.
	ReasonInvalidDPoPProof  = "invalid_dpop_proof"
	ReasonDeviceMismatch    = "device_mismatch"
	ReasonInsufficientScope = "insufficient_scope"
	ReasonPayloadTooLarge   = "payload_too_large"
	ReasonInvalidJSON       = "invalid_json"
	ReasonInvalidEvent      = "invalid_event"
	ReasonEventOutOfWindow  = "event_out_of_window"
	ReasonInvalidRequest    = "invalid_request"
	// ReasonRequestTimeout is a request body that did not arrive within
	// ingest.read_timeout.
	ReasonRequestTimeout   = "request_timeout"
	ReasonUnsupportedMedia = "unsupported_encoding"
	ReasonRateLimited      = "rate_limited"
	ReasonBlocked          = "blocked"
	ReasonForbiddenSource  = "forbidden_source"
	ReasonUnavailable      = "unavailable"
	ReasonVerifyFailed     = "verify_failed"
	ReasonInvalidMAC       = "invalid_mac"
	ReasonDuplicate        = "duplicate"
	ReasonParseError       = "parse_error"
	ReasonUnsupportedType  = "unsupported_type"
	ReasonHandshakeFailed  = "handshake_failed"
	ReasonNotFound         = "not_found"
	ReasonMethodNotAllowed = "method_not_allowed"
)

// AuditEvent is one step of the pipeline. Identifiers of people (phone
// numbers, WhatsApp ids, token subjects) are keyed pseudonyms, never raw.
// The sink turns each event into one row of the audit_log table and chains
// the rows of a partition by hash.
type AuditEvent struct {
	// ID is unique per step and makes sink writes idempotent.
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Stage     string    `json:"stage"`
	Action    string    `json:"action"`
	Route     string    `json:"route,omitempty"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason"`
	Source    string    `json:"source,omitempty"`     // client address
	Account   string    `json:"account,omitempty"`    // WhatsApp phone number id or business account
	Subject   string    `json:"subject,omitempty"`    // pseudonym of the data subject
	Device    string    `json:"device,omitempty"`     // sync device id
	MessageID string    `json:"message_id,omitempty"` // WhatsApp message id or sync event id
	RequestID string    `json:"request_id,omitempty"`
	Status    int       `json:"status,omitempty"` // HTTP status, ingest only
	BytesIn   int       `json:"bytes_in,omitempty"`
	BytesOut  int       `json:"bytes_out,omitempty"`
	// LatencySeconds is the time the step took.
	LatencySeconds float64 `json:"latency_seconds,omitempty"`
	// Detail is a short, non-secret explanation, never a body or a token.
	Detail string `json:"detail,omitempty"`
}
