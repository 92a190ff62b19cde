package loadgen

import (
	"context"
	"errors"
	"fmt"
)

// Attack is a preset shape of run that the demo uses to trip the
// detectors. Apply it to a base Config that contains the target, the
// factories and the connection settings.
type Attack struct {
	// Name is a short label for logs, such as "forged_burst".
	Name  string
	apply func(base Config) (Config, error)
}

// ForgedBurst sends n webhooks with wrong or missing signatures as fast as
// the connections allow, from sourceAddr (such as "127.0.0.2"), so that
// the detectors see one attacking address distinct from normal traffic.
// On Linux every address of 127.0.0.0/8 is local and needs no setup. The
// base Config needs a webhook factory.
func ForgedBurst(n int64, sourceAddr string) Attack {
	return Attack{
		Name: "forged_burst",
		apply: func(base Config) (Config, error) {
			if _, err := ParseSourceAddr(sourceAddr); err != nil {
				return Config{}, fmt.Errorf("forged burst: %w", err)
			}
			c := base
			c.Mix = Mix{Forged: 1}
			c.Requests, c.Duration, c.Rate = n, 0, 0
			c.SourceAddr = sourceAddr
			return c, nil
		},
	}
}

// VolumeSpike sends n validly signed text messages to one account, closed
// loop as fast as the connections and ingest's rate limits allow. The
// account must be one of the base webhook factory's accounts, so that its
// message ids stay unique with the rest of the factory's traffic.
func VolumeSpike(account Account, n int64) Attack {
	return Attack{
		Name: "volume_spike",
		apply: func(base Config) (Config, error) {
			if base.Webhooks == nil {
				return Config{}, fmt.Errorf("volume spike: loadgen.mix.text: %w", ErrNoFactory)
			}
			f, err := base.Webhooks.ForAccount(account.PhoneNumberID)
			if err != nil {
				return Config{}, fmt.Errorf("volume spike: %w", err)
			}
			c := base
			c.Webhooks = f
			c.Mix = Mix{Text: 1}
			c.Requests, c.Duration, c.Rate = n, 0, 0
			return c, nil
		},
	}
}

// Config returns base shaped by the attack.
func (a Attack) Config(base Config) (Config, error) {
	if a.apply == nil {
		return Config{}, errors.New("attack: use a preset such as ForgedBurst or VolumeSpike")
	}
	return a.apply(base)
}

// Run sends the attack's requests with the package function Run.
func (a Attack) Run(ctx context.Context, base Config) (Report, error) {
	c, err := a.Config(base)
	if err != nil {
		return Report{}, err
	}
	return Run(ctx, c)
}
