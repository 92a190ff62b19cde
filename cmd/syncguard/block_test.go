package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/internal/testenv"
	"github.com/syncguard/syncguard/schemas"
)

func TestBlockRecord(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name                string
		sub, kind, value    string
		reason              string
		ttl                 time.Duration
		wantKind, wantError string
		wantActive          bool
	}{
		{"source with ttl", "add", "source", "203.0.113.7", "scan", time.Hour, schemas.ControlBlockSource, "", true},
		{"cidr", "add", "source", "198.51.100.0/24", "scan", 0, schemas.ControlBlockSource, "", true},
		{"record kind accepted", "add", "block_device", "dev-1", "lost", 0, schemas.ControlBlockDevice, "", true},
		{"token", "add", "token", "jti-1", "leaked", 0, schemas.ControlRevokeToken, "", true},
		{"remove needs no reason", "remove", "account", "123", "", 0, schemas.ControlBlockAccount, "", false},
		{"add needs a reason", "add", "source", "203.0.113.7", "", 0, "", "--reason", false},
		{"every missing flag named", "add", "", "", "", 0, "", "missing --kind, --value, --reason", false},
		{"remove needs a value", "remove", "device", "", "", 0, "", "missing --value", false},
		{"bad address", "add", "source", "example.com", "x", 0, "", "--kind and --value", false},
		{"unknown kind", "add", "user", "bob", "x", 0, "", "--kind and --value", false},
		{"negative ttl", "add", "device", "d", "x", -time.Second, "", "--ttl", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := blockRecord(tt.sub, tt.kind, tt.value, tt.reason, "op", tt.ttl, now)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("error = %v, want one naming %s", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Kind != tt.wantKind || rec.Active != tt.wantActive || rec.Actor != "op" {
				t.Errorf("record = %+v", rec)
			}
			if tt.ttl > 0 && !rec.ExpiresAt.Equal(now.Add(tt.ttl)) {
				t.Errorf("expires at %s, want %s", rec.ExpiresAt, now.Add(tt.ttl))
			}
			if tt.ttl == 0 && !rec.ExpiresAt.IsZero() {
				t.Errorf("expires at %s, want never", rec.ExpiresAt)
			}
		})
	}
}

// TestBlockCommandRealKafka runs block add, list and remove against the
// real Kafka with a topic prefix of its own.
func TestBlockCommandRealKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "t-" + hex.EncodeToString(b[:]) + "."
	path := filepath.Join(t.TempDir(), "syncguard.yaml")
	yaml := "kafka:\n  brokers: [" + strings.Join(brokers, ", ") + "]\n  topic_prefix: " + prefix + "\n  partitions: 1\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Log(err)
			return
		}
		defer cl.Close()
		var names []string
		for _, s := range schemas.AllTopics {
			names = append(names, schemas.Topic(prefix, s))
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		if _, err := kadm.NewClient(cl).DeleteTopics(dctx, names...); err != nil {
			t.Logf("delete test topics: %v", err)
		}
	})
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runBlock(ctx, append(args, "--config", path), &out); err != nil {
			t.Fatalf("block %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}

	run("add", "--kind", "source", "--value", "203.0.113.7", "--reason", "port scan", "--ttl", "1h")
	run("add", "--kind", "device", "--value", "dev-9", "--reason", "lost phone")
	list := run("list")
	for _, want := range []string{"block_source  203.0.113.7", "block_device  dev-9", "port scan", "never"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	run("remove", "--kind", "source", "--value", "203.0.113.7")
	list = run("list")
	if strings.Contains(list, "203.0.113.7") || !strings.Contains(list, "dev-9") {
		t.Errorf("list after remove:\n%s", list)
	}

	// Each add and remove left an operator audit event.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(schemas.Topic(prefix, schemas.TopicAudit)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var events []schemas.AuditEvent
	for len(events) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev schemas.AuditEvent
			if err := json.Unmarshal(r.Value, &ev); err == nil {
				events = append(events, ev)
			}
		})
	}
	if len(events) != 3 {
		t.Fatalf("%d audit events for 2 adds and 1 remove, want 3", len(events))
	}
	for _, ev := range events {
		if ev.Stage != schemas.StageOperator || ev.Action != schemas.ActionContain {
			t.Errorf("audit event %+v, want an operator contain step", ev)
		}
	}
	if !strings.HasPrefix(events[2].Detail, "lifted block_source 203.0.113.7") || events[2].Source != "203.0.113.7" {
		t.Errorf("remove audit event %+v, want a lifted block of the source", events[2])
	}
}
