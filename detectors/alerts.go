package detectors

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

// severity orders alert severities; the zero value means no alert.
type severity int8

const (
	severityNone severity = iota
	severityWarning
	severityCritical
)

func (s severity) String() string {
	switch s {
	case severityWarning:
		return schemas.SeverityWarning
	case severityCritical:
		return schemas.SeverityCritical
	default:
		return "none"
	}
}

// verdict is a rule's judgement of one window's count.
type verdict struct {
	severity  severity
	threshold float64
	// baseline and score are zero when the rule has no baseline or the
	// key has too little history for it.
	baseline float64
	score    float64
}

// cooldown is the last alert raised for a (rule, key) pair. Its time is an
// event time, not the wall clock, so that replaying the audit stream
// deduplicates the same way as the first pass did.
type cooldown struct {
	at       int64 // event time of the event that raised it, Unix nanoseconds
	severity severity
}

// allows reports whether an alert of severity s for an event at time at may
// be raised. Within the cooldown period, only an escalation to a higher
// severity may be raised. The period is measured in either direction,
// because events of different partitions arrive out of order.
func (c cooldown) allows(s severity, at, period int64) bool {
	if c.severity == severityNone {
		return true
	}
	elapsed := at - c.at
	if elapsed < 0 {
		elapsed = -elapsed
	}
	return elapsed >= period || s > c.severity
}

// evaluate judges window w of entry e after an event at time at was counted,
// and returns the alert to raise, if any.
//
// A window raises as soon as its count crosses a threshold, not when it
// closes, so responders hear of an attack within seconds. It can raise
// twice: once at warning and once more when it escalates to critical. The
// escalation is raised even within the cooldown, with its own ID, because a
// responder who is handling a warning needs to know that it became
// critical. Any other alert for the key within the cooldown is suppressed.
func (r *Rules) evaluate(rl *rule, e *entry, w *window, at int64, now time.Time) (schemas.Alert, bool) {
	v := rl.judge(w.count, e.baseline, e.history)
	if v.severity <= w.raised {
		return schemas.Alert{}, false
	}

	if !e.cooldown.allows(v.severity, at, int64(r.cfg.Cooldown)) {
		if v.severity > w.suppressed {
			w.suppressed = v.severity
			rl.suppressed.Inc()
		}
		return schemas.Alert{}, false
	}

	w.raised = v.severity
	e.cooldown = cooldown{at: at, severity: v.severity}
	rl.alerts[v.severity].Inc()
	return r.newAlert(rl, e.key, w, v, now), true
}

func (r *Rules) newAlert(rl *rule, key string, w *window, v verdict, now time.Time) schemas.Alert {
	a := schemas.Alert{
		ID:          alertID(rl.name, key, w.start, v.severity),
		Rule:        rl.name,
		Key:         key,
		Severity:    v.severity.String(),
		Window:      r.cfg.Window,
		WindowStart: time.Unix(0, w.start).UTC(),
		Count:       w.count,
		Threshold:   v.threshold,
		Baseline:    v.baseline,
		Score:       v.score,
		FirstSeen:   time.Unix(0, w.first).UTC(),
		LastSeen:    time.Unix(0, w.last).UTC(),
		RaisedAt:    now.UTC(),
	}
	a.Summary = summarize(rl, a)
	return a
}

// alertID derives the ID of an alert from its rule, key, window start and
// severity. Replaying the audit stream after a crash therefore gives an
// alert raised again the ID it had before, while an escalation of the same
// window gets an ID of its own.
func alertID(rule, key string, windowStart int64, s severity) string {
	h := sha256.New()
	for _, part := range []string{rule, key, strconv.FormatInt(windowStart, 10), s.String()} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// summarize returns one line for a responder, such as "source 203.0.113.7:
// 20 requests with an invalid or missing signature in the 1m0s window
// starting 2025-03-01T10:01:00Z (threshold 20, score 1.00)".
func summarize(rl *rule, a schemas.Alert) string {
	s := fmt.Sprintf("%s %s: %d %s in the %s window starting %s (threshold %g",
		rl.noun, a.Key, a.Count, rl.counted, a.Window, a.WindowStart.Format(time.RFC3339), a.Threshold)
	if a.Baseline > 0 {
		s += fmt.Sprintf(", baseline %.1f", a.Baseline)
	}
	if a.Score > 0 {
		s += fmt.Sprintf(", score %.2f", a.Score)
	}
	return s + ")"
}
