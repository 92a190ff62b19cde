package detectors

import (
	"time"

	"github.com/syncguard/syncguard/schemas"
)

// Config holds the detector settings. Durations are YAML durations such as
// "1m" or "10s"; thresholds are event counts per window.
type Config struct {
	// Group is the Kafka consumer group that shares the audit partitions
	// among detector instances.
	Group string `yaml:"group"`
	// TransactionalID is the prefix of this instance's transactional id;
	// kafka.instance_id follows it, so that a restarted instance fences the
	// open transaction of its crashed predecessor at once.
	TransactionalID string `yaml:"transactional_id"`
	// Window is the size of the tumbling event-time windows.
	Window time.Duration `yaml:"window"`
	// AllowedLateness is how far the watermark trails the newest event
	// time. A window closes once the watermark passes its end, and events
	// for closed windows are dropped. It is also the wall-clock time (at
	// least 1s) after which a partition that delivers nothing stops
	// holding the watermark back.
	AllowedLateness time.Duration `yaml:"allowed_lateness"`
	// Cooldown is the event time during which a (rule, key) pair raises no
	// further alert of the same or a lower severity.
	Cooldown time.Duration `yaml:"cooldown"`
	// MaxKeys caps the keys each rule tracks. When a rule is full, the key
	// updated least recently is evicted together with its baseline and
	// cooldown.
	MaxKeys int `yaml:"max_keys"`

	Volume      VolumeConfig      `yaml:"volume"`
	Failure     FailureConfig     `yaml:"failure"`
	Containment ContainmentConfig `yaml:"containment"`
}

// VolumeConfig sets the rules that count routed messages per account and per
// data subject.
type VolumeConfig struct {
	// ThresholdAccount is the count per account and window that raises
	// volume_account; twice the threshold is critical.
	ThresholdAccount int64 `yaml:"threshold_account"`
	// ThresholdSubject is the count per subject and window that raises
	// volume_subject; twice the threshold is critical.
	ThresholdSubject int64 `yaml:"threshold_subject"`
	// BaselineAlpha is the weight of the newest window in the
	// exponentially weighted moving average of past window counts.
	BaselineAlpha float64 `yaml:"baseline_alpha"`
	// BaselineFactor is the score (count divided by the baseline) that
	// raises an alert; twice the factor is critical.
	BaselineFactor float64 `yaml:"baseline_factor"`
	// MinBaselineWindows is the number of closed windows a key needs
	// before its baseline can raise alerts.
	MinBaselineWindows int `yaml:"min_baseline_windows"`
	// MinCount is the smallest count that the baseline rule raises on, so
	// that a quiet key going from 1 to 5 stays silent.
	MinCount int64 `yaml:"min_count"`
}

// FailureConfig sets the rules that count failed authentications and
// failed verifications. Five times a threshold is critical.
type FailureConfig struct {
	// ThresholdSignatureSource counts invalid or missing webhook
	// signatures per source address and window.
	ThresholdSignatureSource int64 `yaml:"threshold_signature_source"`
	// ThresholdAuthSource counts rejected bearer tokens, scopes and device
	// bindings per source address and window.
	ThresholdAuthSource int64 `yaml:"threshold_auth_source"`
	// ThresholdAuthDevice counts the same rejections per sync device.
	ThresholdAuthDevice int64 `yaml:"threshold_auth_device"`
	// ThresholdForgedRaw counts raw records per account that the
	// processor rejected at verification, which only a writer that
	// bypasses ingest can produce.
	ThresholdForgedRaw int64 `yaml:"threshold_forged_raw"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		Group:           "syncguard-detector",
		TransactionalID: "syncguard-detector",
		Window:          time.Minute,
		AllowedLateness: 10 * time.Second,
		Cooldown:        5 * time.Minute,
		MaxKeys:         100_000,
		Volume: VolumeConfig{
			ThresholdAccount:   500,
			ThresholdSubject:   200,
			BaselineAlpha:      0.3,
			BaselineFactor:     5,
			MinBaselineWindows: 5,
			MinCount:           50,
		},
		Failure: FailureConfig{
			ThresholdSignatureSource: 20,
			ThresholdAuthSource:      10,
			ThresholdAuthDevice:      10,
			ThresholdForgedRaw:       1,
		},
		Containment: ContainmentConfig{
			Enabled:     true,
			MinSeverity: schemas.SeverityCritical,
			BlockTTL:    15 * time.Minute,
		},
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return configError("group", "must not be empty")
	case c.Window < time.Second:
		return configError("window", "must be at least 1s, got %s", c.Window)
	case c.AllowedLateness < 0:
		return configError("allowed_lateness", "must not be negative, got %s", c.AllowedLateness)
	case c.Cooldown < 0:
		return configError("cooldown", "must not be negative, got %s", c.Cooldown)
	case c.MaxKeys < 1:
		return configError("max_keys", "must be at least 1, got %d", c.MaxKeys)
	}
	if err := c.Volume.validate(); err != nil {
		return err
	}
	if err := c.Failure.validate(); err != nil {
		return err
	}
	return c.Containment.validate()
}

func (v VolumeConfig) validate() error {
	switch {
	case v.ThresholdAccount < 1:
		return configError("volume.threshold_account", "must be at least 1, got %d", v.ThresholdAccount)
	case v.ThresholdSubject < 1:
		return configError("volume.threshold_subject", "must be at least 1, got %d", v.ThresholdSubject)
	case !(v.BaselineAlpha > 0 && v.BaselineAlpha <= 1):
		return configError("volume.baseline_alpha", "must be in (0, 1], got %g", v.BaselineAlpha)
	case !(v.BaselineFactor > 1):
		return configError("volume.baseline_factor", "must be greater than 1, got %g", v.BaselineFactor)
	case v.MinBaselineWindows < 1:
		return configError("volume.min_baseline_windows", "must be at least 1, got %d", v.MinBaselineWindows)
	case v.MinCount < 1:
		return configError("volume.min_count", "must be at least 1, got %d", v.MinCount)
	}
	return nil
}

func (f FailureConfig) validate() error {
	switch {
	case f.ThresholdSignatureSource < 1:
		return configError("failure.threshold_signature_source", "must be at least 1, got %d", f.ThresholdSignatureSource)
	case f.ThresholdAuthSource < 1:
		return configError("failure.threshold_auth_source", "must be at least 1, got %d", f.ThresholdAuthSource)
	case f.ThresholdAuthDevice < 1:
		return configError("failure.threshold_auth_device", "must be at least 1, got %d", f.ThresholdAuthDevice)
	case f.ThresholdForgedRaw < 1:
		return configError("failure.threshold_forged_raw", "must be at least 1, got %d", f.ThresholdForgedRaw)
	}
	return nil
}
