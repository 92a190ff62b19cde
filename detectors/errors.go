package detectors

import "fmt"

// ConfigKeyPrefix starts the key of every detector setting in the config
// file and in error messages.
const ConfigKeyPrefix = "detector."

// ConfigError is an invalid detector setting.
type ConfigError struct {
	// Key is the full config key, such as "detector.window".
	Key    string
	Reason string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Reason }

func configError(key, format string, args ...any) error {
	return &ConfigError{Key: ConfigKeyPrefix + key, Reason: fmt.Sprintf(format, args...)}
}
