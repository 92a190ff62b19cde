package schemas

import (
	"bytes"
	"errors"
	"testing"
)

func TestRawSealerRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewRawSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"text":{"body":"secret words"}}`)
	sealed := s.Seal(KindWhatsApp, "req-1", []byte("k1"), plain)
	if bytes.Contains(sealed, []byte("secret words")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open(KindWhatsApp, "req-1", []byte("k1"), sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("Open = %q, want %q", got, plain)
	}
}

func TestRawSealerRejects(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, _ := NewRawSealer(key)
	other, _ := NewRawSealer(bytes.Repeat([]byte{8}, 32))
	sealed := s.Seal(KindSync, "req-1", []byte("k1"), []byte("event"))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1

	cases := []struct {
		name   string
		sealer *RawSealer
		kind   string
		reqID  string
		key    string
		value  []byte
	}{
		{"other sealing key", other, KindSync, "req-1", "k1", sealed},
		{"other request id", s, KindSync, "req-2", "k1", sealed},
		{"other kind", s, KindWhatsApp, "req-1", "k1", sealed},
		{"other record key", s, KindSync, "req-1", "k2", sealed},
		{"tampered", s, KindSync, "req-1", "k1", tampered},
		{"plaintext", s, KindSync, "req-1", "k1", []byte(`{"event_id":"e1","padding":"xxxxxxxxxxxxxxxx"}`)},
		{"short", s, KindSync, "req-1", "k1", []byte("x")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.sealer.Open(c.kind, c.reqID, []byte(c.key), c.value)
			if !errors.Is(err, ErrRawRecordSealed) {
				t.Errorf("Open error = %v, want ErrRawRecordSealed", err)
			}
		})
	}
}

func TestEnvelopeMACFieldsSeparate(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	a := EnvelopeMAC(key, "r1", "t", "dev", "sub", []byte("v"))
	b := EnvelopeMAC(key, "r1", "t", "de", "vsub", []byte("v"))
	if a == b {
		t.Error("moving bytes between fields kept the MAC")
	}
	if !CheckEnvelopeMAC(key, a, "r1", "t", "dev", "sub", []byte("v")) {
		t.Error("CheckEnvelopeMAC rejected its own MAC")
	}
	if CheckEnvelopeMAC(key, a, "r1", "t", "dev", "sub", []byte("w")) {
		t.Error("CheckEnvelopeMAC accepted a changed value")
	}
}
