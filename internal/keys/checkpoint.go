package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// checkpointKey is an Ed25519 key that signs audit chain checkpoints. A
// retired key keeps only its public half.
type checkpointKey struct {
	id        string
	private   ed25519.PrivateKey // nil for a retired key
	public    ed25519.PublicKey
	createdAt time.Time
}

func newCheckpointKey(id string) checkpointKey {
	seed := make([]byte, ed25519.SeedSize)
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(seed)
	priv := ed25519.NewKeyFromSeed(seed)
	return checkpointKey{id: id, private: priv, public: priv.Public().(ed25519.PublicKey), createdAt: time.Now().UTC()}
}

// nextCheckpointIDLocked returns the first id "cN" that no checkpoint key,
// active or retired, uses. The caller holds k.mu.
func (k *Keyring) nextCheckpointIDLocked() string {
	taken := make(map[string]bool, len(k.retiredCheckpoint)+1)
	if k.checkpoint != nil {
		taken[k.checkpoint.id] = true
	}
	for _, r := range k.retiredCheckpoint {
		taken[r.id] = true
	}
	for n := len(taken) + 1; ; n++ {
		id := "c" + strconv.Itoa(n)
		if !taken[id] {
			return id
		}
	}
}

// rotateCheckpointLocked makes a new checkpoint signing key active and keeps
// only the public key of the one it replaces. The caller holds k.mu.
func (k *Keyring) rotateCheckpointLocked() string {
	next := newCheckpointKey(k.nextCheckpointIDLocked())
	if old := k.checkpoint; old != nil {
		k.retiredCheckpoint = append(k.retiredCheckpoint, checkpointKey{id: old.id, public: old.public, createdAt: old.createdAt})
	}
	k.checkpoint = &next
	return next.id
}

// ActiveCheckpointKey returns the id of the key that signs new checkpoints,
// or "" when the keyring has none (a keyring file written before
// checkpoints existed).
func (k *Keyring) ActiveCheckpointKey() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.checkpoint == nil {
		return ""
	}
	return k.checkpoint.id
}

// SignCheckpoint signs msg with the active checkpoint key and returns the
// key's id and the Ed25519 signature. It returns ErrNoCheckpointKey when the
// keyring has no checkpoint key.
func (k *Keyring) SignCheckpoint(msg []byte) (keyID string, sig []byte, err error) {
	k.mu.RLock()
	c := k.checkpoint
	k.mu.RUnlock()
	if c == nil {
		return "", nil, ErrNoCheckpointKey
	}
	return c.id, ed25519.Sign(c.private, msg), nil
}

// VerifyCheckpoint reports whether sig is a valid Ed25519 signature of msg
// by the checkpoint key keyID, active or retired.
func (k *Keyring) VerifyCheckpoint(keyID string, msg, sig []byte) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, c := range k.checkpointKeysLocked() {
		if c.id == keyID {
			return ed25519.Verify(c.public, msg, sig)
		}
	}
	return false
}

// checkpointKeysLocked returns the retired checkpoint keys and then the
// active one. The caller holds k.mu.
func (k *Keyring) checkpointKeysLocked() []checkpointKey {
	out := k.retiredCheckpoint[:len(k.retiredCheckpoint):len(k.retiredCheckpoint)]
	if k.checkpoint != nil {
		out = append(out, *k.checkpoint)
	}
	return out
}

// CheckpointPublicKeys returns the public halves of every checkpoint key,
// retired ones first. It returns ErrNoCheckpointKey when there are none.
func (k *Keyring) CheckpointPublicKeys() (*PublicKeys, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	all := k.checkpointKeysLocked()
	if len(all) == 0 {
		return nil, ErrNoCheckpointKey
	}
	pub := &PublicKeys{}
	for _, c := range all {
		pub.keys = append(pub.keys, checkpointKey{id: c.id, public: c.public, createdAt: c.createdAt})
	}
	return pub, nil
}

// PublicKeys is a set of public checkpoint keys. It verifies checkpoint
// signatures without any secret key, so auditors can hold it.
type PublicKeys struct {
	keys []checkpointKey // public halves only
}

// publicKeysFile is the JSON form of PublicKeys. encoding/json writes
// []byte fields as standard base64.
type publicKeysFile struct {
	CheckpointPublicKeys []publicKeyFile `json:"checkpoint_public_keys"`
}

type publicKeyFile struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"public_key"`
	CreatedAt time.Time `json:"created_at"`
}

// IDs returns the key ids in the order of the file.
func (p *PublicKeys) IDs() []string {
	ids := make([]string, len(p.keys))
	for i, c := range p.keys {
		ids[i] = c.id
	}
	return ids
}

// VerifyCheckpoint reports whether sig is a valid Ed25519 signature of msg
// by the public key keyID.
func (p *PublicKeys) VerifyCheckpoint(keyID string, msg, sig []byte) bool {
	for _, c := range p.keys {
		if c.id == keyID {
			return ed25519.Verify(c.public, msg, sig)
		}
	}
	return false
}

// Save writes the public keys to path with mode 0644, replacing the file.
// The file holds no secret.
func (p *PublicKeys) Save(path string) error {
	file := publicKeysFile{CheckpointPublicKeys: []publicKeyFile{}}
	for _, c := range p.keys {
		file.CheckpointPublicKeys = append(file.CheckpointPublicKeys, publicKeyFile{ID: c.id, PublicKey: c.public, CreatedAt: c.createdAt})
	}
	b, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return fmt.Errorf("save public keys: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save public keys: %w", err)
	}
	return nil
}

// LoadPublicKeys reads a file that PublicKeys.Save wrote. It rejects
// unknown fields, keys that are not 32 bytes, and empty or duplicate ids.
func LoadPublicKeys(path string) (*PublicKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public keys: %w", err)
	}
	var file publicKeysFile
	if err := decodeStrict(b, &file); err != nil {
		return nil, fmt.Errorf("load public keys %s: invalid JSON: %w", path, err)
	}
	if len(file.CheckpointPublicKeys) == 0 {
		return nil, fmt.Errorf("load public keys %s: checkpoint_public_keys: at least one key is required", path)
	}
	p := &PublicKeys{}
	seen := make(map[string]bool)
	for i, f := range file.CheckpointPublicKeys {
		if err := checkCheckpointID(f.ID, seen); err != nil {
			return nil, fmt.Errorf("load public keys %s: checkpoint_public_keys[%d].id: %w", path, i, err)
		}
		if len(f.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("load public keys %s: checkpoint_public_keys[%d].public_key: must be %d bytes, got %d",
				path, i, ed25519.PublicKeySize, len(f.PublicKey))
		}
		p.keys = append(p.keys, checkpointKey{id: f.ID, public: ed25519.PublicKey(f.PublicKey), createdAt: f.CreatedAt})
	}
	return p, nil
}

// checkCheckpointID rejects an empty id or one already in seen, and adds
// id to seen.
func checkCheckpointID(id string, seen map[string]bool) error {
	if id == "" {
		return errors.New("must not be empty")
	}
	if seen[id] {
		return fmt.Errorf("duplicate id %q", id)
	}
	seen[id] = true
	return nil
}
