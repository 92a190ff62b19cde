package detectors

import (
	"container/list"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncguard/syncguard/schemas"
)

// ContainmentConfig sets the blocks that the engine publishes for failure
// alerts. A block is a control record that every ingest instance enforces:
// a blocked source address or device gets 403 with the problem code
// "blocked" until the block expires.
type ContainmentConfig struct {
	// Enabled turns the blocks on. Alerts are raised either way.
	Enabled bool `yaml:"enabled"`
	// MinSeverity is the lowest alert severity that blocks: "critical" or
	// "warning".
	MinSeverity string `yaml:"min_severity"`
	// BlockTTL is how long a block lasts, counted from the alert's
	// raise time.
	BlockTTL time.Duration `yaml:"block_ttl"`
	// Allowlist lists the IP addresses and CIDR prefixes that are never
	// blocked. Operators should list their own reverse proxies, load
	// balancers and health checkers here, because a block of such an
	// address would cut off every client behind it.
	Allowlist []string `yaml:"allowlist"`
}

func (c ContainmentConfig) validate() error {
	if _, ok := parseSeverity(c.MinSeverity); !ok {
		return configError("containment.min_severity", "must be %q or %q, got %q",
			schemas.SeverityWarning, schemas.SeverityCritical, c.MinSeverity)
	}
	if c.BlockTTL < time.Second {
		return configError("containment.block_ttl", "must be at least 1s, got %s", c.BlockTTL)
	}
	_, err := parseAllowlist(c.Allowlist)
	return err
}

func parseSeverity(s string) (severity, bool) {
	switch s {
	case schemas.SeverityWarning:
		return severityWarning, true
	case schemas.SeverityCritical:
		return severityCritical, true
	}
	return severityNone, false
}

// parseAllowlist parses addresses such as "10.0.0.7" and prefixes such as
// "10.0.0.0/8". IPv4-mapped IPv6 forms become IPv4, as ingest reads client
// addresses.
func parseAllowlist(values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for i, v := range values {
		key := fmt.Sprintf("containment.allowlist[%d]", i)
		v = strings.TrimSpace(v)
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return nil, configError(key, "%q is not an IP address or CIDR prefix", v)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, configError(key, "%q is not an IP address or CIDR prefix: %v", v, err)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// maxDeviceIDLen and validDeviceID repeat the device id rule of ingest: a
// block_device record whose value breaks it is ignored by every ingest
// instance, so the detector does not publish one.
const maxDeviceIDLen = 128

func validDeviceID(s string) bool {
	if len(s) == 0 || len(s) > maxDeviceIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// containKind returns the control record kind that an alert of rule leads
// to, or "" for a rule that never blocks.
func containKind(rule string) string {
	switch rule {
	case RuleFailedSignatureSource, RuleFailedAuthSource:
		return schemas.ControlBlockSource
	case RuleFailedAuthDevice:
		return schemas.ControlBlockDevice
	}
	return ""
}

// Reasons for skipping a block, the values of the reason label of
// syncguard_detector_containment_skipped_total.
const (
	skipAllowlisted = "allowlisted"
	skipActive      = "active"
	skipInvalidKey  = "invalid_key"
)

// containAction is one block to publish: the control record, its record
// key, and the audit event that puts it on the audit trail.
type containAction struct {
	key     string // schemas.ControlKey of the record
	control schemas.ControlRecord
	audit   schemas.AuditEvent
}

// publishedBlock is a block this detector published, kept until it expires
// so that the same key is not blocked twice while the block is active.
type publishedBlock struct {
	key     string
	kind    string
	expires time.Time
}

// containment turns failure alerts into blocks. plan decides within a
// transaction, and commit or abort settles the blocks planned since the
// last settlement. It is not safe for concurrent use, so only the engine's
// loop calls it.
//
// NOTE: the published blocks are remembered in memory only. After a
// restart the detector can publish a second block for a key whose block is
// still active, which renews that block instead of adding one.
type containment struct {
	enabled bool
	min     severity
	ttl     time.Duration
	allow   []netip.Prefix
	max     int

	// blocks contains at most max published blocks, in publication order.
	// Every block has the same TTL, so this is also expiry order unless
	// the wall clock moves backwards.
	blocks map[string]*list.Element // value *publishedBlock
	order  *list.List
	// pending contains the blocks planned in the open transaction.
	pending map[string]publishedBlock

	actions   *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	tracked   prometheus.Gauge
	evictions prometheus.Counter
}

func newContainment(cfg ContainmentConfig, maxKeys int, m *metrics) (*containment, error) {
	allow, err := parseAllowlist(cfg.Allowlist)
	if err != nil {
		return nil, err
	}
	minSeverity, ok := parseSeverity(cfg.MinSeverity)
	if !ok {
		return nil, configError("containment.min_severity", "must be %q or %q, got %q",
			schemas.SeverityWarning, schemas.SeverityCritical, cfg.MinSeverity)
	}
	c := &containment{
		enabled:   cfg.Enabled,
		min:       minSeverity,
		ttl:       cfg.BlockTTL,
		allow:     allow,
		max:       maxKeys,
		blocks:    make(map[string]*list.Element),
		order:     list.New(),
		pending:   make(map[string]publishedBlock),
		actions:   m.containActions,
		skipped:   m.containSkipped,
		tracked:   m.containBlocks,
		evictions: m.containEvictions,
	}
	m.containCapacity.Set(float64(maxKeys))
	return c, nil
}

// plan returns the block that alert a leads to, if any, and keeps it as
// pending. The block lasts for the configured TTL from the alert's
// RaisedAt, which is also the wall-clock time that expiry is checked at.
func (c *containment) plan(a schemas.Alert) (containAction, bool) {
	kind := containKind(a.Rule)
	if !c.enabled || kind == "" {
		return containAction{}, false
	}
	if s, ok := parseSeverity(a.Severity); !ok || s < c.min {
		return containAction{}, false
	}
	value, skip := c.target(kind, a.Key)
	if skip != "" {
		c.skipped.WithLabelValues(skip).Inc()
		return containAction{}, false
	}

	key := schemas.ControlKey(kind, value)
	now := a.RaisedAt
	c.prune(now)
	if c.active(key, now) {
		c.skipped.WithLabelValues(skipActive).Inc()
		return containAction{}, false
	}

	expires := now.Add(c.ttl)
	c.pending[key] = publishedBlock{key: key, kind: kind, expires: expires}
	act := containAction{
		key: key,
		control: schemas.ControlRecord{
			Kind:      kind,
			Value:     value,
			Active:    true,
			Reason:    a.Summary,
			Actor:     "detector:" + a.Rule,
			CreatedAt: now,
			ExpiresAt: expires,
		},
		audit: schemas.AuditEvent{
			// Derived from the alert ID, so that a replay that raises the
			// alert again gives its audit row the same ID.
			ID:      "detector/contain/" + a.ID,
			Time:    now,
			Stage:   schemas.StageDetector,
			Action:  schemas.ActionContain,
			Outcome: schemas.OutcomeAccepted,
			Reason:  a.Rule,
			Detail:  fmt.Sprintf("blocked for %s", c.ttl),
		},
	}
	if kind == schemas.ControlBlockSource {
		act.audit.Source = value
	} else {
		act.audit.Device = value
	}
	return act, true
}

// target checks an alert key as a value of kind and returns the value to
// block, or the reason to skip it.
func (c *containment) target(kind, key string) (value, skip string) {
	if kind == schemas.ControlBlockDevice {
		if !validDeviceID(key) {
			return "", skipInvalidKey
		}
		return key, ""
	}
	// IPv6 sources are counted, and so blocked, per /64 prefix.
	if prefix, err := netip.ParsePrefix(key); err == nil {
		prefix = prefix.Masked()
		for _, p := range c.allow {
			if p.Overlaps(prefix) {
				return "", skipAllowlisted
			}
		}
		return prefix.String(), ""
	}
	addr, err := netip.ParseAddr(key)
	if err != nil || addr.Zone() != "" {
		return "", skipInvalidKey
	}
	addr = addr.Unmap()
	for _, p := range c.allow {
		if p.Contains(addr) {
			return "", skipAllowlisted
		}
	}
	return addr.String(), ""
}

// active reports whether a published or pending block of key is active at
// now.
func (c *containment) active(key string, now time.Time) bool {
	if b, ok := c.pending[key]; ok && b.expires.After(now) {
		return true
	}
	if el, ok := c.blocks[key]; ok && el.Value.(*publishedBlock).expires.After(now) {
		return true
	}
	return false
}

// prune drops the published blocks that expired at or before now, oldest
// first.
func (c *containment) prune(now time.Time) {
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		b := el.Value.(*publishedBlock)
		if b.expires.After(now) {
			break
		}
		c.order.Remove(el)
		delete(c.blocks, b.key)
	}
	c.tracked.Set(float64(len(c.blocks)))
}

// commit records the pending blocks as published, once their transaction
// committed. When the table is full, the oldest block is forgotten: a
// later alert for its key can then publish a renewal while it is active.
func (c *containment) commit() {
	for key, p := range c.pending {
		c.actions.WithLabelValues(p.kind).Inc()
		if el, ok := c.blocks[key]; ok {
			c.order.Remove(el)
			delete(c.blocks, key)
		}
		if len(c.blocks) >= c.max {
			oldest := c.order.Front()
			c.order.Remove(oldest)
			delete(c.blocks, oldest.Value.(*publishedBlock).key)
			c.evictions.Inc()
		}
		b := p
		c.blocks[key] = c.order.PushBack(&b)
	}
	clear(c.pending)
	c.tracked.Set(float64(len(c.blocks)))
}

// abort discards the pending blocks, because their transaction aborted.
// The alerts that planned them are raised again when the records are read
// again.
func (c *containment) abort() {
	clear(c.pending)
}

// tracking returns the number of published blocks held in memory.
func (c *containment) tracking() int { return len(c.blocks) }
