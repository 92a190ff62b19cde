package loadgen

import "errors"

var (
	// ErrNotLoopback is returned for a target or source address that is not
	// in 127.0.0.0/8, ::1 or localhost. Load is only ever sent to the local
	// machine.
	ErrNotLoopback = errors.New("address is not a loopback address")

	// ErrUnbounded is returned by Run for a configuration that sets neither
	// a duration nor a request count.
	ErrUnbounded = errors.New("run has no bound")

	// ErrPreconnect is returned by Run when Config.Preconnect is set and
	// a connection could not be opened and kept.
	ErrPreconnect = errors.New("open every connection before the run")

	// ErrNoFactory is returned by Run when the mix requests a kind of
	// request whose factory is missing.
	ErrNoFactory = errors.New("request factory missing")
)
