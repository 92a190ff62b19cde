package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Kind is the kind of a generated request.
type Kind string

// Kinds of requests, as counted in Report.ByKind.
const (
	// KindWebhook is a validly signed webhook notification.
	KindWebhook Kind = "webhook"
	// KindSync is a batch of sync events with a valid access token.
	KindSync Kind = "sync"
	// KindForged is a webhook whose signature is wrong or missing.
	KindForged Kind = "forged"
	// KindRedelivery repeats an earlier webhook byte for byte, as Meta does
	// when it retries.
	KindRedelivery Kind = "redelivery"
)

// Request paths that ingest serves.
const (
	WebhookPath = "/webhooks/whatsapp"
	SyncPath    = "/v1/sync/events"
)

// Request is one generated HTTP request with what it carries.
type Request struct {
	Kind   Kind
	Method string
	// Path is the request path, appended to the target base URL.
	Path   string
	Header http.Header
	// Body is the exact bytes to send. Callers must not modify it, because
	// redeliveries share it.
	Body []byte
	// Messages are the inbound WhatsApp messages or the sync events in
	// Body, in order.
	Messages []MessageRef
	// Statuses are the WhatsApp delivery statuses in Body.
	Statuses []StatusRef
	// Plaintexts are the decoded content strings in Body (texts, captions,
	// filenames, titles, locations, shared contacts, reaction emoji) that
	// must be stored only encrypted. Content of client-encrypted sync events
	// is not listed because it never appears in Body.
	Plaintexts []string
	// Personal are the raw customer identifiers in Body (WhatsApp ids,
	// which are phone numbers, and profile names) that must appear in the
	// audit trail only as pseudonyms.
	Personal []string
}

// MessageRef identifies one message or sync event inside a request.
type MessageRef struct {
	// ID is the WhatsApp message id (wamid.…) or the sync event_id.
	ID string
	// Type is the WhatsApp message type or the sync event type.
	Type string
	// Account is the business phone number id (WhatsApp) or the device id
	// (sync).
	Account string
	// Encrypted is true for a sync event with a client-encrypted payload.
	Encrypted bool
}

// StatusRef identifies one delivery status inside a webhook. The same
// outbound message id appears once per status it passes through.
type StatusRef struct {
	MessageID string
	Status    string
	Account   string
}

// MessageIDs returns the ids of r.Messages.
func (r Request) MessageIDs() []string {
	ids := make([]string, len(r.Messages))
	for i, m := range r.Messages {
		ids[i] = m.ID
	}
	return ids
}

// NewHTTPRequest builds the HTTP request for target, a loopback base URL
// such as "http://127.0.0.1:8080". It returns an error wrapping
// ErrNotLoopback for any other target.
func (r Request) NewHTTPRequest(ctx context.Context, target string) (*http.Request, error) {
	if _, err := CheckTarget(target); err != nil {
		return nil, err
	}
	url := strings.TrimSuffix(target, "/") + r.Path
	req, err := http.NewRequestWithContext(ctx, r.Method, url, bytes.NewReader(r.Body))
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", r.Kind, err)
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	return req, nil
}
