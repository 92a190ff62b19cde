// Package testenv finds the real Kafka and ClickHouse that
// scripts/services.sh starts, for integration tests.
//
// A test that needs a service it cannot find is skipped on a developer's
// laptop, but fails when SYNCGUARD_REQUIRE_SERVICES=1, which CI sets, so CI
// can never pass by skipping.
package testenv

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/syncguard/syncguard/internal/kafkaclient"
)

// Environment variables that scripts/services.sh env prints.
const (
	EnvKafkaBrokers    = "SYNCGUARD_KAFKA_BROKERS"
	EnvClickHouseAddr  = "SYNCGUARD_CLICKHOUSE_ADDR"
	EnvRequireServices = "SYNCGUARD_REQUIRE_SERVICES"
)

// KafkaBrokers returns the brokers of the test Kafka, or skips t.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	addr := need(t, EnvKafkaBrokers, "Kafka")
	return strings.Split(addr, ",")
}

// ClickHouseAddr returns the native-protocol address of the test
// ClickHouse, or skips t.
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	return need(t, EnvClickHouseAddr, "ClickHouse")
}

func need(t testing.TB, env, name string) string {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		missing(t, "%s not set: run `eval \"$(scripts/services.sh env)\"` after `scripts/services.sh start` to test against the real %s", env, name)
		return ""
	}
	first := strings.Split(addr, ",")[0]
	conn, err := net.DialTimeout("tcp", first, 2*time.Second)
	if err != nil {
		missing(t, "%s at %s does not answer (%v): start it with scripts/services.sh start", name, first, err)
		return ""
	}
	_ = conn.Close()
	return addr
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// CreateTopics creates the pipeline topics of cfg on its brokers and deletes
// them when t ends, so that test runs do not pile up partitions on a shared
// broker. SYNCGUARD_E2E_KEEP=1 keeps them for a look after a failure.
func CreateTopics(t testing.TB, cfg kafkaclient.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("SYNCGUARD_E2E_KEEP") != "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A topic left behind costs disk, not correctness.
		if err := cfg.DeleteTopics(ctx); err != nil {
			t.Logf("delete test topics: %v", err)
		}
	})
}
