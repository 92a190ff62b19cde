package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/syncguard/syncguard/internal/config"
	"github.com/syncguard/syncguard/internal/loadgen"
)

// loadgenCommand sends generated traffic to a running ingest on loopback.
func loadgenCommand(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	target := fset.String("target", "http://127.0.0.1:8080", "ingest base URL; only loopback hosts are accepted")
	rate := fset.Float64("rate", 100, "requests per second (0 sends as fast as the connections allow)")
	duration := fset.Duration("duration", 0, "stop after this long (this, --requests or both are required)")
	requests := fset.Int64("requests", 0, "stop after this many requests (this, --duration or both are required)")
	concurrency := fset.Int("concurrency", 8, "connections")
	preconnect := fset.Bool("preconnect", false, "open every connection (one GET /healthz each) before the clock starts")
	mix := fset.String("mix", "webhook=75,sync=20,redelivery=5", "weights of request kinds: webhook, text, sync, forged, redelivery; without --signing-key the default leaves out sync")
	secretFile := fset.String("app-secret-file", "", "file with the WhatsApp app secret that signs webhooks (default: the demo secret)")
	signingKey := fset.String("signing-key", "", "PEM Ed25519 key that signs sync tokens; needed when the mix has sync")
	kid := fset.String("kid", "ed-1", "key id of --signing-key, as the ingest JWKS names it")
	issuer := fset.String("issuer", loadgen.DefaultIssuer, "iss claim of sync tokens; must equal ingest.sync_auth.issuer")
	audience := fset.String("audience", loadgen.DefaultAudience, "aud claim of sync tokens; must equal ingest.sync_auth.audience")
	accounts := fset.Int("accounts", 3, "WhatsApp business accounts to send as")
	devices := fset.Int("devices", 4, "sync devices to send as")
	seed := fset.Int64("seed", time.Now().UnixNano(), "seed of the generated traffic; the same seed repeats message ids")
	source := fset.String("source-addr", "", "loopback address to send from, such as 127.0.0.2")
	reportJSON := fset.String("report-json", "", "also write the final report as JSON to this file")
	trackAcks := fset.Int("track-acks", 0, "with --report-json: list up to this many acknowledged messages, statuses and sync events in it, with the time of each response")
	if err := fset.Parse(args); err != nil {
		return flagError(err)
	}

	if !flagSet(fset, "mix") && *signingKey == "" {
		// Sync requests need a token signing key. Without one, the default
		// mix keeps its webhook and redelivery weights.
		*mix = webhookOnlyMix
		fmt.Fprintf(os.Stderr, "loadgen: no --signing-key, so sending only webhooks (--mix %s)\n", webhookOnlyMix)
	}
	weights, err := parseMix(*mix)
	if err != nil {
		return err
	}
	secret := demoAppSecret
	if *secretFile != "" {
		if secret, err = config.ReadSecretFile(*secretFile); err != nil {
			return err
		}
	}
	webhooks, err := loadgen.NewWebhookFactory(*seed, loadgen.ExampleAccounts(secret, *accounts))
	if err != nil {
		return err
	}
	cfg := loadgen.Config{
		Target: *target, Rate: *rate, Duration: *duration, Requests: *requests,
		Concurrency: *concurrency, Preconnect: *preconnect, Mix: weights, SourceAddr: *source, Webhooks: webhooks, TrackAcks: *trackAcks,
		Progress: func(s loadgen.Snapshot) {
			fmt.Fprintf(os.Stderr, "%5.0fs sent %d 2xx %d 4xx %d 5xx %d errors %d rate %.0f/s p99 %s\n",
				s.Elapsed.Seconds(), s.Sent, s.OK, s.ClientErrors, s.ServerErrors, s.Errors, s.Rate, s.P99)
		},
	}
	if weights.Sync > 0 {
		if *signingKey == "" {
			return fmt.Errorf("--signing-key: required when --mix has sync")
		}
		signer, err := loadgen.LoadSigningKey(*signingKey, *kid)
		if err != nil {
			return err
		}
		signer.Issuer, signer.Audience = *issuer, *audience
		if cfg.Sync, err = loadgen.NewSyncFactory(*seed+1, loadgen.ExampleDevices(*devices), signer); err != nil {
			return err
		}
	}

	report, err := loadgen.Run(ctx, cfg)
	if errors.Is(err, loadgen.ErrUnbounded) {
		return errors.New("loadgen: set --duration, --requests or both, so that the run stops by itself")
	}
	if errors.Is(err, loadgen.ErrPreconnect) {
		return fmt.Errorf("%w (--target must be a SyncGuard ingest, or leave out --preconnect)", err)
	}
	printLoadReport(report)
	warnRejected(os.Stderr, report)
	if *preconnect && report.Dials > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: the target closed connections after the preconnect, so %d handshakes fell inside the run\n", report.Dials)
	}
	if *reportJSON != "" {
		if werr := writeReportJSON(*reportJSON, report); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// warnRejected prints a hint when requests that should be accepted got 401
// or 403, which usually means loadgen and ingest disagree on a secret or
// a token setting. Forged webhooks are meant to get 401 and are left out.
func warnRejected(w io.Writer, r loadgen.Report) {
	for _, k := range []loadgen.Kind{loadgen.KindWebhook, loadgen.KindRedelivery, loadgen.KindSync} {
		kr := r.ByKind[k]
		n := kr.ByStatus[http.StatusUnauthorized] + kr.ByStatus[http.StatusForbidden]
		if n == 0 {
			continue
		}
		hint := "--app-secret-file must hold an app secret from the ingest's whatsapp.apps"
		if k == loadgen.KindSync {
			hint = "--signing-key, --kid, --issuer and --audience must match the ingest's ingest.sync_auth keys and claims"
		}
		_, _ = fmt.Fprintf(w, "loadgen: %d of %d %s requests got 401 or 403: %s\n", n, kr.Sent, k, hint)
	}
}

// webhookOnlyMix is the default mix without sync requests.
const webhookOnlyMix = "webhook=75,redelivery=5"

// loadReportJSON is the part of a loadgen.Report that --report-json
// writes: the counts, latency quantiles and acknowledgements another
// process needs, without the histogram itself. Durations are in
// nanoseconds.
type loadReportJSON struct {
	Sent           int64                  `json:"sent"`
	Missed         int64                  `json:"missed"`
	Errors         int64                  `json:"errors"`
	ElapsedSeconds float64                `json:"elapsed_seconds"`
	Rate           float64                `json:"rate"`
	ByStatus       map[int]int64          `json:"by_status"`
	Latency        loadgen.LatencySummary `json:"latency"`
	Acks           []ackJSON              `json:"acks,omitempty"`
	AcksDropped    int64                  `json:"acks_dropped,omitempty"`
	Dials          int64                  `json:"dials"`
}

// ackJSON is one loadgen.Ack, its time in Unix nanoseconds.
type ackJSON struct {
	Kind   loadgen.Kind `json:"kind"`
	ID     string       `json:"id"`
	Status string       `json:"status,omitempty"`
	AtNano int64        `json:"at_unix_nano"`
}

func writeReportJSON(path string, r loadgen.Report) error {
	j := loadReportJSON{
		Sent: r.Sent, Missed: r.Missed, Errors: r.Errors,
		ElapsedSeconds: r.Elapsed.Seconds(), Rate: r.Rate, ByStatus: r.ByStatus,
		Latency: r.Latency, AcksDropped: r.AcksDropped, Dials: r.Dials,
	}
	for _, a := range r.Acks {
		j.Acks = append(j.Acks, ackJSON{Kind: a.Kind, ID: a.ID, Status: a.Status, AtNano: a.At.UnixNano()})
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("--report-json: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("--report-json: %w", err)
	}
	return nil
}

// readReportJSON reads a report that writeReportJSON wrote.
func readReportJSON(path string) (loadgen.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return loadgen.Report{}, err
	}
	var j loadReportJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return loadgen.Report{}, fmt.Errorf("read load report %s: %w", path, err)
	}
	r := loadgen.Report{
		Sent: j.Sent, Missed: j.Missed, Errors: j.Errors,
		Elapsed: time.Duration(j.ElapsedSeconds * float64(time.Second)), Rate: j.Rate, ByStatus: j.ByStatus,
		Latency: j.Latency, AcksDropped: j.AcksDropped, Dials: j.Dials,
	}
	for _, a := range j.Acks {
		r.Acks = append(r.Acks, loadgen.Ack{Kind: a.Kind, ID: a.ID, Status: a.Status, At: time.Unix(0, a.AtNano)})
	}
	return r, nil
}

// parseMix reads "webhook=75,sync=20".
func parseMix(s string) (loadgen.Mix, error) {
	var m loadgen.Mix
	fields := map[string]*int{"webhook": &m.Webhook, "text": &m.Text, "sync": &m.Sync, "forged": &m.Forged, "redelivery": &m.Redelivery}
	for _, part := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		field, known := fields[name]
		n, err := strconv.Atoi(value)
		if !ok || !known || err != nil || n < 0 {
			return m, fmt.Errorf("--mix: %q is not KIND=WEIGHT with KIND one of webhook, text, sync, forged, redelivery", part)
		}
		*field = n
	}
	return m, nil
}

func printLoadReport(r loadgen.Report) {
	fmt.Printf("sent %d requests in %s (%.0f/s), %d errors, %d missed, %d connections dialed\n",
		r.Sent, r.Elapsed.Round(time.Millisecond), r.Rate, r.Errors, r.Missed, r.Dials)
	codes := make([]int, 0, len(r.ByStatus))
	for c := range r.ByStatus {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Printf("  HTTP %d: %d\n", c, r.ByStatus[c])
	}
	l := r.Latency
	fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", l.P50, l.P90, l.P99, l.Max)
	for _, e := range r.ErrorSamples {
		fmt.Printf("  error: %s\n", e)
	}
}
