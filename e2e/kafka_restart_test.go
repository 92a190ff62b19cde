package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// privateKafka is a Kafka broker of one test, started by scripts/services.sh
// with its own data folder and ports, so that the test can stop it without
// disturbing the shared broker of the other tests.
type privateKafka struct {
	t      *testing.T
	env    []string
	broker string
}

func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	addrs := freeAddrs(t, 2)
	_, port, _ := net.SplitHostPort(addrs[0])
	_, controllerPort, _ := net.SplitHostPort(addrs[1])
	k := &privateKafka{
		t: t,
		env: append(os.Environ(),
			"SERVICES=kafka",
			"SYNCGUARD_LOCAL_DIR="+t.TempDir(),
			"KAFKA_PORT="+port,
			"KAFKA_CONTROLLER_PORT="+controllerPort,
		),
		broker: addrs[0],
	}
	k.run("start")
	t.Cleanup(func() { k.run("stop") })
	return k
}

// run runs scripts/services.sh with the broker's environment.
func (k *privateKafka) run(action string) {
	k.t.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "services.sh"), action)
	cmd.Env = k.env
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Fatalf("services.sh %s: %v\n%s", action, err, out)
	}
}

// TestPipelineSurvivesKafkaRestart stops the broker under a running
// pipeline and starts it again: the process must keep running, respond 503
// while Kafka is away, become ready again and store new webhooks, without
// a restart of its own.
func TestPipelineSurvivesKafkaRestart(t *testing.T) {
	kafka := startPrivateKafka(t)
	s := newStack(t, stackOptions{Brokers: []string{kafka.broker}})
	f, _ := webhookFactory(t, 41, 1)

	before := f.NextText()
	if got := s.sendGenerated(before); got.Status != http.StatusOK {
		t.Fatalf("webhook before the outage: status %d, body %s", got.Status, got.Body)
	}
	s.oneMessage(t, before.MessageIDs()[0])

	kafka.run("stop")
	during := f.NextText()
	if got := s.sendGenerated(during); got.Status != http.StatusServiceUnavailable {
		t.Errorf("webhook while Kafka is stopped: status %d, want 503", got.Status)
	}
	// Long enough for every consumer to try a transaction or a fetch.
	time.Sleep(5 * time.Second)
	select {
	case err := <-s.procDone:
		s.procDone <- err
		t.Fatalf("syncguard exited while Kafka was stopped: %v\n%s", err, s.logTail())
	default:
	}

	kafka.run("start")
	waitFor(t, 120*time.Second, "syncguard to become ready after Kafka returned", func() bool {
		resp, err := http.Get(s.opsURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	after := f.NextText()
	var got httpResult
	// The first produce after the outage can still time out while the
	// client reconnects; a client retries a 503.
	waitFor(t, 30*time.Second, "a webhook to be accepted after the outage", func() bool {
		got = s.sendGenerated(after)
		return got.Status == http.StatusOK
	})
	s.oneMessage(t, after.MessageIDs()[0])
	select {
	case err := <-s.procDone:
		s.procDone <- err
		t.Fatalf("syncguard exited after Kafka returned: %v\n%s", err, s.logTail())
	default:
	}
}
