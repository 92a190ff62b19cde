package schemas

import (
	"encoding/json"
	"time"
)

// EncryptedMessage is a message or sync event whose content is encrypted.
// Plaintext content never leaves the processor: only Ciphertext does.
type EncryptedMessage struct {
	// MessageID is the WhatsApp message id (wamid...) or the sync event id.
	MessageID string `json:"message_id"`
	Kind      string `json:"kind"` // KindWhatsApp or KindSync
	// Type is the WhatsApp message type (text, image, reaction, ...) or the
	// sync event type.
	Type         string    `json:"type"`
	Account      string    `json:"account"` // phone number id, or sync subject pseudonym
	Subject      string    `json:"subject"` // pseudonym of the data subject
	Device       string    `json:"device,omitempty"`
	Conversation string    `json:"conversation,omitempty"`
	SentAt       time.Time `json:"sent_at"`
	ReceivedAt   time.Time `json:"received_at"`
	// KeyID names the subject's data key that encrypted Ciphertext.
	KeyID string `json:"key_id"`
	// Nonce and Ciphertext are AES-256-GCM output; the additional data is
	// the message id.
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
	// ClientEncrypted is true when the client encrypted the content itself;
	// then Ciphertext holds its payload as received and KeyID the client's
	// key id.
	ClientEncrypted bool   `json:"client_encrypted"`
	ClientAlg       string `json:"client_alg,omitempty"`
	ClientIV        string `json:"client_iv,omitempty"`
	// Meta holds the fields of the message that are not content and stay in
	// the clear, as a JSON object: media id, mime_type, sha256, voice,
	// animated, reaction target, interactive reply id, button payload and
	// context message id. Phone numbers inside it are pseudonyms.
	Meta json.RawMessage `json:"meta,omitempty"`
	// Errors holds the errors[] array of unsupported messages, as received.
	Errors json.RawMessage `json:"errors,omitempty"`
	// RequestID links back to the ingest request.
	RequestID string `json:"request_id"`
}

// Status is a WhatsApp delivery status update. It holds no message content.
type Status struct {
	MessageID    string          `json:"message_id"`
	Account      string          `json:"account"`
	Recipient    string          `json:"recipient"` // pseudonym
	Status       string          `json:"status"`    // sent, delivered, read, failed, ...
	Timestamp    time.Time       `json:"timestamp"`
	Conversation string          `json:"conversation,omitempty"`
	Pricing      json.RawMessage `json:"pricing,omitempty"`
	Errors       json.RawMessage `json:"errors,omitempty"`
	RequestID    string          `json:"request_id"`
	// RecipientUser is the pseudonym of the recipient's WhatsApp user id
	// (recipient_user_id), when Meta sends one.
	RecipientUser string `json:"recipient_user,omitempty"`
}

// DeadLetter is a raw record that the processors could not accept.
type DeadLetter struct {
	Reason    string    `json:"reason"`
	Detail    string    `json:"detail"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	RequestID string    `json:"request_id,omitempty"`
	FailedAt  time.Time `json:"failed_at"`
	// NOTE: the raw value is not copied here, because a forged record may
	// carry plaintext; the topic, partition and offset locate it.
}

// WrappedKey is a subject's data key wrapped by the master key. Records of
// TopicKeys carry it, keyed by "<subject>/<key id>".
type WrappedKey struct {
	Subject   string    `json:"subject"`
	KeyID     string    `json:"key_id"`
	MasterID  string    `json:"master_id"` // id of the wrapping master key
	Wrapped   []byte    `json:"wrapped"`   // AES-256-GCM nonce || ciphertext
	CreatedAt time.Time `json:"created_at"`
}
