package ingest

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

const (
	headerDeviceID = "X-Device-Id"
	// Statuses of one event in a batch response.
	eventAccepted = "accepted"
	eventRejected = "rejected"
)

// batchResponse is the body of every response to a batch that was parsed.
type batchResponse struct {
	RequestID string        `json:"request_id"`
	Accepted  int           `json:"accepted"`
	Rejected  int           `json:"rejected"`
	Results   []eventResult `json:"results"`
}

type eventResult struct {
	Index   int         `json:"index"`
	EventID string      `json:"event_id,omitempty"`
	Status  string      `json:"status"`
	Error   *eventError `json:"error,omitempty"`
}

type eventError struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// serveSyncRoute dispatches /v1/sync/events by method.
func (s *Server) serveSyncRoute(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.serveMethodNotAllowed(w, r, routeSyncOther, http.MethodPost)
		return
	}
	s.serveSync(w, r)
}

// serveSync authenticates a device, validates its batch of events and
// produces one raw record per valid event. The token is checked before any
// body byte is read.
func (s *Server) serveSync(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, routeSync)
	defer s.finish(x)

	claims, device, ok := s.authenticate(x, r)
	if !ok {
		return
	}
	body, ok := s.readSyncBody(x, r)
	if !ok {
		return
	}

	media := parseMediaType(r.Header.Get("Content-Type"))
	events, err := parseBatch(media, body, batchLimits{maxEvents: s.cfg.SyncMaxEvents, maxLineBytes: s.cfg.SyncMaxLineBytes})
	switch {
	case errors.Is(err, errTooManyEvents):
		s.fail(x, schemas.ReasonPayloadTooLarge, "a batch may contain at most "+strconv.Itoa(s.cfg.SyncMaxEvents)+" events")
		return
	case errors.Is(err, errLineTooLong):
		s.fail(x, schemas.ReasonPayloadTooLarge, err.Error()+": an NDJSON line may have at most "+strconv.Itoa(s.cfg.SyncMaxLineBytes)+" bytes")
		return
	case errors.Is(err, errEmptyBatch):
		s.fail(x, schemas.ReasonInvalidRequest, "the batch contains no events")
		return
	case err != nil:
		s.fail(x, schemas.ReasonInvalidJSON, err.Error())
		return
	}

	resp := batchResponse{RequestID: x.requestID, Results: make([]eventResult, len(events))}
	recs, recIndex := s.validateBatch(x, device, claims.Subject, events, resp.Results)

	var produceErr error
	if len(recs) > 0 {
		errs := s.produceAll(r.Context(), recs)
		for i, err := range errs {
			if err != nil {
				resp.Results[recIndex[i]].Status = eventRejected
				resp.Results[recIndex[i]].Error = &eventError{Code: schemas.ReasonUnavailable, Detail: "the event could not be stored; retry it"}
				produceErr = err
			}
		}
	}

	firstRejection := ""
	for _, res := range resp.Results {
		if res.Status == eventAccepted {
			resp.Accepted++
			continue
		}
		resp.Rejected++
		if firstRejection == "" {
			firstRejection = res.Error.Code
		}
	}
	status := http.StatusAccepted
	x.detail = "accepted=" + strconv.Itoa(resp.Accepted) + " rejected=" + strconv.Itoa(resp.Rejected)
	switch {
	case produceErr != nil:
		status = http.StatusServiceUnavailable
		x.reason = schemas.ReasonUnavailable
		x.detail += " produce: " + produceErr.Error()
		x.Header().Set("Retry-After", s.retryAfter)
	case resp.Accepted == 0:
		status = http.StatusUnprocessableEntity
		x.reason = firstRejection
	}
	s.writeJSON(x, status, &resp)
}

// authenticate checks the request's framing, token and device binding.
// On failure it has sent the error response and returns ok false.
func (s *Server) authenticate(x *exchange, r *http.Request) (*accessClaims, string, bool) {
	authorizations := r.Header.Values("Authorization")
	devices := r.Header.Values(headerDeviceID)
	if len(authorizations) > 1 || len(devices) > 1 {
		s.fail(x, schemas.ReasonInvalidRequest, "send exactly one Authorization and one X-Device-ID header")
		return nil, "", false
	}
	if len(authorizations) == 0 {
		x.detail = "no Authorization header"
		s.failToken(x, schemas.ReasonInvalidToken)
		return nil, "", false
	}
	claims, authErr := s.tokens.verify(authorizations[0])
	if authErr != nil {
		x.detail = clip(authErr.cause)
		s.failToken(x, authErr.code)
		return nil, "", false
	}
	if len(devices) == 0 || !validID(devices[0], maxIDLen) {
		s.fail(x, schemas.ReasonInvalidRequest, "the X-Device-ID header must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
		return nil, "", false
	}
	device := devices[0]
	x.device = device
	if claims.DeviceID != device {
		s.fail(x, schemas.ReasonDeviceMismatch, "the token is not bound to this device")
		return nil, "", false
	}
	return claims, device, true
}

// failToken rejects a token with 401 or 403 and the WWW-Authenticate
// header of RFC 6750. The detail does not tell which check failed.
func (s *Server) failToken(x *exchange, code string) {
	h := x.Header()
	if code == schemas.ReasonInsufficientScope {
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+s.cfg.SyncAuth.RequiredScope+`"`)
		s.fail(x, code, "the token lacks the scope "+s.cfg.SyncAuth.RequiredScope)
		return
	}
	h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	s.fail(x, code, "the access token is missing, malformed, expired or not trusted")
}

// readSyncBody checks the media type and coding, then reads the body
// within sync_max_body_bytes, before and after gzip decompression.
func (s *Server) readSyncBody(x *exchange, r *http.Request) ([]byte, bool) {
	if parseMediaType(r.Header.Get("Content-Type")) == mediaUnsupported {
		s.fail(x, schemas.ReasonUnsupportedMedia, "Content-Type must be application/json or application/x-ndjson")
		return nil, false
	}
	coding := parseContentEncoding(r.Header.Values("Content-Encoding"))
	if coding == codingUnsupported {
		s.fail(x, schemas.ReasonUnsupportedMedia, "Content-Encoding must be gzip, identity or absent")
		return nil, false
	}
	limit := s.cfg.SyncMaxBodyBytes
	tooLarge := "the body is larger than " + strconv.FormatInt(limit, 10) + " bytes"
	if r.ContentLength > limit {
		s.fail(x, schemas.ReasonPayloadTooLarge, tooLarge)
		return nil, false
	}

	counted := &countingReader{r: http.MaxBytesReader(x.w, r.Body, limit)}
	var body []byte
	var err error
	if coding == codingGzip {
		body, err = gunzipLimited(counted, limit)
	} else {
		body, err = readLimited(counted, r.ContentLength)
	}
	x.bytesIn = counted.n
	switch {
	case errors.Is(err, errBodyTooLarge):
		s.fail(x, schemas.ReasonPayloadTooLarge, tooLarge+" as sent or after decompression")
		return nil, false
	case errors.Is(err, errBadGzip):
		s.fail(x, schemas.ReasonInvalidRequest, "the body is not valid gzip")
		return nil, false
	case err != nil:
		x.detail = "reading body: " + err.Error()
		s.fail(x, schemas.ReasonInvalidRequest, "the request body could not be read")
		return nil, false
	}
	return body, true
}

// validateBatch fills results for every event and returns the records of
// the valid ones, with the index of each record's event.
func (s *Server) validateBatch(x *exchange, device, subject string, events [][]byte, results []eventResult) ([]*kgo.Record, []int) {
	rules := eventRules{
		device: device,
		now:    x.start,
		maxAge: s.cfg.SyncMaxEventAge,
		skew:   s.cfg.SyncMaxClockSkew,
	}
	receivedAt := x.start.UTC().Format(timeFormat)
	seen := make(map[string]bool, len(events))
	recs := make([]*kgo.Record, 0, len(events))
	recIndex := make([]int, 0, len(events))
	for i, raw := range events {
		id, rej := rules.validateEvent(raw)
		if rej == nil && seen[id] {
			rej = &eventRejection{code: schemas.ReasonDuplicate, detail: "event_id appears earlier in the batch"}
		}
		results[i] = eventResult{Index: i, EventID: id, Status: eventAccepted}
		if rej != nil {
			results[i].Status = eventRejected
			results[i].Error = &eventError{Code: rej.code, Detail: rej.detail}
			continue
		}
		seen[id] = true
		mac := schemas.EnvelopeMAC(s.envelopeKey, x.requestID, receivedAt, device, subject, raw)
		recs = append(recs, &kgo.Record{
			Topic: s.rawTopic,
			Key:   []byte(device),
			Value: s.sealer.Seal(schemas.KindSync, x.requestID, raw),
			Headers: []kgo.RecordHeader{
				{Key: schemas.HeaderKind, Value: []byte(schemas.KindSync)},
				{Key: schemas.HeaderRequestID, Value: []byte(x.requestID)},
				{Key: schemas.HeaderReceivedAt, Value: []byte(receivedAt)},
				{Key: schemas.HeaderSource, Value: []byte(x.source)},
				{Key: schemas.HeaderDevice, Value: []byte(device)},
				{Key: schemas.HeaderSubject, Value: []byte(subject)},
				{Key: schemas.HeaderMAC, Value: []byte(mac)},
			},
		})
		recIndex = append(recIndex, i)
	}
	return recs, recIndex
}

// writeJSON responds with v as JSON.
func (s *Server) writeJSON(x *exchange, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: encoding a response: " + err.Error())
	}
	b = append(b, '\n')
	h := x.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	x.WriteHeader(status)
	_, _ = x.Write(b)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// clip shortens an audit detail and drops control characters, because
// parts of it may come from the request.
func clip(s string) string {
	const max = 200
	out := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(out) < max; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}
