package loadgen

// The types below mirror the WhatsApp Cloud API webhook payload. Field order
// matters: encoding/json writes keys in struct order, and the order here
// follows the notifications Meta sends, so the bytes look like Meta's.

type waNotification struct {
	Object string    `json:"object"`
	Entry  []waEntry `json:"entry"`
}

type waEntry struct {
	ID      string     `json:"id"`
	Changes []waChange `json:"changes"`
}

type waChange struct {
	Value waValue `json:"value"`
	Field string  `json:"field"`
}

type waValue struct {
	MessagingProduct string      `json:"messaging_product"`
	Metadata         waMetadata  `json:"metadata"`
	Contacts         []waContact `json:"contacts,omitempty"`
	Messages         []waMessage `json:"messages,omitempty"`
	Statuses         []waStatus  `json:"statuses,omitempty"`
}

type waMetadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

type waContact struct {
	Profile *waProfile `json:"profile,omitempty"`
	WAID    string     `json:"wa_id"`
}

type waProfile struct {
	Name string `json:"name"`
}

// waMessage is one inbound message. Exactly one of the content fields is
// set, matching Type. Unsupported messages carry only Errors.
type waMessage struct {
	Context     *waContext        `json:"context,omitempty"`
	From        string            `json:"from"`
	ID          string            `json:"id"`
	Timestamp   string            `json:"timestamp"`
	Errors      []waError         `json:"errors,omitempty"`
	Text        *waText           `json:"text,omitempty"`
	Location    *waLocation       `json:"location,omitempty"`
	Contacts    []waSharedContact `json:"contacts,omitempty"`
	Type        string            `json:"type"`
	Image       *waMedia          `json:"image,omitempty"`
	Audio       *waMedia          `json:"audio,omitempty"`
	Video       *waMedia          `json:"video,omitempty"`
	Document    *waMedia          `json:"document,omitempty"`
	Sticker     *waMedia          `json:"sticker,omitempty"`
	Interactive *waInteractive    `json:"interactive,omitempty"`
	Button      *waButton         `json:"button,omitempty"`
	Reaction    *waReaction       `json:"reaction,omitempty"`
}

type waContext struct {
	From string `json:"from"`
	ID   string `json:"id"`
}

type waText struct {
	Body string `json:"body"`
}

// waMedia is the object of image, audio, video, document and sticker
// messages. Voice is set only on audio and Animated only on stickers.
type waMedia struct {
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
	MimeType string `json:"mime_type"`
	SHA256   string `json:"sha256"`
	ID       string `json:"id"`
	Voice    *bool  `json:"voice,omitempty"`
	Animated *bool  `json:"animated,omitempty"`
}

type waLocation struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Name      string  `json:"name,omitempty"`
	Address   string  `json:"address,omitempty"`
}

type waSharedContact struct {
	Name   waContactName `json:"name"`
	Phones []waPhone     `json:"phones"`
}

type waContactName struct {
	FormattedName string `json:"formatted_name"`
	FirstName     string `json:"first_name"`
	LastName      string `json:"last_name,omitempty"`
}

type waPhone struct {
	Phone string `json:"phone"`
	WAID  string `json:"wa_id,omitempty"`
	Type  string `json:"type"`
}

type waInteractive struct {
	Type        string         `json:"type"`
	ButtonReply *waReplyOption `json:"button_reply,omitempty"`
	ListReply   *waReplyOption `json:"list_reply,omitempty"`
}

type waReplyOption struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

type waButton struct {
	Payload string `json:"payload"`
	Text    string `json:"text"`
}

// waReaction has no Emoji when the customer removed the reaction.
type waReaction struct {
	MessageID string `json:"message_id"`
	Emoji     string `json:"emoji,omitempty"`
}

type waError struct {
	Code      int         `json:"code"`
	Title     string      `json:"title"`
	Message   string      `json:"message"`
	ErrorData waErrorData `json:"error_data"`
	Href      string      `json:"href,omitempty"`
}

type waErrorData struct {
	Details string `json:"details"`
}

type waStatus struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"`
	Timestamp    string          `json:"timestamp"`
	RecipientID  string          `json:"recipient_id"`
	Conversation *waConversation `json:"conversation,omitempty"`
	Pricing      *waPricing      `json:"pricing,omitempty"`
	Errors       []waError       `json:"errors,omitempty"`
}

type waConversation struct {
	ID                  string       `json:"id"`
	ExpirationTimestamp string       `json:"expiration_timestamp,omitempty"`
	Origin              waConvOrigin `json:"origin"`
}

type waConvOrigin struct {
	Type string `json:"type"`
}

type waPricing struct {
	Billable     bool   `json:"billable"`
	PricingModel string `json:"pricing_model"`
	Category     string `json:"category"`
}
