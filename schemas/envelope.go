package schemas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
)

// EnvelopeMAC returns the hex HMAC-SHA256, keyed with the shared envelope
// key, over a sync record's value and the headers that give it meaning.
// Each field is length-prefixed, so no two different field lists hash alike.
// Ingest sets it in HeaderMAC and processors recompute it, so that a record
// written into the raw topic by anyone without the key is rejected.
func EnvelopeMAC(key []byte, requestID, receivedAt, device, subject string, value []byte) string {
	m := hmac.New(sha256.New, key)
	writeField(m, []byte(KindSync))
	writeField(m, []byte(requestID))
	writeField(m, []byte(receivedAt))
	writeField(m, []byte(device))
	writeField(m, []byte(subject))
	writeField(m, value)
	return hex.EncodeToString(m.Sum(nil))
}

// CheckEnvelopeMAC reports, in constant time, whether mac matches.
func CheckEnvelopeMAC(key []byte, mac, requestID, receivedAt, device, subject string, value []byte) bool {
	want := EnvelopeMAC(key, requestID, receivedAt, device, subject, value)
	return hmac.Equal([]byte(want), []byte(mac))
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
