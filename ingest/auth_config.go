package ingest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Bounds of the replay defence settings.
const (
	// minJWKSRefresh keeps a misconfigured refresh from hammering the
	// issuer.
	minJWKSRefresh = 10 * time.Second
	// maxDPoPMaxAge bounds the window in which a captured proof is useful.
	maxDPoPMaxAge = 10 * time.Minute
	// maxIdempotencyTTL caps how long an accepted event_id is remembered,
	// even when sync_max_event_age is longer.
	maxIdempotencyTTL = 24 * time.Hour
)

// validateReplayDefence checks the keys of the JWKS URL, DPoP and event
// idempotency.
func (c Config) validateReplayDefence() error {
	a := c.SyncAuth
	if a.JWKSURL != "" {
		if a.JWKSFile != "" {
			return errors.New("ingest.sync_auth.jwks_url: set only one of jwks_url and jwks_file")
		}
		if err := checkJWKSURL(a.JWKSURL); err != nil {
			return fmt.Errorf("ingest.sync_auth.jwks_url: %w", err)
		}
		if a.JWKSRefresh < minJWKSRefresh {
			return fmt.Errorf("ingest.sync_auth.jwks_refresh: must be at least %s, got %s", minJWKSRefresh, a.JWKSRefresh)
		}
		if a.JWKSFetchTimeout <= 0 || a.JWKSFetchTimeout > time.Minute {
			return fmt.Errorf("ingest.sync_auth.jwks_fetch_timeout: must be between 0 and 1m, got %s", a.JWKSFetchTimeout)
		}
	}
	if a.DPoPMaxAge <= 0 || a.DPoPMaxAge > maxDPoPMaxAge {
		return fmt.Errorf("ingest.sync_auth.dpop_max_age: must be between 0 and %s, got %s", maxDPoPMaxAge, a.DPoPMaxAge)
	}
	if a.DPoPReplayCacheMax < 1 {
		return fmt.Errorf("ingest.sync_auth.dpop_replay_cache_max: must be positive, got %d", a.DPoPReplayCacheMax)
	}
	if c.PublicOrigin != "" {
		if _, err := parsePublicOrigin(c.PublicOrigin); err != nil {
			return fmt.Errorf("ingest.public_origin: %w", err)
		}
	} else if !a.AllowUnboundTokens {
		return errors.New("ingest.public_origin: missing, but sync_auth.allow_unbound_tokens is false, so every token needs a DPoP proof whose htu names this origin")
	}
	if c.SyncIdempotencyMaxEntries < 1 {
		return fmt.Errorf("ingest.sync_idempotency_max_entries: must be positive, got %d", c.SyncIdempotencyMaxEntries)
	}
	return nil
}

// checkJWKSURL accepts https URLs, and http URLs whose host is a loopback
// address or localhost.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.User != nil || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%q must be an absolute URL without user info or fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only for loopback hosts; use https", raw)
	default:
		return fmt.Errorf("%q: the scheme must be https", raw)
	}
}

// parsePublicOrigin returns the normalised origin: lower-case scheme and
// host, without the scheme's default port, and without a path.
func parsePublicOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("%q: the scheme must be https or http", raw)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q must be scheme://host[:port] without path, query or user info", raw)
	}
	origin, ok := normalOrigin(u)
	if !ok {
		return "", fmt.Errorf("%q has an invalid port", raw)
	}
	return origin, nil
}

// normalOrigin returns scheme://host[:port] of u with the scheme and host
// in lower case and the default port of the scheme left out. ok is false
// for a port that is not a number.
func normalOrigin(u *url.URL) (string, bool) {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port != "" {
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return "", false
			}
		}
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, true
}
