package keys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// keyringFile is the JSON form of a keyring on disk. encoding/json writes
// []byte fields as standard base64.
type keyringFile struct {
	MasterKeys   []masterKeyFile `json:"master_keys"`
	ActiveMaster string          `json:"active_master"`
	PseudonymKey []byte          `json:"pseudonym_key"`
	EnvelopeKey  []byte          `json:"envelope_key"`
	// CheckpointKey signs audit chain checkpoints. Keyring files written
	// before checkpoints existed lack it; `syncguard keys rotate` adds it.
	CheckpointKey *checkpointKeyFile `json:"checkpoint_key,omitempty"`
	// RetiredCheckpointKeys are the public halves of earlier checkpoint
	// keys, kept to verify the checkpoints they signed.
	RetiredCheckpointKeys []publicKeyFile `json:"retired_checkpoint_keys,omitempty"`
}

// checkpointKeyFile is an Ed25519 checkpoint key stored as its 32-byte seed.
type checkpointKeyFile struct {
	ID        string    `json:"id"`
	Seed      []byte    `json:"seed"`
	CreatedAt time.Time `json:"created_at"`
}

type masterKeyFile struct {
	ID        string    `json:"id"`
	Key       []byte    `json:"key"`
	CreatedAt time.Time `json:"created_at"`
}

// Load reads a keyring file. It rejects a file that group or others may
// access, with an error whose message includes the fix: chmod 600. It also
// rejects keys that are not 32 bytes, duplicate or empty master key ids, and
// an active master id that names no key.
func Load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	defer func() { _ = f.Close() }()

	// Stat the open file, not the path, so that the mode checked is the
	// mode of the bytes read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load keyring %s: %w (mode %04o): run chmod 600 %s", path, ErrInsecureFile, perm, path)
	}

	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	var file keyringFile
	if err := decodeStrict(b, &file); err != nil {
		return nil, fmt.Errorf("load keyring %s: invalid JSON: %w", path, err)
	}
	k, err := fromFile(file)
	if err != nil {
		return nil, fmt.Errorf("load keyring %s: %w", path, err)
	}
	return k, nil
}

func fromFile(file keyringFile) (*Keyring, error) {
	if len(file.MasterKeys) == 0 {
		return nil, errors.New("master_keys: at least one master key is required")
	}
	k := &Keyring{active: file.ActiveMaster}
	for i, m := range file.MasterKeys {
		if m.ID == "" {
			return nil, fmt.Errorf("master_keys[%d].id: must not be empty", i)
		}
		if k.masterLocked(m.ID) != nil {
			return nil, fmt.Errorf("master_keys[%d].id: duplicate id %q", i, m.ID)
		}
		if len(m.Key) != KeySize {
			return nil, fmt.Errorf("master_keys[%d].key: %w, got %d", i, errKeySize, len(m.Key))
		}
		k.masters = append(k.masters, masterKey{id: m.ID, key: m.Key, createdAt: m.CreatedAt})
	}
	if k.masterLocked(file.ActiveMaster) == nil {
		return nil, fmt.Errorf("active_master: %q names no key in master_keys", file.ActiveMaster)
	}
	if len(file.PseudonymKey) != KeySize {
		return nil, fmt.Errorf("pseudonym_key: %w, got %d", errKeySize, len(file.PseudonymKey))
	}
	if len(file.EnvelopeKey) != KeySize {
		return nil, fmt.Errorf("envelope_key: %w, got %d", errKeySize, len(file.EnvelopeKey))
	}
	k.pseudonymKey = file.PseudonymKey
	k.envelopeKey = file.EnvelopeKey
	if err := k.checkpointFromFile(file); err != nil {
		return nil, err
	}
	return k, nil
}

// checkpointFromFile sets the checkpoint keys of k. Both are optional, so
// that keyring files written before checkpoints existed still load.
func (k *Keyring) checkpointFromFile(file keyringFile) error {
	seen := make(map[string]bool)
	for i, r := range file.RetiredCheckpointKeys {
		if err := checkCheckpointID(r.ID, seen); err != nil {
			return fmt.Errorf("retired_checkpoint_keys[%d].id: %w", i, err)
		}
		if len(r.PublicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("retired_checkpoint_keys[%d].public_key: must be %d bytes, got %d", i, ed25519.PublicKeySize, len(r.PublicKey))
		}
		k.retiredCheckpoint = append(k.retiredCheckpoint, checkpointKey{id: r.ID, public: ed25519.PublicKey(r.PublicKey), createdAt: r.CreatedAt})
	}
	c := file.CheckpointKey
	if c == nil {
		return nil
	}
	if err := checkCheckpointID(c.ID, seen); err != nil {
		return fmt.Errorf("checkpoint_key.id: %w", err)
	}
	if len(c.Seed) != ed25519.SeedSize {
		return fmt.Errorf("checkpoint_key.seed: must be %d bytes, got %d", ed25519.SeedSize, len(c.Seed))
	}
	priv := ed25519.NewKeyFromSeed(c.Seed)
	k.checkpoint = &checkpointKey{id: c.ID, private: priv, public: priv.Public().(ed25519.PublicKey), createdAt: c.CreatedAt}
	return nil
}

// decodeStrict decodes one JSON value from b into v and rejects unknown
// fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// Save writes the keyring to path with mode 0600. It writes a temporary file
// in the same directory, syncs it and renames it over path, so that a crash
// leaves either the old or the new keyring, never a partial one.
func (k *Keyring) Save(path string) (err error) {
	b, err := json.MarshalIndent(k.toFile(), "", "  ")
	if err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}

	dir := filepath.Dir(path)
	// CreateTemp creates the file with mode 0600.
	tmp, err := os.CreateTemp(dir, ".keyring-*.tmp")
	if err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		// tmp is already closed if the rename failed, so Close may fail here.
		_ = tmp.Close()
		if removeErr := os.Remove(tmp.Name()); removeErr != nil {
			err = errors.Join(err, fmt.Errorf("save keyring: delete the temporary file by hand, because it may contain the keys: %w", removeErr))
		}
	}()

	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	committed = true

	// Sync the directory so that the rename itself survives a crash.
	if d, err := os.Open(dir); err == nil {
		syncErr := d.Sync()
		_ = d.Close()
		if syncErr != nil {
			return fmt.Errorf("save keyring: sync directory %s: %w", dir, syncErr)
		}
	}
	return nil
}

func (k *Keyring) toFile() keyringFile {
	k.mu.RLock()
	defer k.mu.RUnlock()
	file := keyringFile{
		ActiveMaster: k.active,
		PseudonymKey: k.pseudonymKey,
		EnvelopeKey:  k.envelopeKey,
	}
	for _, m := range k.masters {
		file.MasterKeys = append(file.MasterKeys, masterKeyFile{ID: m.id, Key: m.key, CreatedAt: m.createdAt})
	}
	if c := k.checkpoint; c != nil {
		file.CheckpointKey = &checkpointKeyFile{ID: c.id, Seed: c.private.Seed(), CreatedAt: c.createdAt}
	}
	for _, r := range k.retiredCheckpoint {
		file.RetiredCheckpointKeys = append(file.RetiredCheckpointKeys, publicKeyFile{ID: r.id, PublicKey: r.public, CreatedAt: r.createdAt})
	}
	return file
}
