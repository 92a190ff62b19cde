package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncguard/syncguard/internal/loadgen"
)

func TestLoadgenDefaultMixWithoutSigningKey(t *testing.T) {
	var webhooks, syncs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/webhooks/whatsapp":
			webhooks.Add(1)
		case "/v1/sync/events":
			syncs.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	err := loadgenCommand(context.Background(), []string{"--target", srv.URL, "--requests", "20", "--concurrency", "2", "--seed", "1"})
	if err != nil {
		t.Fatalf("loadgen without --signing-key and --mix: %v", err)
	}
	if webhooks.Load() == 0 {
		t.Error("no webhook reached the server")
	}
	if syncs.Load() != 0 {
		t.Errorf("%d sync requests sent without a signing key", syncs.Load())
	}

	// An explicit mix with sync still needs the key.
	err = loadgenCommand(context.Background(), []string{"--target", srv.URL, "--requests", "1", "--mix", "sync=1"})
	if err == nil || !strings.Contains(err.Error(), "--signing-key") {
		t.Errorf("--mix sync=1 without a key: error = %v, want one naming --signing-key", err)
	}
}

func TestLoadgenRequiresBound(t *testing.T) {
	err := loadgenCommand(context.Background(), []string{"--target", "http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "set --duration, --requests or both") {
		t.Errorf("error = %v, want one naming --duration and --requests", err)
	}
}

func TestWarnRejectedNamesSetting(t *testing.T) {
	rep := loadgen.Report{ByKind: map[loadgen.Kind]loadgen.KindReport{
		loadgen.KindWebhook: {Sent: 10, ByStatus: map[int]int64{200: 4, 401: 6}},
		loadgen.KindSync:    {Sent: 5, ByStatus: map[int]int64{403: 5}},
		loadgen.KindForged:  {Sent: 7, ByStatus: map[int]int64{401: 7}},
	}}
	var out strings.Builder
	warnRejected(&out, rep)
	got := out.String()
	if !strings.Contains(got, "6 of 10 webhook requests got 401 or 403: --app-secret-file") {
		t.Errorf("output %q lacks the webhook hint", got)
	}
	if !strings.Contains(got, "5 of 5 sync requests got 401 or 403: --signing-key") {
		t.Errorf("output %q lacks the sync hint", got)
	}
	if strings.Contains(got, "forged") {
		t.Errorf("output %q warns about forged webhooks, which are meant to get 401", got)
	}
}

func TestLoadgenPreconnectErrorHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	}))
	defer srv.Close()
	err := loadgenCommand(context.Background(), []string{"--target", srv.URL, "--requests", "5", "--concurrency", "2", "--preconnect"})
	if err == nil || !strings.Contains(err.Error(), "status 404") || !strings.Contains(err.Error(), "leave out --preconnect") {
		t.Errorf("error = %v, want the 404 and a hint about --preconnect", err)
	}
}

func TestSnapshotOfCountsStatusClasses(t *testing.T) {
	s := snapshotOf(loadgen.Report{Sent: 9, Errors: 1, ByStatus: map[int]int64{200: 3, 202: 1, 401: 2, 429: 1, 503: 1}})
	if s.Sent != 9 || s.Errors != 1 {
		t.Errorf("sent %d, errors %d, want 9 and 1", s.Sent, s.Errors)
	}
	if s.OK != 4 || s.ClientErrors != 3 || s.ServerErrors != 1 {
		t.Errorf("2xx %d, 4xx %d, 5xx %d, want 4, 3 and 1", s.OK, s.ClientErrors, s.ServerErrors)
	}
}
