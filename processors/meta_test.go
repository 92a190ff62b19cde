package processors

import (
	"os"
	"strings"
	"testing"
)

func firstMessage(t *testing.T, file string) Message {
	t.Helper()
	body, err := os.ReadFile("testdata/meta/" + file)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseWebhook(body)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return w.Entries[0].Changes[0].Value.Messages[0]
}

func TestMessageMeta(t *testing.T) {
	pseudonym := func(s string) string { return "p_" + s }
	cases := []struct {
		file    string
		want    []string // substrings of the meta JSON
		content []string // content that must not appear
	}{
		{"image.json", []string{`"mime_type":"image/jpeg"`, `"media_id":"900000000000101"`, `"sha256":"k3/9Zx+`}, []string{"Rechnung"}},
		{"audio.json", []string{`"mime_type":"audio/ogg; codecs=opus"`, `"voice":true`}, nil},
		{"sticker.json", []string{`"mime_type":"image/webp"`, `"animated":false`}, nil},
		{"document.json", []string{`"mime_type":"application/pdf"`}, []string{"Vertrag"}},
		{"reaction.json", []string{`"reaction_to":"wamid.RkFLRS1DMTUtb3V0LTE="`}, []string{"\U0001F62E", `\ud83d`}},
		{"reaction_removed.json", []string{`"reaction_to":"wamid.RkFLRS1DMTUtb3V0LTE="`}, nil},
		{"interactive_button_reply.json", []string{`"interactive_type":"button_reply"`, `"reply_id":"btn_confirm_yes"`, `"context_id":"wamid.RkFLRS1DMTctb3V0LTE="`, `"context_from":"p_15550001111"`}, []string{"Yes, confirm"}},
		{"interactive_list_reply.json", []string{`"reply_id":"slot_tue_10"`}, []string{"Tue 10:00", "Tuesday morning"}},
		{"button_quick_reply.json", []string{`"button_payload":"STOP_PROMOS"`}, []string{"Stop promotions"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			meta := string(messageMeta(firstMessage(t, c.file), pseudonym))
			for _, w := range c.want {
				if !strings.Contains(meta, w) {
					t.Errorf("meta %s lacks %s", meta, w)
				}
			}
			for _, secret := range c.content {
				if strings.Contains(meta, secret) {
					t.Errorf("meta %s contains content %q", meta, secret)
				}
			}
		})
	}
}

func TestMessageMetaEmpty(t *testing.T) {
	for _, file := range []string{"text_simple.json", "location.json", "unsupported.json"} {
		if meta := messageMeta(firstMessage(t, file), func(s string) string { return s }); meta != nil {
			t.Errorf("%s: meta %s, want none", file, meta)
		}
	}
}
