// Package config holds the plumbing shared by every component's
// configuration: secrets that redact themselves, YAML loading and
// environment overrides.
package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret is a string that never prints itself: fmt, JSON, YAML and slog
// all see "[redacted]". Use Reveal where the value is really needed.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Format implements fmt.Formatter, so that %v, %s, %q and %x all redact.
func (s Secret) Format(f fmt.State, verb rune) {
	// Format cannot return an error, so a failed write is dropped.
	switch verb {
	case 'q':
		_, _ = fmt.Fprintf(f, "%q", s.String())
	default:
		_, _ = fmt.Fprint(f, s.String())
	}
}

// ReadSecretFile reads a secret from a file, trimming one final newline.
// Files are the preferred way to pass secrets: they stay out of process
// listings and environment dumps.
func ReadSecretFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	return Secret(strings.TrimRight(string(b), "\r\n")), nil
}
