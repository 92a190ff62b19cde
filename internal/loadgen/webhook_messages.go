package loadgen

import (
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
)

type weighted[T any] struct {
	value  T
	weight int
}

func pickWeighted[T any](rng *rand.Rand, choices []weighted[T]) T {
	total := 0
	for _, c := range choices {
		total += c.weight
	}
	n := rng.IntN(total)
	for _, c := range choices {
		if n < c.weight {
			return c.value
		}
		n -= c.weight
	}
	panic("BUG: weighted choice out of range")
}

// messageTypes are the kinds of inbound messages with their weights, an
// estimate of a customer-service number's traffic: mostly text, then media,
// reactions and replies to interactive messages. "button_reply" and
// "list_reply" are the two kinds of WhatsApp type "interactive".
var messageTypes = []weighted[string]{
	{"text", 52},
	{"image", 8},
	{"audio", 5},
	{"reaction", 5},
	{"document", 4},
	{"button_reply", 4},
	{"sticker", 3},
	{"button", 3},
	{"video", 2},
	{"location", 2},
	{"list_reply", 2},
	{"contacts", 1},
	{"unsupported", 1},
}

// message builds one inbound message of the given kind from customer c and
// records its content in d.
func (w *webhookState) message(d *draft, ai int, c Customer, kind string) waMessage {
	msg := waMessage{From: c.WAID, ID: w.newID("in"), Timestamp: w.timestamp(), Type: kind}
	switch kind {
	case "text":
		body := fillTemplate(w.rng, pick(w.rng, textTemplates))
		msg.Text = &waText{Body: body}
		d.plain(body)
	case "image", "video", "audio", "document", "sticker":
		w.media(d, &msg)
	case "location":
		p := pick(w.rng, places)
		loc := &waLocation{Latitude: p.lat, Longitude: p.lon}
		if w.rng.IntN(3) > 0 {
			loc.Name, loc.Address = p.name, p.address
		}
		msg.Location = loc
		d.plain(loc.Name, loc.Address,
			strconv.FormatFloat(p.lat, 'f', -1, 64), strconv.FormatFloat(p.lon, 'f', -1, 64))
	case "contacts":
		n := pick(w.rng, contactNames)
		waID := "1555" + strconv.Itoa(1000000+w.rng.IntN(9000000))
		formatted := n.first
		if n.last != "" {
			formatted += " " + n.last
		}
		phone := "+1 555-" + waID[4:7] + "-" + waID[7:]
		msg.Contacts = []waSharedContact{{
			Name:   waContactName{FormattedName: formatted, FirstName: n.first, LastName: n.last},
			Phones: []waPhone{{Phone: phone, WAID: waID, Type: "CELL"}},
		}}
		d.plain(formatted, phone)
		d.personal = append(d.personal, waID)
	case "button_reply", "list_reply":
		msg.Type = "interactive"
		msg.Context = &waContext{From: w.accounts[ai].DisplayNumber, ID: w.newID("out")}
		if kind == "button_reply" {
			r := pick(w.rng, buttonReplies)
			msg.Interactive = &waInteractive{Type: kind, ButtonReply: &r}
			d.plain(r.Title)
		} else {
			r := pick(w.rng, listReplies)
			msg.Interactive = &waInteractive{Type: kind, ListReply: &r}
			d.plain(r.Title, r.Description)
		}
	case "button":
		b := pick(w.rng, quickReplies)
		msg.Context = &waContext{From: w.accounts[ai].DisplayNumber, ID: w.newID("out")}
		msg.Button = &b
		d.plain(b.Text)
	case "reaction":
		r := &waReaction{MessageID: w.newID("out")}
		// One reaction in six is a removal, which has no emoji.
		if w.rng.IntN(6) > 0 {
			r.Emoji = pick(w.rng, reactionEmoji)
		}
		msg.Reaction = r
		d.plain(r.Emoji)
	case "unsupported":
		if w.rng.IntN(4) == 0 {
			msg.Type = "unknown"
		}
		msg.Errors = []waError{{
			Code:      131051,
			Title:     "Message type unknown",
			Message:   "Message type unknown",
			ErrorData: waErrorData{Details: "Message type is currently not supported."},
		}}
	default:
		panic("BUG: unknown message kind " + kind)
	}
	return msg
}

// media fills the media object of msg, whose Type is a media type.
func (w *webhookState) media(d *draft, msg *waMessage) {
	hash := make([]byte, 32)
	_, _ = w.src.Read(hash)
	m := &waMedia{
		MimeType: pick(w.rng, mediaKinds[msg.Type].mimeTypes),
		SHA256:   base64.StdEncoding.EncodeToString(hash),
		ID:       strconv.FormatInt(100000000000000+w.rng.Int64N(900000000000000), 10),
	}
	switch msg.Type {
	case "image", "video":
		if w.rng.IntN(10) < 6 {
			m.Caption = fillTemplate(w.rng, pick(w.rng, captions))
		}
		if msg.Type == "image" {
			msg.Image = m
		} else {
			msg.Video = m
		}
	case "document":
		if w.rng.IntN(10) < 3 {
			m.Caption = fillTemplate(w.rng, pick(w.rng, captions))
		}
		m.Filename = fillTemplate(w.rng, pick(w.rng, documentNames))
		msg.Document = m
	case "audio":
		voice := m.MimeType == "audio/ogg; codecs=opus"
		m.Voice = &voice
		msg.Audio = m
	case "sticker":
		animated := w.rng.IntN(5) == 0
		m.Animated = &animated
		msg.Sticker = m
	}
	d.plain(m.Caption, m.Filename)
}

// statusChange returns a change with one status, or two in one change one
// time in seven, for outbound messages of account ai.
func (w *webhookState) statusChange(d *draft, ai int) waChange {
	v := w.value(ai)
	n := 1
	if w.rng.IntN(7) == 0 {
		n = 2
	}
	for range n {
		v.Statuses = append(v.Statuses, w.status(d, ai))
	}
	// Meta adds the recipient as a contact without profile to some status
	// notifications.
	if w.rng.IntN(10) < 3 {
		v.Contacts = []waContact{{WAID: v.Statuses[0].RecipientID}}
	}
	return waChange{Value: v, Field: "messages"}
}

// status advances one pending outbound message of account ai, or starts a
// new one, and returns its next status.
func (w *webhookState) status(d *draft, ai int) waStatus {
	om := w.pendingOutbound(ai)
	switch om.last {
	case "":
		om.last = "sent"
	case "sent":
		om.last = "delivered"
		if w.rng.IntN(25) == 0 {
			om.last = "failed"
		}
	default:
		om.last = "read"
	}

	ts := w.timestamp()
	s := waStatus{ID: om.id, Status: om.last, Timestamp: ts, RecipientID: om.recipient.WAID}
	category := pick(w.rng, []string{"service", "utility", "marketing", "authentication"})
	switch om.last {
	case "sent":
		convID := make([]byte, 16)
		_, _ = w.src.Read(convID)
		unix, _ := strconv.ParseInt(ts, 10, 64)
		s.Conversation = &waConversation{
			ID:                  hex.EncodeToString(convID),
			ExpirationTimestamp: strconv.FormatInt(unix+86400, 10),
			Origin:              waConvOrigin{Type: category},
		}
		s.Pricing = &waPricing{Billable: category != "service", PricingModel: "PMP", Category: category}
	case "delivered":
		s.Pricing = &waPricing{Billable: category != "service", PricingModel: "PMP", Category: category}
	case "failed":
		s.Errors = []waError{pick(w.rng, statusErrors)}
	}
	if om.last == "read" || om.last == "failed" {
		w.dropOutbound(om.id)
	}
	d.statuses = append(d.statuses, StatusRef{MessageID: s.ID, Status: s.Status, Account: w.accounts[ai].PhoneNumberID})
	d.personal = append(d.personal, s.RecipientID)
	return s
}

var statusErrors = []waError{
	{
		Code: 131049, Title: "This message was not delivered to maintain healthy ecosystem engagement.",
		Message:   "This message was not delivered to maintain healthy ecosystem engagement.",
		ErrorData: waErrorData{Details: "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
		Href:      "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
	},
	{
		Code: 131026, Title: "Message undeliverable", Message: "Message undeliverable",
		ErrorData: waErrorData{Details: "Message Undeliverable."},
	},
	{
		Code: 131047, Title: "Re-engagement message", Message: "Re-engagement message",
		ErrorData: waErrorData{Details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
		Href:      "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
	},
}

// pendingOutbound returns a pointer into w.outbound: an existing message of
// account ai, or a new one. The pointer is valid until w.outbound changes.
func (w *webhookState) pendingOutbound(ai int) *outboundMessage {
	var candidates []int
	for i := range w.outbound {
		if w.outbound[i].account == ai {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) > 0 && (w.rng.IntN(3) > 0 || len(w.outbound) >= maxOutbound) {
		return &w.outbound[candidates[w.rng.IntN(len(candidates))]]
	}
	if len(w.outbound) >= maxOutbound {
		// Forget the oldest message, whose remaining statuses never come.
		w.outbound = append(w.outbound[:0], w.outbound[1:]...)
	}
	a := w.accounts[ai]
	w.outbound = append(w.outbound, outboundMessage{
		id:        w.newID("out"),
		account:   ai,
		recipient: a.Customers[w.rng.IntN(len(a.Customers))],
	})
	return &w.outbound[len(w.outbound)-1]
}

func (w *webhookState) dropOutbound(id string) {
	for i := range w.outbound {
		if w.outbound[i].id == id {
			w.outbound = append(w.outbound[:i], w.outbound[i+1:]...)
			return
		}
	}
}
