package processors

import (
	stdjson "encoding/json"
	"path/filepath"
	"testing"
)

// FuzzParseWebhook checks that no body makes ParseWebhook panic, and that
// every message it calls routable has an id and content that is valid JSON.
func FuzzParseWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "meta", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		f.Add(readMeta(f, filepath.Base(file)))
	}
	f.Add(wrapMessages(`{"from":1,"id":2,"timestamp":3,"type":"text","text":null}`))
	f.Add(wrapMessages(`{"from":"1","id":"2","timestamp":"3","type":"from"}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":1e400}]}}]}]}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		wh, err := ParseWebhook(body)
		if err != nil {
			return
		}
		for _, e := range wh.Entries {
			for _, c := range e.Changes {
				for _, m := range c.Value.Messages {
					if m.Invalid != "" {
						continue
					}
					if m.ID == "" || m.Type == "" {
						t.Fatalf("routable message without id or type: %+v", m)
					}
					if !stdjson.Valid(m.Content) {
						t.Fatalf("message %q content is not valid JSON: %q", m.ID, m.Content)
					}
					if m.Extra != nil && !stdjson.Valid(m.Extra) {
						t.Fatalf("message %q extra is not valid JSON: %q", m.ID, m.Extra)
					}
				}
				for _, s := range c.Value.Statuses {
					if s.Invalid == "" && (s.ID == "" || s.Status == "") {
						t.Fatalf("routable status without id or status: %+v", s)
					}
				}
			}
		}
	})
}
