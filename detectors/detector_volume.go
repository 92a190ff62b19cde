package detectors

import "github.com/syncguard/syncguard/schemas"

// Volume rules count the messages the processor routed, per window.
const (
	// RuleVolumeAccount counts routed messages per WhatsApp account.
	RuleVolumeAccount = "volume_account"
	// RuleVolumeSubject counts routed messages per data subject.
	RuleVolumeSubject = "volume_subject"
)

// volumeCriticalFactor multiplies the threshold and the baseline factor to
// give the critical level of the volume rules.
const volumeCriticalFactor = 2

func volumeRules(cfg VolumeConfig) []*rule {
	return []*rule{
		{
			name:    RuleVolumeAccount,
			noun:    "account",
			counted: "routed messages",
			match: routedBy(func(ev *schemas.AuditEvent) string {
				// Sync events name their user's pseudonym as the account;
				// the subject rule counts those, so only WhatsApp business
				// accounts count here.
				if ev.Route == schemas.TopicSync {
					return ""
				}
				return ev.Account
			}),
			judge: volumeJudge{threshold: cfg.ThresholdAccount, cfg: cfg}.judge,
		},
		{
			name:    RuleVolumeSubject,
			noun:    "subject",
			counted: "routed messages",
			match:   routedBy(func(ev *schemas.AuditEvent) string { return ev.Subject }),
			judge:   volumeJudge{threshold: cfg.ThresholdSubject, cfg: cfg}.judge,
		},
	}
}

// routedBy matches the events of messages the processor accepted and routed,
// keyed by the field that keyOf returns. Events with an empty key are not
// counted.
func routedBy(keyOf func(*schemas.AuditEvent) string) func(*schemas.AuditEvent) (string, bool) {
	return func(ev *schemas.AuditEvent) (string, bool) {
		if ev.Stage != schemas.StageProcessor || ev.Action != schemas.ActionRoute || ev.Outcome != schemas.OutcomeAccepted {
			return "", false
		}
		key := keyOf(ev)
		return key, key != ""
	}
}

// volumeJudge raises when a window's count reaches a fixed threshold, or
// when it is a multiple of the key's learned baseline. The baseline rule
// applies once the key has min_baseline_windows closed windows of history,
// and only to counts of at least min_count.
type volumeJudge struct {
	threshold int64
	cfg       VolumeConfig
}

func (j volumeJudge) judge(count int64, baseline float64, history int) verdict {
	v := verdict{threshold: float64(j.threshold)}
	learned := history >= j.cfg.MinBaselineWindows
	if learned {
		v.baseline = baseline
		v.score = float64(count) / max(baseline, 1)
	}
	anomalous := func(factor float64) bool {
		return learned && count >= j.cfg.MinCount && v.score >= factor
	}

	switch {
	case count >= volumeCriticalFactor*j.threshold || anomalous(volumeCriticalFactor*j.cfg.BaselineFactor):
		v.severity = severityCritical
	case count >= j.threshold || anomalous(j.cfg.BaselineFactor):
		v.severity = severityWarning
	}
	return v
}
