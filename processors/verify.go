package processors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/syncguard/syncguard/schemas"
)

// signaturePrefix starts the X-Hub-Signature-256 value that Meta sends.
const signaturePrefix = "sha256="

// verifyWhatsApp checks the sg-signature header of a WhatsApp record: the
// HMAC-SHA256 of the record value under any App Secret of the app named in
// sg-app. The value is hashed as stored, byte for byte, never re-encoded.
// It returns "" when the signature is valid, else why it is not.
func (p *Processor) verifyWhatsApp(rr *rawRecord) string {
	secrets, ok := p.apps[rr.headers[schemas.HeaderApp]]
	if !ok {
		return "no configured app matches header " + schemas.HeaderApp
	}
	hexSig, ok := strings.CutPrefix(rr.headers[schemas.HeaderSignature], signaturePrefix)
	if !ok {
		return "header " + schemas.HeaderSignature + " is missing or lacks the sha256= prefix"
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return "header " + schemas.HeaderSignature + " is not 64 hex digits"
	}

	// Every secret is tried, so the time taken does not depend on which
	// one matched.
	match := false
	for _, secret := range secrets {
		m := hmac.New(sha256.New, secret)
		m.Write(rr.Value)
		if hmac.Equal(m.Sum(nil), got) {
			match = true
		}
	}
	if !match {
		return "signature does not match the value"
	}
	return ""
}

// verifySync checks the envelope MAC that ingest computed over a sync
// record's value and headers. It returns "" when the MAC is valid, else
// why it is not.
func (p *Processor) verifySync(rr *rawRecord) string {
	h := rr.headers
	if h[schemas.HeaderMAC] == "" {
		return "header " + schemas.HeaderMAC + " is missing"
	}
	if h[schemas.HeaderDevice] == "" || h[schemas.HeaderSubject] == "" {
		return "header " + schemas.HeaderDevice + " or " + schemas.HeaderSubject + " is missing"
	}
	if !schemas.CheckEnvelopeMAC(p.envelopeKey, h[schemas.HeaderMAC], h[schemas.HeaderRequestID],
		h[schemas.HeaderReceivedAt], h[schemas.HeaderDevice], h[schemas.HeaderSubject], rr.Value) {
		return "envelope MAC does not match"
	}
	return ""
}
