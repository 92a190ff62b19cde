package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGenerateIsValid(t *testing.T) {
	k := Generate()
	if got := k.ActiveMaster(); got != "m1" {
		t.Fatalf("ActiveMaster() = %q, want m1", got)
	}
	if _, err := fromFile(k.toFile()); err != nil {
		t.Fatalf("generated keyring does not validate: %v", err)
	}
	other := Generate()
	if bytes.Equal(k.EnvelopeKey(), other.EnvelopeKey()) {
		t.Fatal("two generated keyrings share an envelope key")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	k := Generate()
	k.Rotate()
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := k.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("saved mode = %04o, want 0600", perm)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files after Save, want only the keyring", len(entries))
	}

	loaded, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := loaded.ActiveMaster(), k.ActiveMaster(); got != want {
		t.Fatalf("ActiveMaster() = %q, want %q", got, want)
	}
	if got, want := fmt.Sprint(loaded.MasterIDs()), fmt.Sprint(k.MasterIDs()); got != want {
		t.Fatalf("MasterIDs() = %s, want %s", got, want)
	}
	if got, want := loaded.Pseudonym("15550002222"), k.Pseudonym("15550002222"); got != want {
		t.Fatalf("pseudonym changed across Save/Load: %s != %s", got, want)
	}
	if !bytes.Equal(loaded.EnvelopeKey(), k.EnvelopeKey()) {
		t.Fatal("envelope key changed across Save/Load")
	}

	// A key wrapped before saving unwraps after loading.
	dek := NewDataKey()
	wrapped, masterID, err := k.Wrap("p_subject", "dk1", dek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loaded.Unwrap(masterID, "p_subject", "dk1", wrapped)
	if err != nil {
		t.Fatalf("Unwrap after Load: %v", err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("unwrapped key differs from the wrapped one")
	}
}

func TestSaveReplacesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	first := Generate()
	if err := first.Save(path); err != nil {
		t.Fatal(err)
	}
	second := Generate()
	if err := second.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.EnvelopeKey(), second.EnvelopeKey()) {
		t.Fatal("Save did not replace the existing keyring")
	}
}

func TestSaveFailedRenameRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory at the keyring's path makes the final rename
	// fail after the keys were written to the temporary file.
	path := filepath.Join(dir, "keyring.json")
	if err := os.MkdirAll(filepath.Join(path, "occupied"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := Generate().Save(path)
	if err == nil {
		t.Fatal("Save onto a directory succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "save keyring") {
		t.Errorf("error = %q, want it to name the failed save", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s with the keys left behind", e.Name())
		}
	}
}

func TestLoadRejectsOpenMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.json")
			if err := Generate().Save(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if !errors.Is(err, ErrInsecureFile) {
				t.Fatalf("Load error = %v, want ErrInsecureFile", err)
			}
			if !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("error %q does not tell to chmod 600", err)
			}
		})
	}
}

func TestLoadAcceptsOwnerOnlyModes(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := filepath.Join(t.TempDir(), "keyring.json")
		if err := Generate().Save(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err != nil {
			t.Fatalf("mode %04o: Load: %v", mode, err)
		}
	}
}

func TestLoadRejectsInvalidFiles(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	master := func(id, k string) string {
		return fmt.Sprintf(`{"id":%q,"key":%q,"created_at":"2025-10-09T08:53:20Z"}`, id, k)
	}
	file := func(masters, active, pseudonym, envelope string) string {
		return fmt.Sprintf(`{"master_keys":[%s],"active_master":%q,"pseudonym_key":%q,"envelope_key":%q}`,
			masters, active, pseudonym, envelope)
	}
	tests := []struct {
		name    string
		content string
		wantErr string
	}{
		{"valid", file(master("m1", key), "m1", key, key), ""},
		{"short master key", file(master("m1", short), "m1", key, key), "master_keys[0].key"},
		{"short pseudonym key", file(master("m1", key), "m1", short, key), "pseudonym_key"},
		{"missing envelope key", file(master("m1", key), "m1", key, ""), "envelope_key"},
		{"missing active master", file(master("m1", key), "m2", key, key), "active_master"},
		{"empty active master", file(master("m1", key), "", key, key), "active_master"},
		{"no master keys", file("", "m1", key, key), "master_keys"},
		{"empty master id", file(master("", key), "", key, key), "master_keys[0].id"},
		{"duplicate master id", file(master("m1", key)+","+master("m1", key), "m1", key, key), "duplicate"},
		{"not base64", file(master("m1", "!!!"), "m1", key, key), "invalid JSON"},
		{"unknown field", `{"extra":1}`, "invalid JSON"},
		{"not JSON", `master_keys: []`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load accepted an invalid keyring, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load error = %v, want os.ErrNotExist", err)
	}
}

func TestRotate(t *testing.T) {
	k := Generate()
	dek := NewDataKey()
	oldWrapped, oldMaster, err := k.Wrap("p_s", "dk1", dek)
	if err != nil {
		t.Fatal(err)
	}

	id := k.Rotate()
	if id == oldMaster {
		t.Fatalf("Rotate returned the old master id %q", id)
	}
	if got := k.ActiveMaster(); got != id {
		t.Fatalf("ActiveMaster() = %q after Rotate, want %q", got, id)
	}
	if got := len(k.MasterIDs()); got != 2 {
		t.Fatalf("len(MasterIDs()) = %d after one Rotate, want 2", got)
	}

	_, newMaster, err := k.Wrap("p_s", "dk2", dek)
	if err != nil {
		t.Fatal(err)
	}
	if newMaster != id {
		t.Fatalf("Wrap used master %q after Rotate, want %q", newMaster, id)
	}
	got, err := k.Unwrap(oldMaster, "p_s", "dk1", oldWrapped)
	if err != nil {
		t.Fatalf("old wrapped key no longer unwraps after Rotate: %v", err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("old wrapped key unwraps to different bytes")
	}
}

func TestRotateSkipsTakenIDs(t *testing.T) {
	k := Generate()
	// A keyring whose ids are not m1..mN in order must still get a new id.
	k.masters = append(k.masters, masterKey{id: "m2", key: randomKey()})
	k.masters[0].id = "m3"
	k.active = "m3"
	id := k.Rotate()
	seen := map[string]bool{}
	for _, m := range k.MasterIDs() {
		if seen[m] {
			t.Fatalf("Rotate created duplicate id %q (ids %v)", id, k.MasterIDs())
		}
		seen[m] = true
	}
}

func TestPseudonym(t *testing.T) {
	k := Generate()
	p := k.Pseudonym("15550002222")
	if !regexp.MustCompile(`^p_[0-9a-f]{32}$`).MatchString(p) {
		t.Fatalf("Pseudonym = %q, want p_ and 32 hex digits", p)
	}
	if again := k.Pseudonym("15550002222"); again != p {
		t.Fatalf("Pseudonym is not stable: %q then %q", p, again)
	}
	if other := k.Pseudonym("15550003333"); other == p {
		t.Fatal("two values got the same pseudonym")
	}
	if strings.Contains(p, "15550002222") {
		t.Fatal("pseudonym contains the raw value")
	}
	if Generate().Pseudonym("15550002222") == p {
		t.Fatal("pseudonyms under different keys are equal")
	}
}

func TestPseudonymKnownValue(t *testing.T) {
	// HMAC-SHA256 with a key of 32 zero bytes over "15550002222", computed
	// independently with: python3 -c 'import hmac,hashlib;
	// print(hmac.new(bytes(32), b"15550002222", hashlib.sha256).hexdigest()[:32])'
	k := &Keyring{pseudonymKey: make([]byte, 32)}
	const want = "p_" + "c3faa87922e62b5523500173d13c6fe5"
	got := k.Pseudonym("15550002222")
	if got != want {
		t.Fatalf("Pseudonym = %s, want %s", got, want)
	}
}

func TestSealOpen(t *testing.T) {
	dek := NewDataKey()
	plaintext := []byte("Contact me at test.user@example.com")
	aad := []byte("wamid.RkFLRS1DMDEtMQ==")
	nonce, ciphertext, err := Seal(dek, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ciphertext, plaintext) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := Open(dek, nonce, ciphertext, aad)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("Open = %q, want %q", got, plaintext)
	}

	nonce2, _, err := Seal(dek, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(nonce, nonce2) {
		t.Fatal("two Seal calls used the same nonce")
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	dek := NewDataKey()
	aad := []byte("msg-1")
	nonce, ciphertext, err := Seal(dek, []byte("secret content"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name                        string
		dek, nonce, ciphertext, aad []byte
	}{
		{"flipped ciphertext byte", dek, nonce, flip(ciphertext, 0), aad},
		{"flipped tag byte", dek, nonce, flip(ciphertext, len(ciphertext)-1), aad},
		{"flipped nonce byte", dek, flip(nonce, 3), ciphertext, aad},
		{"truncated ciphertext", dek, nonce, ciphertext[:len(ciphertext)-1], aad},
		{"wrong aad", dek, nonce, ciphertext, []byte("msg-2")},
		{"missing aad", dek, nonce, ciphertext, nil},
		{"wrong key", NewDataKey(), nonce, ciphertext, aad},
		{"short nonce", dek, nonce[:8], ciphertext, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.dek, tt.nonce, tt.ciphertext, tt.aad)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open error = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestSealRejectsWrongKeySize(t *testing.T) {
	if _, _, err := Seal(make([]byte, 16), []byte("x"), nil); err == nil {
		t.Fatal("Seal accepted a 16-byte key")
	}
	if _, err := Open(make([]byte, 31), make([]byte, 12), []byte("x"), nil); err == nil {
		t.Fatal("Open accepted a 31-byte key")
	}
}

func TestUnwrapDetectsTampering(t *testing.T) {
	k := Generate()
	dek := NewDataKey()
	wrapped, masterID, err := k.Wrap("p_alice", "dk1", dek)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(wrapped)
	flipped[len(flipped)-2] ^= 0x80

	tests := []struct {
		name                     string
		masterID, subject, keyID string
		wrapped                  []byte
		want                     error
	}{
		{"other subject", masterID, "p_bob", "dk1", wrapped, ErrDecrypt},
		{"other key id", masterID, "p_alice", "dk2", wrapped, ErrDecrypt},
		{"tampered bytes", masterID, "p_alice", "dk1", flipped, ErrDecrypt},
		{"truncated", masterID, "p_alice", "dk1", wrapped[:5], ErrDecrypt},
		{"unknown master", "m9", "p_alice", "dk1", wrapped, ErrUnknownMaster},
		// Length prefixes keep ("p_alice", "dk1") apart from ("p_alic", "edk1").
		{"shifted boundary", masterID, "p_alic", "edk1", wrapped, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Unwrap(tt.masterID, tt.subject, tt.keyID, tt.wrapped)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unwrap error = %v, want %v", err, tt.want)
			}
		})
	}

	other := Generate()
	if _, err := other.Unwrap(masterID, "p_alice", "dk1", wrapped); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Unwrap under another keyring's m1: error = %v, want ErrDecrypt", err)
	}
}

func TestWrapKeyRecord(t *testing.T) {
	k := Generate()
	dek := NewDataKey()
	now := time.Date(2025, 10, 9, 8, 53, 20, 0, time.UTC)
	w, err := k.WrapKey("p_alice", "dk1", dek, now)
	if err != nil {
		t.Fatal(err)
	}
	if w.Subject != "p_alice" || w.KeyID != "dk1" || w.MasterID != "m1" || !w.CreatedAt.Equal(now) {
		t.Fatalf("WrapKey record = %+v, want subject p_alice, key dk1, master m1, created %v", w, now)
	}
	if bytes.Contains(w.Wrapped, dek) {
		t.Fatal("wrapped key contains the plain data key")
	}
	got, err := k.UnwrapKey(w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("UnwrapKey returned other bytes")
	}
}

func TestWrapRejectsWrongSize(t *testing.T) {
	if _, _, err := Generate().Wrap("p_s", "dk1", make([]byte, 16)); err == nil {
		t.Fatal("Wrap accepted a 16-byte data key")
	}
}

func TestKeyringNeverPrintsKeyMaterial(t *testing.T) {
	k := Generate()
	k.Rotate()
	secrets := [][]byte{k.pseudonymKey, k.envelopeKey}
	for _, m := range k.masters {
		secrets = append(secrets, m.key)
	}

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("keyring", "keys", k)
	marshalled, err := json.Marshal(struct{ K *Keyring }{k})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog": logged.String(),
		"json": string(marshalled),
	}
	// Format through fmt, not k.String(), so the test covers what each verb prints.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outputs[verb] = fmt.Sprintf(verb, k)
	}
	for name, out := range outputs {
		if !strings.Contains(out, "m2") {
			t.Errorf("%s output %q does not name the master key ids", name, out)
		}
		for _, s := range secrets {
			for _, enc := range []string{
				base64.StdEncoding.EncodeToString(s),
				base64.RawURLEncoding.EncodeToString(s),
				fmt.Sprintf("%x", s),
				fmt.Sprintf("%d", s),
			} {
				if strings.Contains(out, enc) {
					t.Errorf("%s output reveals key material", name)
				}
			}
		}
	}
}
