package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Message content in several languages and scripts. The templates contain
// "/", "@", accents, non-Latin scripts and emoji above U+FFFF, so that every
// escaping rule of Meta's byte form occurs in ordinary traffic. "{n}",
// "{t}" and "{d}" are replaced by an order number, a time and a weekday.
var textTemplates = []string{
	"Hi, is order #{n} shipped yet?",
	"Hello! Can I move my delivery to {d} at {t}?",
	"Thanks, got it 👍",
	"My email is customer{n}@example.com, please send the invoice there",
	"Tracking link says https://example.com/track/{n} but nothing shows",
	"Where can I find my receipt for order {n}?",
	"Wann öffnet ihr am {d}? Grüße aus München",
	"Bestellung {n}: die Größe passt leider nicht",
	"Mi pedido {n} llegó dañado 😞 ¿qué hago?",
	"¿Tienen envío a Córdoba?",
	"Obrigado! Recebi o código {n} às {t}",
	"Est-ce que la commande {n} est déjà partie ?",
	"मेरा ऑर्डर {n} कहाँ है?",
	"Спасибо, всё получил. Заказ {n}",
	"我的订单{n}什么时候到？",
	"注文{n}をキャンセルしたいです",
	"ok",
	"Please call me back after {t} 🙏",
	"Payment of 49.90 € for {n} went through?",
	"Can you resend the PDF? The link /downloads/{n} expired",
}

var captions = []string{
	"Here is the damaged box",
	"Rechnung für März / invoice",
	"Screenshot of the error",
	"Foto del recibo {n}",
	"Quittung {n} 🧾",
	"Serial number on the back",
}

var documentNames = []string{
	"Invoice_{n}.pdf",
	"Vertrag_März_2025.pdf",
	"contrato_{n}_firmado.pdf",
	"Lieferschein {n}.pdf",
	"receipt-{n}.pdf",
}

var places = []struct {
	name, address string
	lat, lon      float64
}{
	{"Alexanderplatz", "Alexanderplatz 1, 10178 Berlin", 52.521918, 13.413215},
	{"Praça da Sé", "Praça da Sé, São Paulo - SP", -23.550164, -46.633664},
	{"Office", "221B Baker Street, London NW1 6XE", 51.523767, -0.158555},
	{"Café Central", "Herrengasse 14, 1010 Wien", 48.210380, 16.365540},
	{"Puerta del Sol", "Puerta del Sol, 28013 Madrid", 40.416705, -3.703583},
}

var buttonReplies = []waReplyOption{
	{ID: "btn_confirm_yes", Title: "Yes, confirm"},
	{ID: "btn_confirm_no", Title: "No, change it"},
	{ID: "btn_talk_agent", Title: "Talk to an agent"},
	{ID: "btn_reschedule", Title: "Später erinnern"},
}

var listReplies = []waReplyOption{
	{ID: "slot_tue_10", Title: "Tue 10:00", Description: "Tuesday morning slot"},
	{ID: "slot_wed_15", Title: "Wed 15:30", Description: "Wednesday afternoon"},
	{ID: "topic_billing", Title: "Billing", Description: "Invoices / payments"},
	{ID: "topic_returns", Title: "Devoluciones", Description: "Cambios y devoluciones"},
}

var quickReplies = []waButton{
	{Payload: "STOP_PROMOS", Text: "Stop promotions"},
	{Payload: "TRACK_ORDER", Text: "Track my order"},
	{Payload: "RATE_5", Text: "⭐⭐⭐⭐⭐"},
	{Payload: "CONFIRM_APPT", Text: "Termin bestätigen"},
}

var reactionEmoji = []string{"👍", "❤️", "😂", "😮", "😢", "🙏"}

var contactNames = []struct{ first, last string }{
	{"Ana", "Souza"},
	{"Jürgen", "Weiß"},
	{"Priya", "Sharma"},
	{"Олег", "Иванов"},
	{"Mei", "Chen"},
	{"Sam", ""},
}

var weekdays = []string{"Monday", "Dienstag", "miércoles", "quinta-feira", "Friday"}

type mediaKind struct {
	mimeTypes []string
}

var mediaKinds = map[string]mediaKind{
	"image":    {[]string{"image/jpeg", "image/png"}},
	"video":    {[]string{"video/mp4", "video/3gpp"}},
	"audio":    {[]string{"audio/ogg; codecs=opus", "audio/mpeg", "audio/mp4"}},
	"document": {[]string{"application/pdf", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}},
	"sticker":  {[]string{"image/webp"}},
}

// fillTemplate replaces the placeholders of a content template.
func fillTemplate(rng *rand.Rand, s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	r := strings.NewReplacer(
		"{n}", fmt.Sprintf("%05d", rng.IntN(100000)),
		"{t}", fmt.Sprintf("%02d:%02d", 8+rng.IntN(11), 15*rng.IntN(4)),
		"{d}", weekdays[rng.IntN(len(weekdays))],
	)
	return r.Replace(s)
}

func pick[T any](rng *rand.Rand, xs []T) T {
	return xs[rng.IntN(len(xs))]
}
