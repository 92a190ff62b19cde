package keys

import "errors"

var (
	// ErrUnknownMaster is returned by Unwrap when the keyring has no master
	// key with the requested id, for example because it was removed.
	ErrUnknownMaster = errors.New("unknown master key")
	// ErrDecrypt is returned when AES-GCM authentication fails: the key,
	// the nonce, the additional data or the ciphertext is wrong or was
	// tampered with.
	ErrDecrypt = errors.New("decryption failed: wrong key, additional data or tampered ciphertext")
	// ErrInsecureFile is returned by Load when group or others may read the
	// keyring file.
	ErrInsecureFile = errors.New("keyring file is readable by group or others")

	// ErrNoCheckpointKey is returned when the keyring has no checkpoint
	// signing key, because its file was written before checkpoints existed.
	ErrNoCheckpointKey = errors.New("keyring has no checkpoint signing key: run `syncguard keys rotate --file KEYRING` to add one")

	errKeySize = errors.New("key must be 32 bytes")
)
