package loadgen

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

func TestCheckTarget(t *testing.T) {
	f := func(target string, wantLoopbackErr, wantErr bool) {
		t.Helper()
		_, err := CheckTarget(target)
		if (err != nil) != wantErr {
			t.Errorf("CheckTarget(%q) error = %v, want error %v", target, err, wantErr)
		}
		if errors.Is(err, ErrNotLoopback) != wantLoopbackErr {
			t.Errorf("CheckTarget(%q) = %v, want ErrNotLoopback %v", target, err, wantLoopbackErr)
		}
	}
	// Accepted.
	f("http://127.0.0.1:8080", false, false)
	f("http://127.0.0.2:8080/", false, false)
	f("http://127.255.255.254", false, false)
	f("https://localhost:8443", false, false)
	f("http://LOCALHOST:8080", false, false)
	f("http://[::1]:8080", false, false)
	f("http://[::ffff:127.0.0.1]:8080", false, false)

	// Not loopback.
	f("http://10.0.0.1:8080", true, true)
	f("http://192.168.1.10", true, true)
	f("http://0.0.0.0:8080", true, true)
	f("http://[::]:8080", true, true)
	f("http://[2001:db8::1]:8080", true, true)
	f("http://example.com", true, true)
	f("http://localhost.example.com", true, true)
	f("http://127.0.0.1.nip.io", true, true)
	f("http://2130706433", true, true) // 127.0.0.1 as one integer: not an IP literal for netip

	// Malformed.
	f("ftp://127.0.0.1", false, true)
	f("127.0.0.1:8080", false, true)
	f("http://user:pw@127.0.0.1", false, true)
	f("http://", false, true)
}

func TestParseSourceAddr(t *testing.T) {
	cases := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "invalid IP", false},
		{"127.0.0.2", "127.0.0.2", false},
		{"::1", "::1", false},
		{"::ffff:127.0.0.3", "127.0.0.3", false},
		{"10.1.2.3", "", true},
		{"0.0.0.0", "", true},
		{"localhost", "", true},
	}
	for _, c := range cases {
		got, err := ParseSourceAddr(c.in)
		if (err != nil) != c.wantErr {
			t.Errorf("ParseSourceAddr(%q) error = %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		if err == nil && got.String() != c.want {
			t.Errorf("ParseSourceAddr(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestNewHTTPRequestRejectsRemoteTarget(t *testing.T) {
	f, err := NewWebhookFactory(1, ExampleAccounts(testAppSecret, 1))
	if err != nil {
		t.Fatal(err)
	}
	req := f.Next()
	if _, err := req.NewHTTPRequest(context.Background(), "http://203.0.113.7:8080"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("err = %v, want ErrNotLoopback", err)
	}
	hr, err := req.NewHTTPRequest(context.Background(), "http://127.0.0.1:8080/")
	if err != nil {
		t.Fatal(err)
	}
	if hr.URL.String() != "http://127.0.0.1:8080"+WebhookPath {
		t.Errorf("URL = %s", hr.URL)
	}
	if hr.Header.Get("X-Hub-Signature-256") != req.Header.Get("X-Hub-Signature-256") {
		t.Error("signature header not copied")
	}
	if hr.ContentLength != int64(len(req.Body)) {
		t.Errorf("ContentLength = %d, want %d", hr.ContentLength, len(req.Body))
	}
}

func TestNewClientRejectsRemoteSource(t *testing.T) {
	if _, err := NewClient(ClientConfig{SourceAddr: "192.0.2.1"}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("err = %v, want ErrNotLoopback", err)
	}
}

func TestDialLoopbackRejectsRemoteAddress(t *testing.T) {
	client, err := NewClient(ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The request never leaves the machine: the dialer rejects the address
	// before connecting.
	req, err := newRawRequest(context.Background(), "http://198.51.100.9:9/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Do(req)
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Do to a remote address: err = %v, want ErrNotLoopback", err)
	}
}

func newRawRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}
