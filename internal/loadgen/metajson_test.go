package loadgen

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestEscapeMeta(t *testing.T) {
	f := func(t *testing.T, in, want string) {
		t.Helper()
		got, err := MarshalMeta(in)
		if err != nil {
			t.Fatalf("MarshalMeta(%q): %v", in, err)
		}
		if string(got) != want {
			t.Errorf("MarshalMeta(%q) = %s, want %s", in, got, want)
		}
	}
	f(t, "plain", `"plain"`)
	f(t, "https://example.com/a", `"https:\/\/example.com\/a"`)
	f(t, "a@b.c", `"a\u0040b.c"`)
	f(t, "für März", `"f\u00fcr M\u00e4rz"`)
	f(t, "😮", `"\ud83d\ude2e"`)
	f(t, "Ω", `"\u03a9"`)
	f(t, `back\slash "quoted"`, `"back\\slash \"quoted\""`)
	f(t, `\/`, `"\\\/"`)
	f(t, "line\nbreak\ttab", `"line\nbreak\ttab"`)
	f(t, "<&>", `"<&>"`)
	f(t, "bad\xffbyte", `"bad\ufffdbyte"`)
}

// TestMarshalMetaRoundTrip decodes notifications in Meta's byte form and
// encodes them again: the bytes must not change, which checks both the
// escaping and the key order of the payload types.
func TestMarshalMetaRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/meta/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no files in testdata/meta")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var n waNotification
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&n); err != nil {
				t.Fatalf("decode: %v", err)
			}
			got, err := MarshalMeta(&n)
			if err != nil {
				t.Fatalf("MarshalMeta: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("re-encoded bytes differ\n got: %s\nwant: %s", got, want)
			}
		})
	}
}
