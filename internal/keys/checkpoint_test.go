package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignCheckpointVerifies(t *testing.T) {
	k := Generate()
	msg := []byte("checkpoint message")
	id, sig, err := k.SignCheckpoint(msg)
	if err != nil {
		t.Fatalf("SignCheckpoint: %v", err)
	}
	if id != "c1" || id != k.ActiveCheckpointKey() {
		t.Errorf("key id = %q, ActiveCheckpointKey = %q, want c1", id, k.ActiveCheckpointKey())
	}
	if !k.VerifyCheckpoint(id, msg, sig) {
		t.Fatal("VerifyCheckpoint rejected a fresh signature")
	}

	tampered := bytes.Clone(sig)
	tampered[0] ^= 1
	cases := []struct {
		name     string
		id       string
		msg, sig []byte
		verifier interface {
			VerifyCheckpoint(string, []byte, []byte) bool
		}
		wantValid bool
	}{
		{"same keyring", id, msg, sig, k, true},
		{"changed message", id, []byte("checkpoint messagE"), sig, k, false},
		{"changed signature", id, msg, tampered, k, false},
		{"empty signature", id, msg, nil, k, false},
		{"unknown key id", "c9", msg, sig, k, false},
		{"other keyring", id, msg, sig, Generate(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.verifier.VerifyCheckpoint(tc.id, tc.msg, tc.sig); got != tc.wantValid {
				t.Errorf("VerifyCheckpoint = %v, want %v", got, tc.wantValid)
			}
		})
	}
}

func TestRotateKeepsOldCheckpointPublicKeys(t *testing.T) {
	k := Generate()
	msg := []byte("m")
	oldID, oldSig, err := k.SignCheckpoint(msg)
	if err != nil {
		t.Fatal(err)
	}
	k.Rotate()
	newID, newSig, err := k.SignCheckpoint(msg)
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID {
		t.Fatalf("Rotate kept checkpoint key %q active", oldID)
	}

	// Through a save and load, as `syncguard keys rotate` does.
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := loaded.ActiveCheckpointKey(); got != newID {
		t.Errorf("ActiveCheckpointKey after Load = %q, want %q", got, newID)
	}
	if !loaded.VerifyCheckpoint(oldID, msg, oldSig) {
		t.Error("a signature of the retired key no longer verifies")
	}
	if !loaded.VerifyCheckpoint(newID, msg, newSig) {
		t.Error("a signature of the active key does not verify after Load")
	}

	// Only the public half of the retired key stays in the file.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), `"seed"`); n != 1 {
		t.Errorf("keyring file holds %d checkpoint seeds, want only the active one", n)
	}
}

func TestLoadKeyringWithoutCheckpointKey(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	old := fmt.Sprintf(`{"master_keys":[{"id":"m1","key":%q,"created_at":"2025-10-09T08:53:20Z"}],"active_master":"m1","pseudonym_key":%q,"envelope_key":%q}`,
		key, key, key)
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(path)
	if err != nil {
		t.Fatalf("Load of a keyring without a checkpoint key: %v", err)
	}

	// Every other purpose works.
	if _, _, err := k.Wrap("p_s", "dk1", NewDataKey()); err != nil {
		t.Errorf("Wrap: %v", err)
	}
	if got := k.Pseudonym("x"); !strings.HasPrefix(got, PseudonymPrefix) {
		t.Errorf("Pseudonym = %q", got)
	}

	// The checkpoint feature reports what to do.
	_, _, err = k.SignCheckpoint([]byte("m"))
	if !errors.Is(err, ErrNoCheckpointKey) {
		t.Fatalf("SignCheckpoint error = %v, want ErrNoCheckpointKey", err)
	}
	if !strings.Contains(err.Error(), "syncguard keys rotate") {
		t.Errorf("error %q does not name `syncguard keys rotate`", err)
	}
	if _, err := k.CheckpointPublicKeys(); !errors.Is(err, ErrNoCheckpointKey) {
		t.Errorf("CheckpointPublicKeys error = %v, want ErrNoCheckpointKey", err)
	}

	// Rotation adds the key and keeps the master key's data readable.
	k.Rotate()
	if got := k.ActiveCheckpointKey(); got != "c1" {
		t.Errorf("ActiveCheckpointKey after Rotate = %q, want c1", got)
	}
	id, sig, err := k.SignCheckpoint([]byte("m"))
	if err != nil {
		t.Fatalf("SignCheckpoint after Rotate: %v", err)
	}
	if !k.VerifyCheckpoint(id, []byte("m"), sig) {
		t.Error("signature after Rotate does not verify")
	}
}

func TestLoadRejectsInvalidCheckpointKeys(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	file := func(extra string) string {
		return fmt.Sprintf(`{"master_keys":[{"id":"m1","key":%q,"created_at":"2025-10-09T08:53:20Z"}],"active_master":"m1","pseudonym_key":%q,"envelope_key":%q%s}`,
			key, key, key, extra)
	}
	cases := []struct {
		name    string
		extra   string
		wantErr string
	}{
		{"valid", fmt.Sprintf(`,"checkpoint_key":{"id":"c2","seed":%q},"retired_checkpoint_keys":[{"id":"c1","public_key":%q}]`, key, key), ""},
		{"short seed", fmt.Sprintf(`,"checkpoint_key":{"id":"c1","seed":%q}`, short), "checkpoint_key.seed"},
		{"empty id", fmt.Sprintf(`,"checkpoint_key":{"id":"","seed":%q}`, key), "checkpoint_key.id"},
		{"short public key", fmt.Sprintf(`,"retired_checkpoint_keys":[{"id":"c1","public_key":%q}]`, short), "retired_checkpoint_keys[0].public_key"},
		{"active id reused", fmt.Sprintf(`,"checkpoint_key":{"id":"c1","seed":%q},"retired_checkpoint_keys":[{"id":"c1","public_key":%q}]`, key, key), "duplicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.json")
			if err := os.WriteFile(path, []byte(file(tc.extra)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestExportedPublicKeysVerify(t *testing.T) {
	k := Generate()
	msg := []byte("m")
	oldID, oldSig, _ := k.SignCheckpoint(msg)
	k.Rotate()
	newID, newSig, _ := k.SignCheckpoint(msg)

	pub, err := k.CheckpointPublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint-keys.json")
	if err := pub.Save(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{k.checkpoint.private.Seed(), k.EnvelopeKey(), k.masters[0].key} {
		if bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(secret))) {
			t.Fatal("exported public key file contains secret key material")
		}
	}
	if strings.Contains(string(raw), "seed") {
		t.Error("exported public key file has a seed field")
	}

	loaded, err := LoadPublicKeys(path)
	if err != nil {
		t.Fatalf("LoadPublicKeys: %v", err)
	}
	if got := fmt.Sprint(loaded.IDs()); got != fmt.Sprint([]string{oldID, newID}) {
		t.Errorf("IDs = %s, want [%s %s]", got, oldID, newID)
	}
	if !loaded.VerifyCheckpoint(oldID, msg, oldSig) {
		t.Error("retired key's signature does not verify with the exported keys")
	}
	if !loaded.VerifyCheckpoint(newID, msg, newSig) {
		t.Error("active key's signature does not verify with the exported keys")
	}
	if loaded.VerifyCheckpoint(newID, []byte("other"), newSig) {
		t.Error("exported keys accepted a signature of another message")
	}
}

func TestLoadPublicKeysRejectsInvalidFiles(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	cases := []struct {
		name, content, wantErr string
	}{
		{"no keys", `{"checkpoint_public_keys":[]}`, "at least one key"},
		{"short key", `{"checkpoint_public_keys":[{"id":"c1","public_key":"AAAA"}]}`, "public_key"},
		{"duplicate id", fmt.Sprintf(`{"checkpoint_public_keys":[{"id":"c1","public_key":%q},{"id":"c1","public_key":%q}]}`, key, key), "duplicate"},
		{"secret field", fmt.Sprintf(`{"checkpoint_public_keys":[{"id":"c1","public_key":%q,"seed":%q}]}`, key, key), "invalid JSON"},
		{"not JSON", `c1: x`, "invalid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pub.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPublicKeys(path)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadPublicKeys error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
