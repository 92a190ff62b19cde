package keys

import (
	"encoding/json"
	"errors"
	"fmt"
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
	defer f.Close()

	// Stat the open file, not the path, so that the mode checked is the
	// mode of the bytes read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load keyring %s: %w (mode %04o): run chmod 600 %s", path, ErrInsecureFile, perm, path)
	}

	var file keyringFile
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
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
	return k, nil
}

// Save writes the keyring to path with mode 0600. It writes a temporary file
// in the same directory, syncs it and renames it over path, so that a crash
// leaves either the old or the new keyring, never a partial one.
func (k *Keyring) Save(path string) error {
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
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
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
		d.Close()
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
	return file
}
