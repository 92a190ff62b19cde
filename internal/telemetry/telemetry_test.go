package telemetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadyz(t *testing.T) {
	ready := false
	h := Handler(NewRegistry(), map[string]ReadyFunc{"ingest": func() bool { return ready }})

	get := func(path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Body)
		return rec.Code, string(body)
	}

	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "ingest") {
		t.Errorf("not ready: /readyz = %d %q, want 503 naming ingest", code, body)
	}
	ready = true
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("ready: /readyz = %d, want 200", code)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, want 200 with runtime metrics", code)
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(c Config, wantKey string) {
		t.Helper()
		err := c.Validate()
		switch {
		case wantKey == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		case wantKey != "" && (err == nil || !strings.Contains(err.Error(), wantKey)):
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c, err, wantKey)
		}
	}
	f(DefaultConfig(), "")
	f(Config{LogLevel: "loud", LogFormat: "json"}, "telemetry.log_level")
	f(Config{LogLevel: "info", LogFormat: "xml"}, "telemetry.log_format")
	f(Config{LogLevel: "info", LogFormat: "json", ListenAddr: "nohost"}, "telemetry.listen_addr")
}

func TestLoggerWritesDurationsAsText(t *testing.T) {
	var buf strings.Builder
	NewLogger(DefaultConfig(), &buf).Info("x", "retry_in", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"retry_in":"1.5s"`) {
		t.Errorf("log line %s, want retry_in as 1.5s", buf.String())
	}
}
