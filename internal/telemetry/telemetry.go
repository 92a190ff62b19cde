// Package telemetry sets up logging and the operator endpoints: Prometheus
// metrics on /metrics, liveness on /healthz and readiness on /readyz.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config selects the log format and where the operator endpoints listen.
type Config struct {
	// ListenAddr serves /metrics, /healthz and /readyz; empty turns the
	// endpoints off. Default 127.0.0.1:9464.
	ListenAddr string `yaml:"listen_addr"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is json or text. Default json.
	LogFormat string `yaml:"log_format"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{ListenAddr: "127.0.0.1:9464", LogLevel: "info", LogFormat: "json"}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("telemetry.log_level: %w", err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("telemetry.log_format: must be json or text, got %q", c.LogFormat)
	}
	if c.ListenAddr != "" {
		if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
			return fmt.Errorf("telemetry.listen_addr: %q is not host:port", c.ListenAddr)
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("unknown level %q, use debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the process logger writing to w.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	level, err := parseLevel(c.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationAsText}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// ReadyFunc reports whether a component can do its work now.
type ReadyFunc func() bool

// Handler returns the operator endpoints. /readyz returns 200 only when every
// ready function returns true, and names the components that are not ready.
func Handler(reg *prometheus.Registry, ready map[string]ReadyFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var notReady []string
		for name, f := range ready {
			if !f() {
				notReady = append(notReady, name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(notReady) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %s\n", strings.Join(notReady, ", "))
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// Serve runs the operator endpoints on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve telemetry: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down telemetry: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve telemetry: %w", err)
	}
	return nil
}

// durationAsText writes durations as "1.5s" instead of the nanosecond
// integers that slog's JSON handler would print.
func durationAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
