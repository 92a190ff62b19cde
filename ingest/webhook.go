package ingest

import (
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

const (
	// maxChallengeLen caps the hub.challenge that the handshake echoes.
	// Meta sends a decimal number.
	maxChallengeLen = 256
	// maxPhoneNumberIDLen caps the phone number id used as record key.
	maxPhoneNumberIDLen = 64
	headerSignature256  = "X-Hub-Signature-256"
)

// serveWebhookRoute dispatches /webhooks/whatsapp by method. The signature
// check belongs to POST alone: Meta's GET handshake carries no signature.
func (s *Server) serveWebhookRoute(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.serveHandshake(w, r)
	case http.MethodPost:
		s.serveWebhook(w, r)
	default:
		s.serveMethodNotAllowed(w, r, routeWebhookOther, "GET, HEAD, POST")
	}
}

// serveHandshake completes Meta's subscription handshake. With hub.mode
// "subscribe" and the verify token of any configured app, the response is
// hub.challenge verbatim as plain text, because Meta compares the body
// with the challenge it sent.
func (s *Server) serveHandshake(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, routeHandshake)
	defer s.finish(x)

	q := r.URL.Query()
	challenge := q.Get("hub.challenge")
	// Every check runs, so the time taken does not tell which one failed.
	modeOK := q.Get("hub.mode") == "subscribe"
	challengeOK := challenge != "" && len(challenge) <= maxChallengeLen
	tokenOK := s.keys.matchVerifyToken(q.Get("hub.verify_token"))
	switch {
	case !modeOK:
		x.detail = "hub.mode is not subscribe"
	case !challengeOK:
		x.detail = "hub.challenge is missing or too long"
	case !tokenOK:
		x.detail = "hub.verify_token matches no app"
	}
	if !modeOK || !challengeOK || !tokenOK {
		s.fail(x, schemas.ReasonHandshakeFailed, "the verification request was rejected")
		return
	}

	s.settleBody(x)
	h := x.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(challenge)))
	x.WriteHeader(http.StatusOK)
	_, _ = x.Write([]byte(challenge))
}

// serveWebhook checks the signature of a WhatsApp notification over the
// exact body bytes and produces the body unchanged to the raw topic. It
// responds 200 only after Kafka acknowledged the record.
func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, routeWebhook)
	defer s.finish(x)

	// Cheap checks first: no body byte is read for a request that fails
	// them.
	if parseContentEncoding(r.Header.Values("Content-Encoding")) != codingIdentity {
		s.fail(x, schemas.ReasonUnsupportedMedia, "webhook bodies must not have a Content-Encoding")
		return
	}
	limit := s.cfg.WebhookMaxBodyBytes
	if r.ContentLength > limit {
		s.fail(x, schemas.ReasonPayloadTooLarge, "the body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		return
	}
	signatures := r.Header.Values(headerSignature256)
	if len(signatures) == 0 {
		s.fail(x, schemas.ReasonMissingSignature, "the X-Hub-Signature-256 header is required")
		return
	}
	if _, ok := parseSignature(signatures[0]); !ok || len(signatures) > 1 {
		s.fail(x, schemas.ReasonInvalidSignature, "the X-Hub-Signature-256 header must be one sha256=<64 hex digits> value")
		return
	}

	// MaxBytesReader gets the connection's own writer, so that net/http
	// closes the connection after responding to an oversized body.
	x.expectPending = false
	counted := &countingReader{r: http.MaxBytesReader(x.w, r.Body, limit)}
	body, err := readLimited(counted, r.ContentLength)
	x.bytesIn = counted.n
	switch {
	case errors.Is(err, errBodyTooLarge):
		s.fail(x, schemas.ReasonPayloadTooLarge, "the body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		return
	case err != nil:
		s.failBodyRead(x, err)
		return
	}

	match, err := s.keys.verifySignature(signatures, body, x.start)
	if err != nil {
		s.fail(x, schemas.ReasonInvalidSignature, "the signature does not match the body")
		return
	}
	x.detail = "app=" + match.app + " secret=" + match.secretID

	// An unparsable but correctly signed body is still accepted, keyed by
	// the app name. The processors dead-letter it with its parse error.
	key := match.app
	first, accounts := phoneNumberIDs(body)
	if first != "" {
		key = first
		x.account = first
	}
	if !s.admitAccounts(x, first, accounts) {
		return
	}
	receivedAt := x.start.UTC().Format(timeFormat)
	rec := &kgo.Record{
		Topic: s.rawTopic,
		Key:   []byte(key),
		Value: s.sealer.Seal(schemas.KindWhatsApp, x.requestID, []byte(key), body),
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderKind, Value: []byte(schemas.KindWhatsApp)},
			{Key: schemas.HeaderRequestID, Value: []byte(x.requestID)},
			{Key: schemas.HeaderReceivedAt, Value: []byte(receivedAt)},
			{Key: schemas.HeaderSource, Value: []byte(x.source)},
			{Key: schemas.HeaderSignature, Value: []byte(signatures[0])},
			{Key: schemas.HeaderApp, Value: []byte(match.app)},
		},
	}
	if errs := s.produceAll(r.Context(), []*kgo.Record{rec}); errs[0] != nil {
		if errors.Is(errs[0], errRecordTooLarge) {
			x.detail += " produce: " + errs[0].Error()
			s.fail(x, schemas.ReasonPayloadTooLarge, "the body is larger than the event log accepts")
			return
		}
		s.failUnavailable(x, errs[0])
		return
	}
	x.Header().Set("Content-Length", "0")
	x.WriteHeader(http.StatusOK)
}

// failUnavailable responds 503 for a record that Kafka did not acknowledge.
func (s *Server) failUnavailable(x *exchange, err error) {
	x.detail += " produce: " + err.Error()
	s.fail(x, schemas.ReasonUnavailable, "the event could not be stored; retry later")
}

// webhookProbe is the part of a WhatsApp notification that picks the
// record key. Everything else is skipped unparsed.
type webhookProbe struct {
	Entry []struct {
		ID      probeID `json:"id"`
		Changes []struct {
			Value struct {
				Metadata struct {
					PhoneNumberID probeID `json:"phone_number_id"`
				} `json:"metadata"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

// probeID is an id that a notification may give as a JSON string or as
// a JSON number, both of which the processors accept. A number is kept as
// its literal, so 300000000000003 and "300000000000003" are the same id.
type probeID string

func (p *probeID) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*p = probeID(v)
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		*p = probeID(b)
	default:
		// null, or another type that the processors reject: no id.
		*p = ""
	}
	return nil
}

// phoneNumberID returns the first entry[].changes[].value.metadata
// .phone_number_id of a notification, or "" when there is none, when it is
// not a number of at most maxPhoneNumberIDLen digits, or when the body does
// not parse.
func phoneNumberID(body []byte) string {
	first, _ := phoneNumberIDs(body)
	return first
}

// phoneNumberIDs returns what phoneNumberID returns, and the account of
// every change as the processors store it, sorted and without repeats:
// its phone_number_id, or the entry's id when it has none. Only accounts
// that are numbers of at most maxPhoneNumberIDLen digits are listed.
func phoneNumberIDs(body []byte) (first string, all []string) {
	if !nestingWithin(body, maxJSONDepth) {
		return "", nil
	}
	var probe webhookProbe
	// Field names match exactly, as in the processors, so that a body
	// with "PHONE_NUMBER_ID" beside "phone_number_id" gets the key and
	// account that the processors store it under.
	if _, err := json.Parse(body, &probe, json.ZeroCopy|json.DontMatchCaseInsensitiveStructFields); err != nil {
		return "", nil
	}
	seenFirst := false
	add := func(id string) {
		if isDigits(id) && len(id) <= maxPhoneNumberIDLen {
			all = append(all, id)
		}
	}
	for _, e := range probe.Entry {
		for _, c := range e.Changes {
			id := string(c.Value.Metadata.PhoneNumberID)
			if id == "" {
				// The processors fall back to the entry id. It is listed
				// for the block check, but it is not the record key.
				add(string(e.ID))
				continue
			}
			if !seenFirst {
				seenFirst = true
				if isDigits(id) && len(id) <= maxPhoneNumberIDLen {
					first = id
				}
			}
			add(id)
		}
	}
	slices.Sort(all)
	return first, slices.Compact(all)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
