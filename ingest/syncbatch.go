package ingest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/segmentio/encoding/json"
)

// Media types of a sync batch.
const (
	mediaJSON = iota
	mediaNDJSON
	mediaUnsupported
)

// parseMediaType classifies a Content-Type value. Parameters such as
// charset are ignored.
func parseMediaType(contentType string) int {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "application/json"):
		return mediaJSON
	case strings.EqualFold(mt, "application/x-ndjson"):
		return mediaNDJSON
	default:
		return mediaUnsupported
	}
}

// batchLimits bound one sync batch. maxLineBytes bounds one event in
// either media type: an NDJSON line, or an element of a JSON batch.
type batchLimits struct {
	maxEvents    int
	maxLineBytes int
}

// parseBatch splits a sync batch into the raw JSON of its events, as sent.
// A JSON body is an array of events or an object {"events": [...]}. An
// NDJSON body has one event per line; blank lines are skipped, and a line
// may end in CRLF. Errors are errTooManyEvents, errLineTooLong,
// errEventTooLarge (all three mean 413), errEmptyBatch, or
// errMalformedBatch and errTooDeep (400).
// The returned slices point into body.
func parseBatch(media int, body []byte, limits batchLimits) ([][]byte, error) {
	var events [][]byte
	var err error
	if media == mediaNDJSON {
		events, err = splitNDJSON(body, limits)
	} else {
		events, err = splitJSONBatch(body)
	}
	switch {
	case err != nil:
		return nil, err
	case len(events) == 0:
		return nil, errEmptyBatch
	case len(events) > limits.maxEvents:
		return nil, errTooManyEvents
	}
	if media == mediaNDJSON {
		return events, nil // splitNDJSON bounded every line already
	}
	// Each event becomes one Kafka record, so without this bound one event
	// of a JSON batch could exceed the broker's maximum record size.
	for i, ev := range events {
		if len(ev) > limits.maxLineBytes {
			return nil, fmt.Errorf("event %d: %w", i, errEventTooLarge)
		}
	}
	return events, nil
}

func splitNDJSON(body []byte, limits batchLimits) ([][]byte, error) {
	var events [][]byte
	for lineNo := 1; len(body) > 0; lineNo++ {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > limits.maxLineBytes {
			return nil, fmt.Errorf("line %d: %w", lineNo, errLineTooLong)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(events) == limits.maxEvents {
			return nil, errTooManyEvents
		}
		// Each line is checked on its own, so that an unterminated string
		// on one line cannot hide the brackets of the next.
		if !nestingWithin(line, maxJSONDepth) {
			return nil, fmt.Errorf("line %d: %w", lineNo, errTooDeep)
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("line %d: %w", lineNo, errMalformedBatch)
		}
		events = append(events, line)
	}
	return events, nil
}

// batchObject is the object form of a JSON batch.
type batchObject struct {
	Events []json.RawMessage `json:"events"`
}

func splitJSONBatch(body []byte) ([][]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errMalformedBatch
	}
	if !nestingWithin(body, maxJSONDepth) {
		return nil, errTooDeep
	}
	var raw []json.RawMessage
	var rest []byte
	var err error
	switch body[0] {
	case '[':
		rest, err = json.Parse(body, &raw, json.DontCopyRawMessage)
	case '{':
		var obj batchObject
		rest, err = json.Parse(body, &obj, strictParse)
		if err == nil && obj.Events == nil {
			return nil, fmt.Errorf("the events array is missing: %w", errMalformedBatch)
		}
		// Go's decoders keep the last of two equal keys, so a repeated
		// events key would drop the first array without a word.
		if err == nil && topLevelKeys(body, "events") > 1 {
			return nil, fmt.Errorf("the events key appears more than once: %w", errMalformedBatch)
		}
		raw = obj.Events
	default:
		return nil, errMalformedBatch
	}
	if err != nil || len(rest) != 0 {
		return nil, errMalformedBatch
	}
	events := make([][]byte, len(raw))
	for i, r := range raw {
		events[i] = r
	}
	return events, nil
}

// topLevelKeys counts the keys equal to key, after unescaping, at the top
// level of the JSON object in raw.
func topLevelKeys(raw []byte, key string) int {
	n := 0
	t := json.NewTokenizer(raw)
	defer t.Reset(nil)
	for t.Next() {
		if t.IsKey && t.Depth == 1 && string(t.String()) == key {
			n++
		}
	}
	return n
}
