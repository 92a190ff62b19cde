package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/syncguard/syncguard/schemas"
)

// Routes as they appear in the route label and in audit events. Requests
// to other paths share routeUnknown, so that the label stays bounded.
const (
	routeHandshake     = "GET /webhooks/whatsapp"
	routeWebhook       = "POST /webhooks/whatsapp"
	routeWebhookOther  = "/webhooks/whatsapp"
	routeSync          = "POST /v1/sync/events"
	routeSyncOther     = "/v1/sync/events"
	routeUnknown       = "unknown"
	problemTypePrefix  = "https://syncguard.dev/problems/"
	contentTypeProblem = "application/problem+json"
	contentTypeJSON    = "application/json"
)

// exchange is one request and its response. It records what the audit
// event and the metrics need, and counts the bytes written.
type exchange struct {
	w         http.ResponseWriter
	status    int
	bytesOut  int
	bytesIn   int
	start     time.Time
	route     string
	requestID string
	source    string
	reason    string
	account   string
	device    string
	detail    string
	// body is the request body of an HTTP/1 request that has one, until
	// settleBody has dealt with what the handler left unread.
	body io.ReadCloser
	// expectPending is set for an HTTP/1 request that sent Expect:
	// 100-continue, until its handler starts to read the body.
	expectPending bool
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// Header implements http.ResponseWriter.
func (x *exchange) Header() http.Header { return x.w.Header() }

// WriteHeader implements http.ResponseWriter.
func (x *exchange) WriteHeader(status int) {
	if x.status == 0 {
		x.status = status
	}
	x.w.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (x *exchange) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := x.w.Write(b)
	x.bytesOut += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (x *exchange) Unwrap() http.ResponseWriter { return x.w }

// begin starts an audited exchange. The caller must call finish.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, route string) *exchange {
	s.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	*x = exchange{
		w:         w,
		start:     s.now(),
		route:     route,
		requestID: newID(),
		source:    remoteHost(r.RemoteAddr),
		reason:    schemas.ReasonOK,
	}
	// Only HTTP/1 bodies need settleBody: over HTTP/2 a response ends its
	// stream whatever is left of the body. A client that sent Expect:
	// 100-continue waits for the server to request the body. Reading it
	// would send 100 Continue and invite a rejected client to upload, so
	// settleBody closes such a connection instead.
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		if expectsContinue(r) {
			x.expectPending = true
		} else {
			x.body = r.Body
		}
	}
	h := w.Header()
	h.Set("X-Request-Id", x.requestID)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	return x
}

// finish records the exchange in the metrics and emits its audit event.
func (s *Server) finish(x *exchange) {
	if x.status == 0 {
		// The handler wrote nothing: net/http sends 200 with no body.
		x.status = http.StatusOK
	}
	// NOTE: the row records the response the handler wrote, not whether
	// it reached the client. Flushing here to find out would hold the row
	// back for as long as an HTTP/2 client keeps its flow-control window
	// shut, up to write_timeout, and the detectors drop rows that late.
	latency := s.now().Sub(x.start).Seconds()
	outcome := outcomeOf(x.status)
	s.metrics.requests.WithLabelValues(x.route, outcome, x.reason).Inc()
	s.metrics.duration.WithLabelValues(x.route).Observe(latency)
	s.audit(&schemas.AuditEvent{
		ID:             newID(),
		Time:           x.start.UTC(),
		Stage:          schemas.StageIngest,
		Action:         schemas.ActionHTTPRequest,
		Route:          x.route,
		Outcome:        outcome,
		Reason:         x.reason,
		Source:         x.source,
		Account:        x.account,
		Device:         x.device,
		RequestID:      x.requestID,
		Status:         x.status,
		BytesIn:        x.bytesIn,
		BytesOut:       x.bytesOut,
		LatencySeconds: latency,
		Detail:         x.detail,
	})
	*x = exchange{}
	exchangePool.Put(x)
	s.inFlight.Add(-1)
}

func outcomeOf(status int) string {
	switch {
	case status < 400:
		return schemas.OutcomeAccepted
	case status < 500:
		return schemas.OutcomeRejected
	default:
		return schemas.OutcomeError
	}
}

// fail responds with an application/problem+json body for code. detail
// must never contain a secret, a token or body content.
func (s *Server) fail(x *exchange, code, detail string) {
	p, ok := problems[code]
	if !ok {
		panic("BUG: no problem registered for code " + code)
	}
	x.reason = code
	if x.detail == "" {
		x.detail = detail
	}
	h := x.Header()
	h.Set("Content-Type", contentTypeProblem)
	if x.body != nil && (code == schemas.ReasonPayloadTooLarge || code == schemas.ReasonRequestTimeout) {
		// The rest of the body is too large to read, or it does not come.
		x.body = nil
		closeConn(x.w)
	}
	s.settleBody(x)
	if p.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", s.retryAfter)
	}

	b := make([]byte, 0, 256)
	b = append(b, `{"type":"`...)
	b = append(b, problemTypePrefix...)
	b = append(b, code...)
	b = append(b, `","title":`...)
	b = json.AppendEscape(b, p.title, 0)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(p.status), 10)
	b = append(b, `,"code":"`...)
	b = append(b, code...)
	b = append(b, `","detail":`...)
	b = json.AppendEscape(b, detail, 0)
	b = append(b, `,"request_id":"`...)
	b = append(b, x.requestID...)
	b = append(b, "\"}\n"...)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	x.WriteHeader(p.status)
	_, _ = x.Write(b)
}

// Limits of settleBody.
const (
	// bodyDrainWait is how long a response waits for the rest of a body.
	bodyDrainWait = 100 * time.Millisecond
	// maxBodyDrain is the maximum of a body read and dropped, the same as
	// net/http reads after a handler returns.
	maxBodyDrain = 256 << 10
)

// settleBody reads and drops what the handler left of an HTTP/1 request
// body, before the response headers are written. net/http would read it
// anyway before sending the response, and for a client that stalls
// mid-body it would wait until read_timeout, holding back a response that
// is ready. A body that ends within bodyDrainWait and maxBodyDrain keeps
// its connection for the next request, as keep-alive and pipelining
// clients expect. Otherwise the response carries Connection: close and
// goes out at once; net/http then closes the connection.
func (s *Server) settleBody(x *exchange) {
	if x.expectPending {
		// The body was never requested, so none will come.
		x.expectPending = false
		closeConn(x.w)
		return
	}
	if x.body == nil {
		return
	}
	body := x.body
	x.body = nil
	rc := http.NewResponseController(x.w)
	if err := rc.SetReadDeadline(time.Now().Add(bodyDrainWait)); err == nil {
		n, err := io.Copy(io.Discard, io.LimitReader(body, maxBodyDrain+1))
		x.bytesIn += int(n)
		if err == nil && n <= maxBodyDrain {
			// Lift the short deadline, which would otherwise end net/http's
			// wait for the next request on this connection.
			_ = rc.SetReadDeadline(time.Time{})
			return
		}
	}
	closeConn(x.w)
}

// closeConn makes net/http close an HTTP/1 connection after the response
// without reading more of the request body. Connection: close skips the
// read before the response. A read deadline in the past ends the read
// after it at once, which would otherwise hold the socket until
// read_timeout.
func closeConn(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// expectsContinue reports whether r requests 100 Continue before sending
// its body.
func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	// Since Go 1.24, crypto/rand.Read never returns an error.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// remoteHost returns the host part of a RemoteAddr.
func remoteHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}
