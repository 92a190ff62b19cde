package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

// NonceSize is the AES-GCM nonce size in bytes.
const NonceSize = 12

// wrapLabel starts the additional data of every wrapped data key, so that a
// wrapped key can never be confused with content sealed under the same key.
const wrapLabel = "syncguard data key v1"

// NewDataKey returns a fresh random 256-bit data key.
func NewDataKey() []byte { return randomKey() }

// Seal encrypts plaintext with AES-256-GCM under dek and a fresh random
// nonce. aad is authenticated but not encrypted: Open fails unless it gets
// the same aad.
func Seal(dek, plaintext, aad []byte) (nonce, ciphertext []byte, err error) {
	aead, err := newGCM(dek)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, NonceSize)
	_, _ = rand.Read(nonce) // crypto/rand.Read returns no error since Go 1.24
	return nonce, aead.Seal(nil, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned. It returns ErrDecrypt when the key, the
// nonce, the aad or the ciphertext differ from what was sealed.
func Open(dek, nonce, ciphertext, aad []byte) ([]byte, error) {
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrDecrypt, len(nonce), NonceSize)
	}
	plaintext, err := aead.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// Wrap encrypts the data key dek of subject under the active master key. It
// returns nonce || ciphertext and the id of the master key used. The
// additional data binds subject and keyID, so a wrapped key copied to another
// subject or key id does not unwrap.
func (k *Keyring) Wrap(subject, keyID string, dek []byte) (wrapped []byte, masterID string, err error) {
	if len(dek) != KeySize {
		return nil, "", fmt.Errorf("wrap data key: %w, got %d", errKeySize, len(dek))
	}
	k.mu.RLock()
	m := k.masterLocked(k.active)
	k.mu.RUnlock()
	if m == nil {
		return nil, "", fmt.Errorf("BUG: active master %q missing from keyring", k.ActiveMaster())
	}

	nonce, ciphertext, err := Seal(m.key, dek, wrapAAD(subject, keyID))
	if err != nil {
		return nil, "", fmt.Errorf("wrap data key: %w", err)
	}
	return append(nonce, ciphertext...), m.id, nil
}

// Unwrap decrypts a data key that Wrap returned. It returns ErrUnknownMaster
// when the keyring lacks masterID and ErrDecrypt when the wrapped bytes, the
// subject or the key id differ from what was wrapped.
func (k *Keyring) Unwrap(masterID, subject, keyID string, wrapped []byte) ([]byte, error) {
	k.mu.RLock()
	m := k.masterLocked(masterID)
	k.mu.RUnlock()
	if m == nil {
		return nil, fmt.Errorf("unwrap data key %s/%s: %w %q", subject, keyID, ErrUnknownMaster, masterID)
	}
	if len(wrapped) < NonceSize {
		return nil, fmt.Errorf("unwrap data key %s/%s: %w: wrapped key is %d bytes", subject, keyID, ErrDecrypt, len(wrapped))
	}
	dek, err := Open(m.key, wrapped[:NonceSize], wrapped[NonceSize:], wrapAAD(subject, keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s/%s: %w", subject, keyID, err)
	}
	if len(dek) != KeySize {
		return nil, fmt.Errorf("unwrap data key %s/%s: %w, got %d", subject, keyID, errKeySize, len(dek))
	}
	return dek, nil
}

// WrapKey wraps dek like Wrap and returns the record that TopicKeys carries.
func (k *Keyring) WrapKey(subject, keyID string, dek []byte, createdAt time.Time) (schemas.WrappedKey, error) {
	wrapped, masterID, err := k.Wrap(subject, keyID, dek)
	if err != nil {
		return schemas.WrappedKey{}, err
	}
	return schemas.WrappedKey{
		Subject:   subject,
		KeyID:     keyID,
		MasterID:  masterID,
		Wrapped:   wrapped,
		CreatedAt: createdAt,
	}, nil
}

// UnwrapKey unwraps the data key of a TopicKeys record.
func (k *Keyring) UnwrapKey(w schemas.WrappedKey) ([]byte, error) {
	return k.Unwrap(w.MasterID, w.Subject, w.KeyID, w.Wrapped)
}

// wrapAAD returns the additional data of a wrapped key: the label, the
// subject and the key id, each prefixed with its length so that no two
// different pairs give the same bytes.
func wrapAAD(subject, keyID string) []byte {
	var b []byte
	for _, field := range []string{wrapLabel, subject, keyID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(field)))
		b = append(b, field...)
	}
	return b
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w, got %d", errKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create GCM: %w", err)
	}
	return aead, nil
}
