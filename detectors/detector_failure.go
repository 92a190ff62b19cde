package detectors

import (
	"net/netip"
	"slices"

	"github.com/syncguard/syncguard/schemas"
)

// Failure rules count rejected requests and records, per window.
const (
	// RuleFailedSignatureSource counts webhook requests with an invalid or
	// missing signature per source address.
	RuleFailedSignatureSource = "failed_signature_source"
	// RuleFailedAuthSource counts rejected tokens, scopes and device
	// bindings per source address.
	RuleFailedAuthSource = "failed_auth_source"
	// RuleFailedAuthDevice counts the same rejections per sync device.
	RuleFailedAuthDevice = "failed_auth_device"
	// RuleForgedRawRecord counts raw records that failed the processor's
	// verification, per account. Ingest verifies every request before it
	// writes the raw topic, so such a record was written by someone else.
	RuleForgedRawRecord = "forged_raw_record"
)

// failureCriticalFactor multiplies a failure threshold to give its critical
// level.
const failureCriticalFactor = 5

// unknownKey is the key of a forged record that names neither an account
// nor a device.
const unknownKey = "unknown"

func failureRules(cfg FailureConfig) []*rule {
	signature := []string{schemas.ReasonInvalidSignature, schemas.ReasonMissingSignature}
	auth := []string{schemas.ReasonInvalidToken, schemas.ReasonInsufficientScope, schemas.ReasonDeviceMismatch}
	// Failed DPoP proofs count against the source only: the device of a
	// stolen bound token is its owner's, whom a block would lock out.
	authSource := append(slices.Clone(auth), schemas.ReasonInvalidDPoPProof)
	return []*rule{
		{
			name:    RuleFailedSignatureSource,
			noun:    "source",
			counted: "requests with an invalid or missing signature",
			match:   rejectedAtIngest(signature, sourceKey),
			judge:   failureJudge(cfg.ThresholdSignatureSource),
		},
		{
			name:    RuleFailedAuthSource,
			noun:    "source",
			counted: "failed authentications",
			match:   rejectedAtIngest(authSource, sourceKey),
			judge:   failureJudge(cfg.ThresholdAuthSource),
		},
		{
			name:    RuleFailedAuthDevice,
			noun:    "device",
			counted: "failed authentications",
			match:   rejectedAtIngest(auth, func(ev *schemas.AuditEvent) string { return ev.Device }),
			judge:   failureJudge(cfg.ThresholdAuthDevice),
		},
		{
			name:    RuleForgedRawRecord,
			noun:    "account",
			counted: "raw records that failed verification",
			match:   forgedRawRecord,
			judge:   failureJudge(cfg.ThresholdForgedRaw),
		},
	}
}

// rejectedAtIngest matches the events of requests that ingest rejected for
// one of reasons, keyed by the field that keyOf returns. Events with an
// empty key are not counted.
func rejectedAtIngest(reasons []string, keyOf func(*schemas.AuditEvent) string) func(*schemas.AuditEvent) (string, bool) {
	return func(ev *schemas.AuditEvent) (string, bool) {
		if ev.Stage != schemas.StageIngest || ev.Outcome != schemas.OutcomeRejected {
			return "", false
		}
		for _, reason := range reasons {
			if ev.Reason == reason {
				key := keyOf(ev)
				return key, key != ""
			}
		}
		return "", false
	}
}

// forgedRawRecord matches the processor's rejected verifications, keyed by
// account. A sync record carries a device instead of an account; a record
// with neither is counted under "unknown", because it is still a forgery.
func forgedRawRecord(ev *schemas.AuditEvent) (string, bool) {
	if ev.Stage != schemas.StageProcessor || ev.Action != schemas.ActionVerify || ev.Outcome != schemas.OutcomeRejected {
		return "", false
	}
	switch {
	case ev.Account != "":
		return ev.Account, true
	case ev.Device != "":
		return ev.Device, true
	default:
		return unknownKey, true
	}
}

// failureJudge raises a warning when a window's count reaches threshold
// and a critical alert at failureCriticalFactor times it. The score is the
// count divided by the threshold.
func failureJudge(threshold int64) func(count int64, baseline float64, history int) verdict {
	return func(count int64, _ float64, _ int) verdict {
		v := verdict{threshold: float64(threshold), score: float64(count) / float64(threshold)}
		switch {
		case count >= failureCriticalFactor*threshold:
			v.severity = severityCritical
		case count >= threshold:
			v.severity = severityWarning
		}
		return v
	}
}

// sourceKey returns the key that source rules count an event under: the
// address for IPv4, and the /64 prefix for IPv6, because one IPv6 host
// usually holds a whole /64 and could rotate addresses within it. Ingest's
// rate limiter groups IPv6 addresses the same way.
func sourceKey(ev *schemas.AuditEvent) string {
	addr, err := netip.ParseAddr(ev.Source)
	if err != nil {
		return ev.Source
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}
