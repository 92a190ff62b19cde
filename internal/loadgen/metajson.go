package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// MarshalMeta encodes v as compact JSON in the byte form that Meta's
// webhooks use: every non-ASCII character as a lowercase \uXXXX escape
// (UTF-16 surrogate pairs above U+FFFF), "/" as "\/" and "@" as "\u0040".
// Object keys keep the order of the struct fields.
func MarshalMeta(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode webhook JSON: %w", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return EscapeMeta(out), nil
}

// EscapeMeta rewrites compact JSON produced by encoding/json (with HTML
// escaping off) into Meta's escaping. It works byte by byte without
// tracking strings because encoding/json emits "/", "@" and non-ASCII
// bytes only inside strings and never writes an escape that starts with
// "\/". Invalid UTF-8 becomes \ufffd.
func EscapeMeta(compact []byte) []byte {
	out := make([]byte, 0, len(compact)+len(compact)/8)
	for i := 0; i < len(compact); {
		c := compact[i]
		switch {
		case c == '/':
			out = append(out, '\\', '/')
			i++
		case c == '@':
			out = appendUnicodeEscape(out, '@')
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(compact[i:])
			i += size
			if r > 0xffff {
				hi, lo := utf16.EncodeRune(r)
				out = appendUnicodeEscape(out, hi)
				out = appendUnicodeEscape(out, lo)
				continue
			}
			out = appendUnicodeEscape(out, r)
		}
	}
	return out
}

func appendUnicodeEscape(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u',
		hex[(r>>12)&0xf], hex[(r>>8)&0xf], hex[(r>>4)&0xf], hex[r&0xf])
}
