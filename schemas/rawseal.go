package schemas

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrRawRecordSealed reports a raw record value that does not open: it was
// not sealed by an ingest that holds the envelope key, or it was altered.
var ErrRawRecordSealed = errors.New("raw record does not open with the envelope key")

// rawSealLabel separates the raw-record encryption key from the MAC key
// that is derived from the same envelope key.
const rawSealLabel = "syncguard raw record encryption v1"

// RawSealKey derives the AES-256 key that seals raw record values from the
// envelope key. Ingest and processors both call it.
func RawSealKey(envelopeKey []byte) []byte {
	m := hmac.New(sha256.New, envelopeKey)
	m.Write([]byte(rawSealLabel))
	return m.Sum(nil)
}

// RawSealer encrypts and decrypts raw record values with AES-256-GCM.
// Raw records carry whole webhook bodies, message text included, so they
// are sealed before they reach Kafka: no Kafka record holds plaintext
// content. The additional data binds the value to its kind, request id and
// record key, so a sealed value cannot be moved under another key.
type RawSealer struct {
	aead cipher.AEAD
}

// NewRawSealer returns a sealer keyed with RawSealKey(envelopeKey).
func NewRawSealer(envelopeKey []byte) (*RawSealer, error) {
	block, err := aes.NewCipher(RawSealKey(envelopeKey))
	if err != nil {
		return nil, fmt.Errorf("raw record cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("raw record cipher: %w", err)
	}
	return &RawSealer{aead: aead}, nil
}

// MaxRawPayloadBytes bounds the payload of one raw record: a webhook body
// or one sync event. The processor writes an encrypted, base64-encoded
// copy of the content that is about a third larger, and 512 KiB keeps both
// under Kafka's default message.max.bytes of about 1 MiB.
const MaxRawPayloadBytes = 512 << 10

// Seal returns nonce || ciphertext of plaintext for a record with the given
// key.
func (s *RawSealer) Seal(kind, requestID string, key, plaintext []byte) []byte {
	nonceSize := s.aead.NonceSize()
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return s.aead.Seal(out, out, plaintext, rawAAD(kind, requestID, key))
}

// Open returns the plaintext of a value that Seal produced, or
// ErrRawRecordSealed.
func (s *RawSealer) Open(kind, requestID string, key, sealed []byte) ([]byte, error) {
	nonceSize := s.aead.NonceSize()
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, ErrRawRecordSealed
	}
	plain, err := s.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], rawAAD(kind, requestID, key))
	if err != nil {
		return nil, ErrRawRecordSealed
	}
	return plain, nil
}

func rawAAD(kind, requestID string, key []byte) []byte {
	m := sha256.New()
	writeField(m, []byte(kind))
	writeField(m, []byte(requestID))
	writeField(m, key)
	return m.Sum(nil)
}
