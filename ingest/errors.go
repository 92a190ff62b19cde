package ingest

import (
	"errors"
	"net/http"

	"github.com/syncguard/syncguard/schemas"
)

// Errors of request handling. Each maps to a stable reason code.
var (
	errBodyTooLarge     = errors.New("request body too large")
	errLineTooLong      = errors.New("NDJSON line too long")
	errEventTooLarge    = errors.New("event too large")
	errRecordTooLarge   = errors.New("record larger than Kafka accepts")
	errTooManyEvents    = errors.New("too many events in batch")
	errBadGzip          = errors.New("invalid gzip body")
	errMalformedBatch   = errors.New("malformed JSON batch")
	errEmptyBatch       = errors.New("batch contains no events")
	errTooDeep          = errors.New("JSON nested too deeply")
	errMissingSignature = errors.New("missing X-Hub-Signature-256 header")
	errBadSignature     = errors.New("invalid X-Hub-Signature-256")
)

// Errors of New.
var (
	// ErrNoEnvelopeKey is returned by New when Options.EnvelopeKey is not
	// 32 bytes long.
	ErrNoEnvelopeKey = errors.New("ingest: envelope key must be 32 bytes")
)

// problem is a stable error code with its HTTP status and title.
type problem struct {
	status int
	title  string
}

// problems lists every problem code that ingest responds with. The OpenAPI
// document lists the same codes and statuses.
var problems = map[string]problem{
	schemas.ReasonMissingSignature:  {http.StatusUnauthorized, "Missing signature"},
	schemas.ReasonInvalidSignature:  {http.StatusUnauthorized, "Invalid signature"},
	schemas.ReasonInvalidToken:      {http.StatusUnauthorized, "Invalid token"},
	schemas.ReasonInsufficientScope: {http.StatusForbidden, "Insufficient scope"},
	schemas.ReasonDeviceMismatch:    {http.StatusForbidden, "Device mismatch"},
	schemas.ReasonHandshakeFailed:   {http.StatusForbidden, "Verification handshake failed"},
	schemas.ReasonInvalidRequest:    {http.StatusBadRequest, "Invalid request"},
	schemas.ReasonInvalidJSON:       {http.StatusBadRequest, "Invalid JSON"},
	schemas.ReasonRequestTimeout:    {http.StatusRequestTimeout, "Request timeout"},
	schemas.ReasonNotFound:          {http.StatusNotFound, "Not found"},
	schemas.ReasonMethodNotAllowed:  {http.StatusMethodNotAllowed, "Method not allowed"},
	schemas.ReasonPayloadTooLarge:   {http.StatusRequestEntityTooLarge, "Payload too large"},
	schemas.ReasonUnsupportedMedia:  {http.StatusUnsupportedMediaType, "Unsupported media type or encoding"},
	schemas.ReasonUnavailable:       {http.StatusServiceUnavailable, "Service unavailable"},
	schemas.ReasonForbiddenSource:   {http.StatusForbidden, "Source not allowed"},
	schemas.ReasonBlocked:           {http.StatusForbidden, "Blocked"},
	schemas.ReasonRateLimited:       {http.StatusTooManyRequests, "Too many requests"},
	schemas.ReasonInvalidDPoPProof:  {http.StatusUnauthorized, "Invalid DPoP proof"},
}
