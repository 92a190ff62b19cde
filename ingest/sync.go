package ingest

import (
	"context"
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
	headerDPoP     = "Dpop"
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
	Index   int    `json:"index"`
	EventID string `json:"event_id,omitempty"`
	Status  string `json:"status"`
	// Replayed marks an event that an earlier request of the device
	// stored; it was not stored again.
	Replayed bool `json:"replayed,omitempty"`
	// OriginalRequestID is the request that stored a replayed event.
	OriginalRequestID string      `json:"original_request_id,omitempty"`
	Error             *eventError `json:"error,omitempty"`
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
	if !s.enterDevice(x, device) {
		return
	}
	defer s.leaveDevice(device)
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
	case errors.Is(err, errEventTooLarge):
		s.fail(x, schemas.ReasonPayloadTooLarge, err.Error()+": an event may have at most "+strconv.Itoa(s.cfg.SyncMaxLineBytes)+" bytes")
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
		stored := make([]cacheKey, 0, len(recs))
		for i, err := range errs {
			res := &resp.Results[recIndex[i]]
			if errors.Is(err, errRecordTooLarge) {
				res.Status = eventRejected
				res.Error = &eventError{Code: schemas.ReasonPayloadTooLarge, Detail: "the event is larger than the event log accepts"}
				continue
			}
			if err != nil {
				res.Status = eventRejected
				res.Error = &eventError{Code: schemas.ReasonUnavailable, Detail: "the event could not be stored; retry it"}
				produceErr = err
				continue
			}
			k := keyOf(device, res.EventID)
			s.idem.remember(k, x.requestID, x.start)
			stored = append(stored, k)
		}
		s.replay.publishAccepted(x.requestID, stored, x.start)
	}

	firstRejection := ""
	replayed := 0
	for _, res := range resp.Results {
		if res.Status == eventAccepted {
			resp.Accepted++
			if res.Replayed {
				replayed++
			}
			continue
		}
		resp.Rejected++
		if firstRejection == "" {
			firstRejection = res.Error.Code
		}
	}
	status := http.StatusAccepted
	x.detail = "accepted=" + strconv.Itoa(resp.Accepted) + " rejected=" + strconv.Itoa(resp.Rejected)
	if replayed > 0 {
		x.detail += " replayed=" + strconv.Itoa(replayed)
	}
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

// authenticate checks the request's framing, token, DPoP proof and
// device binding. On failure it has sent the error response and returns
// ok false.
func (s *Server) authenticate(x *exchange, r *http.Request) (*accessClaims, string, bool) {
	authorizations := r.Header.Values("Authorization")
	devices := r.Header.Values(headerDeviceID)
	proofs := r.Header.Values(headerDPoP)
	if len(authorizations) > 1 || len(devices) > 1 || len(proofs) > 1 {
		s.fail(x, schemas.ReasonInvalidRequest, "send exactly one Authorization, one X-Device-ID and at most one DPoP header")
		return nil, "", false
	}
	if len(authorizations) == 0 {
		x.detail = "no Authorization header"
		s.failToken(x, schemeBearer, schemas.ReasonInvalidToken)
		return nil, "", false
	}
	scheme, token := splitAuthorization(authorizations[0])
	if scheme == "" {
		x.detail = "the Authorization scheme is neither Bearer nor DPoP"
		s.failToken(x, schemeBearer, schemas.ReasonInvalidToken)
		return nil, "", false
	}
	claims, authErr := s.tokens.verify(r.Context(), token)
	if authErr != nil {
		x.detail = clip(authErr.cause)
		s.failToken(x, scheme, authErr.code)
		return nil, "", false
	}

	// The token's binding decides the scheme: DPoP for tokens with
	// cnf.jkt, Bearer for the others (RFC 9449).
	bound := claims.Cnf != nil
	switch {
	case bound && scheme != schemeDPoP:
		x.detail = "a DPoP-bound token was sent with the Bearer scheme"
		s.failToken(x, schemeDPoP, schemas.ReasonInvalidToken)
		return nil, "", false
	case !bound && scheme == schemeDPoP:
		x.detail = "a token without cnf.jkt was sent with the DPoP scheme"
		s.failToken(x, schemeDPoP, schemas.ReasonInvalidToken)
		return nil, "", false
	case !bound && !s.cfg.SyncAuth.AllowUnboundTokens:
		x.detail = "the token has no cnf.jkt and allow_unbound_tokens is false"
		s.failToken(x, schemeDPoP, schemas.ReasonInvalidToken)
		return nil, "", false
	}

	if len(devices) == 0 || !validID(devices[0], maxIDLen) {
		s.fail(x, schemas.ReasonInvalidRequest, "the X-Device-ID header must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
		return nil, "", false
	}
	device := devices[0]
	// The audit event names the device the token authenticates, never the
	// header alone: failures counted per device must not let one token
	// holder get another device blocked by naming it in X-Device-ID.
	x.device = claims.DeviceID
	if claims.DeviceID != device {
		x.detail = "X-Device-ID " + clip(device) + " differs from the token's device_id"
		s.fail(x, schemas.ReasonDeviceMismatch, "the token is not bound to this device")
		return nil, "", false
	}

	// The device's blocks and rate limit come after the proof's signature
	// and binding, so that a stolen bound token without its key cannot
	// spend the owner's budget. They come before the jti claim, so that one
	// device cannot fill the shared replay log faster than its rate limit.
	var jti string
	if bound {
		if len(proofs) == 0 {
			x.detail = "a DPoP-bound token came without a DPoP header"
			s.failToken(x, schemeDPoP, schemas.ReasonInvalidDPoPProof)
			return nil, "", false
		}
		var err *authError
		if jti, err = s.dpop.check(proofs[0], r.Method, r.URL.EscapedPath(), token, claims.Cnf.JKT); err != nil {
			x.detail = clip(err.cause)
			s.failToken(x, schemeDPoP, err.code)
			return nil, "", false
		}
	}
	if !s.admitDevice(x, device) {
		return nil, "", false
	}
	if bound {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
		err := s.dpop.claim(ctx, claims.Cnf.JKT, jti)
		cancel()
		if err != nil {
			x.detail = clip(err.cause)
			if err.code == schemas.ReasonUnavailable {
				s.fail(x, err.code, "the server cannot check DPoP proofs now; retry later")
				return nil, "", false
			}
			s.failToken(x, schemeDPoP, err.code)
			return nil, "", false
		}
	}
	return claims, device, true
}

// failToken rejects a token or proof with 401 or 403 and a
// WWW-Authenticate challenge of the scheme (RFC 6750, RFC 9449). The
// detail does not tell which check failed.
func (s *Server) failToken(x *exchange, scheme, code string) {
	h := x.Header()
	if code == schemas.ReasonInsufficientScope {
		h.Set("WWW-Authenticate", scheme+` error="insufficient_scope", scope="`+s.cfg.SyncAuth.RequiredScope+`"`)
		s.fail(x, code, "the token lacks the scope "+s.cfg.SyncAuth.RequiredScope)
		return
	}
	h.Set("WWW-Authenticate", scheme+` error="`+code+`"`)
	if code == schemas.ReasonInvalidDPoPProof {
		s.fail(x, code, "the DPoP proof is missing, malformed, replayed or not bound to the token")
		return
	}
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

	x.expectPending = false
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
	case errors.Is(err, errBadGzip) && counted.err != nil:
		// The body itself could not be read, which the gzip reader
		// reports as a broken stream.
		s.failBodyRead(x, counted.err)
		return nil, false
	case errors.Is(err, errBadGzip):
		s.fail(x, schemas.ReasonInvalidRequest, "the body is not valid gzip")
		return nil, false
	case err != nil:
		s.failBodyRead(x, err)
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
		if orig, ok := s.idem.lookup(device, id, x.start); ok {
			// Stored by an earlier request: report the original result and
			// store nothing.
			results[i].Replayed = true
			results[i].OriginalRequestID = orig.requestID
			continue
		}
		mac := schemas.EnvelopeMAC(s.envelopeKey, x.requestID, receivedAt, device, subject, raw)
		recs = append(recs, &kgo.Record{
			Topic: s.rawTopic,
			Key:   []byte(device),
			Value: s.sealer.Seal(schemas.KindSync, x.requestID, []byte(device), raw),
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

// countingReader counts the bytes read through it, and keeps the first
// error other than io.EOF, so that a failed read can be distinguished from a
// decoder's complaint about what it read.
type countingReader struct {
	r   io.Reader
	n   int
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if err != nil && !errors.Is(err, io.EOF) && c.err == nil {
		c.err = err
	}
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
