package processors

import (
	"errors"
	"fmt"
)

var (
	// ErrNotWhatsApp is returned by ParseWebhook when the body is JSON but
	// its object is not "whatsapp_business_account".
	ErrNotWhatsApp = errors.New("not a WhatsApp Business Account notification")
	// ErrInvalidWebhook is returned by ParseWebhook when the body is not
	// JSON of the webhook's shape.
	ErrInvalidWebhook = errors.New("invalid webhook JSON")
	// ErrInvalidSyncEvent is returned by ParseSyncEvent when a sync event
	// misses a required field or has a malformed one.
	ErrInvalidSyncEvent = errors.New("invalid sync event")
	// ErrInvalidClientPayload is returned when a client-side encrypted
	// payload fails the structure or checksum checks.
	ErrInvalidClientPayload = errors.New("invalid client-encrypted payload")

	errNoKeyring    = errors.New("processor: Options.Keyring is required")
	errRunTwice     = errors.New("processor: Run was called twice: create a new Processor with New")
	errTrailingData = errors.New("data after the JSON value")
	errNotJSON      = errors.New("not a JSON object")
	errEmptyBase64  = errors.New("empty base64 value")
)

// PartitionCountError is returned by Run when a topic that must mirror the
// raw topic's partitions has fewer of them.
type PartitionCountError struct {
	Topic     string
	Have      int
	RawTopic  string
	RawHave   int
	Operation string
}

func (e *PartitionCountError) Error() string {
	return fmt.Sprintf("%s: topic %s has %d partitions, fewer than the %d of %s: add partitions to %s so that every raw partition has its own",
		e.Operation, e.Topic, e.Have, e.RawHave, e.RawTopic, e.Topic)
}
