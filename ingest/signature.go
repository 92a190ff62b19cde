package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/syncguard/syncguard/internal/config"
)

// signaturePrefix starts every X-Hub-Signature-256 value that Meta sends.
const signaturePrefix = "sha256="

// webhookKeys holds the WhatsApp apps' verify tokens and app secrets.
type webhookKeys struct {
	apps []*appKeys
}

type appKeys struct {
	name string
	// verifyTokenSum is the SHA-256 of the verify token, so that tokens of
	// any length compare in constant time.
	verifyTokenSum [sha256.Size]byte
	secrets        []*appSecret
}

type appSecret struct {
	id        string
	notBefore time.Time
	notAfter  time.Time
	// macs holds HMAC-SHA256 states keyed with the secret, reused across
	// requests to save deriving the inner and outer pads each time.
	macs sync.Pool
}

// signatureMatch names the app and the secret that verified a webhook.
type signatureMatch struct {
	app      string
	secretID string
}

// newWebhookKeys reads the apps' secrets, from secret files where given.
func newWebhookKeys(apps []WhatsAppApp) (*webhookKeys, error) {
	k := &webhookKeys{}
	for i, app := range apps {
		a := &appKeys{name: app.Name, verifyTokenSum: sha256.Sum256([]byte(app.VerifyToken.Reveal()))}
		for j, sec := range app.Secrets {
			value := sec.Secret
			if sec.SecretFile != "" {
				var err error
				if value, err = config.ReadSecretFile(sec.SecretFile); err != nil {
					return nil, fmt.Errorf("whatsapp.apps[%d].secrets[%d].secret_file: %w", i, j, err)
				}
			}
			if value == "" {
				return nil, fmt.Errorf("whatsapp.apps[%d].secrets[%d]: the app secret is empty", i, j)
			}
			key := []byte(value.Reveal())
			a.secrets = append(a.secrets, &appSecret{
				id:        sec.ID,
				notBefore: sec.NotBefore,
				notAfter:  sec.NotAfter,
				macs:      sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
			})
		}
		k.apps = append(k.apps, a)
	}
	return k, nil
}

// active reports whether the secret is accepted at now.
func (s *appSecret) active(now time.Time) bool {
	if !s.notBefore.IsZero() && now.Before(s.notBefore) {
		return false
	}
	return s.notAfter.IsZero() || now.Before(s.notAfter)
}

// activeSecrets counts the secrets accepted at now, for the start-up log.
func (k *webhookKeys) activeSecrets(now time.Time) int {
	n := 0
	for _, a := range k.apps {
		for _, s := range a.secrets {
			if s.active(now) {
				n++
			}
		}
	}
	return n
}

// matchVerifyToken reports whether token is the verify token of any app.
// Every app is compared, in constant time, whatever the outcome.
func (k *webhookKeys) matchVerifyToken(token string) bool {
	sum := sha256.Sum256([]byte(token))
	match := 0
	for _, a := range k.apps {
		match |= subtle.ConstantTimeCompare(sum[:], a.verifyTokenSum[:])
	}
	return match == 1
}

// parseSignature decodes an X-Hub-Signature-256 value: "sha256=" and 64
// hex digits, in either case. Anything else, an empty value and a value
// without the prefix included, is malformed.
func parseSignature(v string) (digest [sha256.Size]byte, ok bool) {
	hexDigest, found := strings.CutPrefix(v, signaturePrefix)
	if !found || len(hexDigest) != 2*sha256.Size {
		return digest, false
	}
	if _, err := hex.Decode(digest[:], []byte(hexDigest)); err != nil {
		return digest, false
	}
	return digest, true
}

// verifySignature checks the X-Hub-Signature-256 header values against
// body, the exact bytes received, with every app secret active at now.
// It returns errMissingSignature when no header was sent, errBadSignature
// when it is repeated, malformed or matches no secret.
func (k *webhookKeys) verifySignature(values []string, body []byte, now time.Time) (signatureMatch, error) {
	switch len(values) {
	case 0:
		return signatureMatch{}, errMissingSignature
	case 1:
	default:
		return signatureMatch{}, errBadSignature
	}
	want, ok := parseSignature(values[0])
	if !ok {
		return signatureMatch{}, errBadSignature
	}

	var got [sha256.Size]byte
	for _, a := range k.apps {
		for _, sec := range a.secrets {
			if !sec.active(now) {
				continue
			}
			mac := sec.macs.Get().(hash.Hash)
			mac.Reset()
			mac.Write(body)
			mac.Sum(got[:0])
			sec.macs.Put(mac)
			if hmac.Equal(got[:], want[:]) {
				return signatureMatch{app: a.name, secretID: sec.id}, nil
			}
		}
	}
	return signatureMatch{}, errBadSignature
}
