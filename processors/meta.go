package processors

import (
	"github.com/segmentio/encoding/json"
)

// MessageMeta holds the fields of a WhatsApp message that are not content
// and stay in the clear beside the ciphertext (EncryptedMessage.Meta), so
// analysts can route and correlate without decrypting. Captions, file
// names, texts, titles, emoji and locations are content and never appear
// here. Phone numbers appear only as pseudonyms.
type MessageMeta struct {
	MediaID         string `json:"media_id,omitempty"`
	MimeType        string `json:"mime_type,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	Voice           *bool  `json:"voice,omitempty"`
	Animated        *bool  `json:"animated,omitempty"`
	ReactionTo      string `json:"reaction_to,omitempty"`
	InteractiveType string `json:"interactive_type,omitempty"`
	ReplyID         string `json:"reply_id,omitempty"`
	ButtonPayload   string `json:"button_payload,omitempty"`
	ContextID       string `json:"context_id,omitempty"`
	ContextFrom     string `json:"context_from,omitempty"` // pseudonym
	Forwarded       bool   `json:"forwarded,omitempty"`
}

// metaFields is the union of the non-content fields of every message type
// that has them, as Meta names them.
type metaFields struct {
	ID          string `json:"id"`
	MimeType    string `json:"mime_type"`
	SHA256      string `json:"sha256"`
	Voice       *bool  `json:"voice"`
	Animated    *bool  `json:"animated"`
	MessageID   string `json:"message_id"` // reaction target
	Type        string `json:"type"`       // interactive sub-type
	Payload     string `json:"payload"`    // template quick-reply button
	ButtonReply *struct {
		ID string `json:"id"`
	} `json:"button_reply"`
	ListReply *struct {
		ID string `json:"id"`
	} `json:"list_reply"`
}

type contextFields struct {
	Context *struct {
		ID                  string `json:"id"`
		From                string `json:"from"`
		Forwarded           bool   `json:"forwarded"`
		FrequentlyForwarded bool   `json:"frequently_forwarded"`
	} `json:"context"`
}

// messageMeta extracts the MessageMeta of a parsed message as JSON, or nil
// when it has none. Fields that do not decode are left out: the whole
// message is inside the ciphertext anyway.
func messageMeta(m Message, pseudonym func(string) string) json.RawMessage {
	var meta MessageMeta
	if m.Known && len(m.Content) > 0 {
		var f metaFields
		if json.Unmarshal(m.Content, &f) == nil {
			switch m.Type {
			case "image", "audio", "video", "document", "sticker":
				meta.MediaID, meta.MimeType, meta.SHA256 = f.ID, f.MimeType, f.SHA256
				meta.Voice, meta.Animated = f.Voice, f.Animated
			case "reaction":
				meta.ReactionTo = f.MessageID
			case "interactive":
				meta.InteractiveType = f.Type
				switch {
				case f.ButtonReply != nil:
					meta.ReplyID = f.ButtonReply.ID
				case f.ListReply != nil:
					meta.ReplyID = f.ListReply.ID
				}
			case "button":
				meta.ButtonPayload = f.Payload
			}
		}
	}
	if len(m.Extra) > 0 {
		var c contextFields
		if json.Unmarshal(m.Extra, &c) == nil && c.Context != nil {
			meta.ContextID = c.Context.ID
			if c.Context.From != "" {
				meta.ContextFrom = pseudonym(c.Context.From)
			}
			meta.Forwarded = c.Context.Forwarded || c.Context.FrequentlyForwarded
		}
	}
	if meta == (MessageMeta{}) {
		return nil
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil
	}
	return b
}
