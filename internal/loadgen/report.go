package loadgen

import (
	"sync"
	"sync/atomic"
	"time"
)

// Report is the outcome of a run.
type Report struct {
	// Start is when the run began.
	Start time.Time
	// Elapsed runs from Start until the last request completed.
	Elapsed time.Duration
	// Sent counts requests that completed with a response or an error.
	// Requests that could not be generated are counted in Errors only.
	Sent int64
	// Missed counts requests that the open-loop schedule planned before
	// the end of the run but that were not sent, because every connection
	// was busy.
	Missed int64
	// Canceled counts requests aborted because the run's context ended.
	Canceled int64
	// Errors counts requests that got no response (connection refused,
	// timeout, ...) or could not be generated.
	Errors int64
	// ErrorSamples contains up to 8 distinct error messages.
	ErrorSamples []string
	// ByStatus counts responses by HTTP status code.
	ByStatus map[int]int64
	// ByKind breaks the counts down by kind of request.
	ByKind map[Kind]KindReport
	// Rate is the achieved rate: Sent per second of Elapsed.
	Rate float64
	// Latency summarises the response times of all responses, whatever
	// their status. In open loop it is measured from each request's
	// scheduled time, so time spent waiting for a free connection counts.
	// In closed loop it is measured from when the request was sent.
	Latency LatencySummary
	// Histogram contains every recorded latency.
	Histogram *Histogram
	// Acks lists, in completion order, each message, status and sync event
	// of a webhook or sync request that got a 2xx response, with the time
	// the response arrived. Redeliveries are not listed again.
	Acks []Ack
	// AcksDropped counts acknowledgements not listed because Acks reached
	// Config.TrackAcks.
	AcksDropped int64
	// Dials counts the connections dialed after Start. After a preconnect
	// it is 0 unless the server closed connections, so that their new
	// handshakes fell inside the measured time.
	Dials int64
}

// KindReport counts the requests of one kind.
type KindReport struct {
	Sent     int64
	Errors   int64
	ByStatus map[int]int64
}

// Ack records when ingest acknowledged one message, status or sync event,
// so that a benchmark can measure the time from the HTTP acknowledgement to
// the row in ClickHouse.
type Ack struct {
	Kind Kind
	// ID is the WhatsApp message id, the outbound message id of a status,
	// or the sync event id.
	ID string
	// Status is the delivery status for status acknowledgements, else "".
	Status string
	// At is when the 2xx response arrived.
	At time.Time
}

// Snapshot is the progress of a running load run.
type Snapshot struct {
	Elapsed time.Duration
	// Sent, Errors and the status classes are totals since the start.
	Sent         int64
	Errors       int64
	OK           int64 // 2xx
	ClientErrors int64 // 4xx
	ServerErrors int64 // 5xx
	InFlight     int64
	// Rate is completed requests per second since the previous snapshot.
	Rate float64
	// P99 is the 99th percentile latency since the start.
	P99 time.Duration
}

const maxErrorSamples = 8

// tally collects the counts of a run. Workers call it concurrently.
type tally struct {
	sent, errors, canceled         atomic.Int64
	ok, clientErrors, serverErrors atomic.Int64
	inFlight                       atomic.Int64

	mu           sync.Mutex
	byStatus     map[int]int64
	byKind       map[Kind]KindReport
	errorSamples []string
	acks         []Ack
	trackAcks    int
	acksDropped  int64
}

func newTally(trackAcks int) *tally {
	return &tally{
		byStatus:  make(map[int]int64),
		byKind:    make(map[Kind]KindReport),
		trackAcks: max(trackAcks, 0),
	}
}

func (t *tally) response(req *Request, code int, at time.Time) {
	t.sent.Add(1)
	switch {
	case code >= 200 && code < 300:
		t.ok.Add(1)
	case code >= 400 && code < 500:
		t.clientErrors.Add(1)
	case code >= 500:
		t.serverErrors.Add(1)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.byStatus[code]++
	k := t.kind(req.Kind)
	k.Sent++
	k.ByStatus[code]++
	t.byKind[req.Kind] = k
	if code >= 200 && code < 300 && (req.Kind == KindWebhook || req.Kind == KindSync) {
		for _, m := range req.Messages {
			t.ack(Ack{Kind: req.Kind, ID: m.ID, At: at})
		}
		for _, s := range req.Statuses {
			t.ack(Ack{Kind: req.Kind, ID: s.MessageID, Status: s.Status, At: at})
		}
	}
}

// failure counts a request that got no response, or that could not be
// generated when sent is false.
func (t *tally) failure(kind Kind, err error, sent bool) {
	t.errors.Add(1)
	if sent {
		t.sent.Add(1)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kind(kind)
	if sent {
		k.Sent++
	}
	k.Errors++
	t.byKind[kind] = k
	if len(t.errorSamples) < maxErrorSamples {
		msg := err.Error()
		for _, s := range t.errorSamples {
			if s == msg {
				return
			}
		}
		t.errorSamples = append(t.errorSamples, msg)
	}
}

func (t *tally) kind(kind Kind) KindReport {
	k, ok := t.byKind[kind]
	if !ok {
		k.ByStatus = make(map[int]int64)
	}
	return k
}

func (t *tally) ack(a Ack) {
	if len(t.acks) >= t.trackAcks {
		t.acksDropped++
		return
	}
	t.acks = append(t.acks, a)
}

func (t *tally) snapshot(elapsed time.Duration, hist *Histogram) Snapshot {
	return Snapshot{
		Elapsed:      elapsed,
		Sent:         t.sent.Load(),
		Errors:       t.errors.Load(),
		OK:           t.ok.Load(),
		ClientErrors: t.clientErrors.Load(),
		ServerErrors: t.serverErrors.Load(),
		InFlight:     t.inFlight.Load(),
		P99:          hist.Quantile(0.99),
	}
}
