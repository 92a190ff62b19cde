package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/ingest"
	"github.com/syncguard/syncguard/schemas"
)

// blockKinds maps the --kind values to control record kinds. The record
// kinds themselves are accepted too.
var blockKinds = map[string]string{
	"source":  schemas.ControlBlockSource,
	"device":  schemas.ControlBlockDevice,
	"account": schemas.ControlBlockAccount,
	"token":   schemas.ControlRevokeToken,
}

const blockUsage = "usage: syncguard block add|remove|list [--config FILE] [--kind source|device|account|token --value V --reason TEXT [--ttl 1h]]"

// blockCommand publishes, lifts and lists blocks on the control topic,
// which every ingest instance reads.
func blockCommand(ctx context.Context, args []string) error {
	return runBlock(ctx, args, os.Stdout)
}

func runBlock(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, blockUsage)
		return errUsage
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		_, err := fmt.Fprintln(out, blockUsage)
		if err != nil {
			return err
		}
		return flag.ErrHelp
	}
	fset := flag.NewFlagSet("block "+sub, flag.ContinueOnError)
	configPath := fset.String("config", "", "YAML configuration file (uses kafka)")
	kind := fset.String("kind", "", "what to block: source (IP address or CIDR prefix), device (device id), account (WhatsApp phone_number_id) or token (token jti)")
	value := fset.String("value", "", "the address, prefix or id to block")
	reason := fset.String("reason", "", "why, recorded with the block (required by add)")
	ttl := fset.Duration("ttl", 0, "add: lift the block after this long, for example 1h; 0 keeps it until removed")
	actor := fset.String("actor", envOr("USER", "operator"), "who publishes the record")
	timeout := fset.Duration("timeout", 30*time.Second, "how long to wait for Kafka")
	if err := fset.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return invalidConfig(err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	switch sub {
	case "add", "remove":
		rec, err := blockRecord(sub, *kind, *value, *reason, *actor, *ttl, time.Now().UTC())
		if err != nil {
			fmt.Fprintln(os.Stderr, "syncguard block "+sub+":", err)
			return errUsage
		}
		if err := cfg.Kafka.EnsureTopics(ctx); err != nil {
			return err
		}
		if err := ingest.PublishControl(ctx, cfg.Kafka, rec); err != nil {
			return err
		}
		if err := auditBlock(ctx, cfg, rec); err != nil {
			return fmt.Errorf("the control record is published, but its audit event failed: %w", err)
		}
		verb := "blocked"
		if !rec.Active {
			verb = "lifted the block of"
		}
		_, err = fmt.Fprintf(out, "%s %s %s (acknowledged by Kafka)\n", verb, rec.Kind, rec.Value)
		return err
	case "list":
		recs, err := ingest.ListControl(ctx, cfg.Kafka, time.Now())
		if err != nil {
			return err
		}
		return printBlocks(out, recs)
	default:
		fmt.Fprintf(os.Stderr, "syncguard block: unknown subcommand %q\n%s\n", sub, blockUsage)
		return errUsage
	}
}

// blockRecord builds the control record of "block add" (active) or
// "block remove" (inactive) and validates it.
func blockRecord(sub, kind, value, reason, actor string, ttl time.Duration, now time.Time) (schemas.ControlRecord, error) {
	k, ok := blockKinds[kind]
	if !ok {
		k = kind
	}
	rec := schemas.ControlRecord{
		Kind: k, Value: strings.TrimSpace(value), Active: sub == "add",
		Reason: reason, Actor: actor, CreatedAt: now,
	}
	var missing []string
	if kind == "" {
		missing = append(missing, "--kind")
	}
	if value == "" {
		missing = append(missing, "--value")
	}
	if sub == "add" && reason == "" {
		missing = append(missing, "--reason")
	}
	if len(missing) > 0 {
		return rec, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if sub == "add" {
		if ttl < 0 {
			return rec, fmt.Errorf("--ttl must not be negative, got %s", ttl)
		}
		if ttl > 0 {
			rec.ExpiresAt = now.Add(ttl)
		}
	}
	if err := ingest.ValidateControlRecord(rec); err != nil {
		return rec, fmt.Errorf("--kind and --value: %w", err)
	}
	return rec, nil
}

func printBlocks(out io.Writer, recs []schemas.ControlRecord) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if _, err := fmt.Fprintln(w, "KIND\tVALUE\tEXPIRES\tACTOR\tCREATED\tREASON"); err != nil {
		return err
	}
	for _, r := range recs {
		expires := "never"
		if !r.ExpiresAt.IsZero() {
			expires = r.ExpiresAt.UTC().Format(time.RFC3339)
		}
		if _, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Value, expires, r.Actor, r.CreatedAt.UTC().Format(time.RFC3339), r.Reason); err != nil {
			return err
		}
	}
	return w.Flush()
}

// auditBlock writes the audit event of an operator's block or unblock, so
// that containment done by hand is on the audit trail like the detector's.
func auditBlock(ctx context.Context, cfg Config, rec schemas.ControlRecord) error {
	detail := fmt.Sprintf("%s %s by %s: %s", rec.Kind, rec.Value, rec.Actor, rec.Reason)
	if !rec.Active {
		detail = "lifted " + detail
	} else if !rec.ExpiresAt.IsZero() {
		detail += " (until " + rec.ExpiresAt.Format(time.RFC3339) + ")"
	}
	ev := schemas.AuditEvent{
		ID:      "operator/" + schemas.ControlKey(rec.Kind, rec.Value) + "/" + rec.CreatedAt.Format(time.RFC3339Nano),
		Time:    rec.CreatedAt,
		Stage:   schemas.StageOperator,
		Action:  schemas.ActionContain,
		Outcome: schemas.OutcomeAccepted,
		Reason:  rec.Kind,
		Detail:  detail,
	}
	switch rec.Kind {
	case schemas.ControlBlockSource:
		ev.Source = rec.Value
	case schemas.ControlBlockDevice:
		ev.Device = rec.Value
	case schemas.ControlBlockAccount:
		ev.Account = rec.Value
	}
	value, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	cl, err := cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.Topic(schemas.TopicAudit), Key: []byte(rec.Value), Value: value}).FirstErr()
}
