package ingest

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/syncguard/syncguard/schemas"
)

// whatsappCasesDir contains real-world WhatsApp webhook inputs with their
// expected statuses, beside the repository.
const whatsappCasesDir = "../e2e/testdata/whatsapp"

type caseManifest struct {
	AppSecret   string `json:"app_secret"`
	VerifyToken string `json:"verify_token"`
	Requests    []struct {
		Case         string      `json:"case"`
		Request      string      `json:"request"`
		Method       string      `json:"method"`
		Target       string      `json:"target"`
		Headers      [][2]string `json:"headers"`
		BodyFile     *string     `json:"body_file"`
		Expect       string      `json:"expect"`
		Precondition string      `json:"precondition"`
	} `json:"requests"`
}

// TestWhatsAppCases replays every request of the WhatsApp case manifest
// byte for byte over TCP, header names as written, and checks the status
// and, for handshakes, the exact body. Requests that need Kafka to be down
// are left to the end-to-end tests.
func TestWhatsAppCases(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(whatsappCasesDir, "manifest.json"))
	if os.IsNotExist(err) {
		t.Skipf("no WhatsApp cases at %s", whatsappCasesDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var m caseManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.AppSecret != testAppSecret || m.VerifyToken != testVerifyToken {
		t.Fatalf("the manifest's credentials differ from the test configuration")
	}

	h := newHarness(t, nil)
	base, _ := serving(t, h)
	addr := strings.TrimPrefix(base, "http://")
	stored := 0
	for _, req := range m.Requests {
		if req.Precondition == "kafka_down" {
			continue
		}
		t.Run(req.Case+"/"+req.Request, func(t *testing.T) {
			var body []byte
			if req.BodyFile != nil {
				var err error
				if body, err = os.ReadFile(filepath.Join(whatsappCasesDir, *req.BodyFile)); err != nil {
					t.Fatal(err)
				}
			}
			var msg strings.Builder
			msg.WriteString(req.Method + " " + req.Target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n")
			for _, kv := range req.Headers {
				msg.WriteString(kv[0] + ": " + kv[1] + "\r\n")
			}
			msg.WriteString("\r\n")
			msg.Write(body)

			resp := rawExchange(t, addr, msg.String())
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			checkCaseStatus(t, req.Expect, resp.StatusCode, string(got))
			if req.Method == http.MethodPost && resp.StatusCode == 200 {
				stored++
			}
		})
	}
	if n := len(h.records(schemas.TopicRaw)); n != stored {
		t.Errorf("%d raw records after %d accepted webhooks", n, stored)
	}
}

// checkCaseStatus compares a response with a manifest expectation: "200",
// "403", "4xx", or "200 body=<exact body>".
func checkCaseStatus(t *testing.T, expect string, status int, body string) {
	t.Helper()
	want, wantBody, hasBody := strings.Cut(expect, " body=")
	switch want {
	case "4xx":
		if status < 400 || status > 499 {
			t.Errorf("status = %d, want 4xx; body %s", status, body)
		}
	default:
		code, err := strconv.Atoi(want)
		if err != nil {
			t.Fatalf("unknown expectation %q", expect)
		}
		if status != code {
			t.Errorf("status = %d, want %d; body %s", status, code, body)
		}
	}
	if hasBody && body != wantBody {
		t.Errorf("body = %q, want exactly %q", body, wantBody)
	}
}
