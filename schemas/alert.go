package schemas

import "time"

// Severities of alerts, in increasing order.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Alert is raised by a detector rule for one key over one window.
type Alert struct {
	ID          string        `json:"id"`   // unique; makes sink writes idempotent
	Rule        string        `json:"rule"` // e.g. volume_account, failed_signature_source
	Key         string        `json:"key"`  // the address, account or device the rule counts
	Severity    string        `json:"severity"`
	Window      time.Duration `json:"window"`
	WindowStart time.Time     `json:"window_start"`
	Count       int64         `json:"count"`
	Threshold   float64       `json:"threshold"`
	Baseline    float64       `json:"baseline"`
	Score       float64       `json:"score"`
	FirstSeen   time.Time     `json:"first_seen"`
	LastSeen    time.Time     `json:"last_seen"`
	RaisedAt    time.Time     `json:"raised_at"`
	Summary     string        `json:"summary"`
}

// Control record kinds.
const (
	ControlBlockSource  = "block_source"
	ControlBlockDevice  = "block_device"
	ControlRevokeToken  = "revoke_token"
	ControlBlockAccount = "block_account"
)

// ControlRecord is a containment action. The key of its record is
// ControlKey(Kind, Value); a record with Active false lifts the action.
type ControlRecord struct {
	Kind      string    `json:"kind"`
	Value     string    `json:"value"`
	Active    bool      `json:"active"`
	Reason    string    `json:"reason"`
	Actor     string    `json:"actor"` // detector rule or operator name
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt ends the action; the zero time means it lasts until lifted.
	ExpiresAt time.Time `json:"expires_at,omitempty"`
}

// ControlKey returns the record key of a control record.
func ControlKey(kind, value string) string { return kind + "/" + value }
