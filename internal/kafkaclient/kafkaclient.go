// Package kafkaclient sets up franz-go clients the same way for every
// component: brokers, client id, durable producer settings, topic creation,
// and the in-process kfake cluster used by the demo and unit tests.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/syncguard/syncguard/schemas"
)

// Config selects the Kafka cluster and how topics are named and created.
type Config struct {
	// Brokers are the seed brokers, host:port. Ignored when InProcess is set.
	Brokers []string `yaml:"brokers"`
	// TopicPrefix starts every topic name (default "syncguard.").
	TopicPrefix string `yaml:"topic_prefix"`
	// ClientID identifies this process to the brokers.
	ClientID string `yaml:"client_id"`
	// Partitions is the partition count of topics created at start-up.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor of topics created at start-up; 1 for a single broker.
	ReplicationFactor int16 `yaml:"replication_factor"`
	// InstanceID names this process to Kafka and must differ between all
	// processes that run at once (default: the host name). Transactional
	// ids end with it, so a restarted process fences the transactions its
	// crashed predecessor left open at once, instead of consumers waiting
	// for the broker to time them out. Two running processes with the same
	// value fence each other.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the group coordinator waits for a silent
	// consumer before it gives the consumer's partitions to others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// TransactionTimeout is how long the broker keeps a transaction open
	// before aborting it. Consumers reading committed records wait at most
	// this long behind a transaction of a process that died for good.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// FetchMinBytes is how many bytes the broker gathers before it returns
	// a fetch of the processor, detector and sink, unless FetchMaxWait
	// passes first. Larger fetches cost the broker fewer requests per
	// record under load, at the price of up to FetchMaxWait of delay per
	// stage when traffic is light.
	FetchMinBytes int32 `yaml:"fetch_min_bytes"`
	// FetchMaxWait bounds how long the broker holds such a fetch.
	FetchMaxWait time.Duration `yaml:"fetch_max_wait"`
	// InProcess starts an in-memory kfake cluster instead of connecting to
	// Brokers. It keeps nothing across restarts: demo and unit tests only.
	InProcess bool `yaml:"in_process"`
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Brokers:            []string{"127.0.0.1:19092"},
		TopicPrefix:        "syncguard.",
		ClientID:           "syncguard",
		Partitions:         3,
		ReplicationFactor:  1,
		SessionTimeout:     10 * time.Second,
		TransactionTimeout: 15 * time.Second,
		FetchMinBytes:      256 << 10,
		FetchMaxWait:       100 * time.Millisecond,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if !c.InProcess && len(c.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one broker is required unless kafka.in_process is true")
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("kafka.brokers: %q is not host:port", b)
		}
	}
	if c.Partitions < 1 {
		return fmt.Errorf("kafka.partitions: must be at least 1, got %d", c.Partitions)
	}
	if c.ReplicationFactor < 1 {
		return fmt.Errorf("kafka.replication_factor: must be at least 1, got %d", c.ReplicationFactor)
	}
	// The broker's default group.min.session.timeout.ms is 6s.
	if c.SessionTimeout < 6*time.Second {
		return fmt.Errorf("kafka.session_timeout: must be at least 6s, got %s", c.SessionTimeout)
	}
	if c.TransactionTimeout < time.Second {
		return fmt.Errorf("kafka.transaction_timeout: must be at least 1s, got %s", c.TransactionTimeout)
	}
	if c.FetchMinBytes < 1 {
		return fmt.Errorf("kafka.fetch_min_bytes: must be at least 1, got %d", c.FetchMinBytes)
	}
	if c.FetchMaxWait < time.Millisecond || c.FetchMaxWait > 5*time.Second {
		return fmt.Errorf("kafka.fetch_max_wait: must be 1ms to 5s, got %s", c.FetchMaxWait)
	}
	return nil
}

// Instance returns InstanceID, or the host name when it is empty.
func (c Config) Instance() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return host
	}
	return "syncguard"
}

// TransactionalID returns the transactional id of a component of this
// process: prefix, a dash and Instance.
func (c Config) TransactionalID(prefix string) string { return prefix + "-" + c.Instance() }

// GroupOpts returns the options that consumer group members share.
func (c Config) GroupOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SessionTimeout(c.SessionTimeout)}
	// A zero value, as in a Config not built from Defaults, keeps
	// franz-go's own setting.
	if c.FetchMinBytes > 0 {
		opts = append(opts, kgo.FetchMinBytes(c.FetchMinBytes))
	}
	if c.FetchMaxWait > 0 {
		opts = append(opts, kgo.FetchMaxWait(c.FetchMaxWait))
	}
	return opts
}

// TransactOpts returns GroupOpts plus the options of a transactional
// consume-and-produce member, whose transactional id is
// TransactionalID(prefix).
func (c Config) TransactOpts(prefix string) []kgo.Opt {
	return append(c.GroupOpts(),
		kgo.TransactionalID(c.TransactionalID(prefix)),
		kgo.TransactionTimeout(c.TransactionTimeout),
	)
}

// Topic returns the full name of the topic with the given suffix.
func (c Config) Topic(suffix string) string { return schemas.Topic(c.TopicPrefix, suffix) }

// BaseOpts returns the options every client shares. Producers get acks=all,
// which is franz-go's default, stated here so that a change of defaults
// cannot weaken it unnoticed.
func (c Config) BaseOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30 * time.Second),
		kgo.RetryTimeout(30 * time.Second),
	}
}

// NewClient returns a client with BaseOpts followed by extra options.
func (c Config) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(c.BaseOpts(), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("create kafka client: %w", err)
	}
	return cl, nil
}

// EnsureTopics creates every pipeline topic that does not exist yet.
// Compacted topics get cleanup.policy=compact, and the replay topic keeps
// its records for schemas.ReplayRetention.
func (c Config) EnsureTopics(ctx context.Context) error {
	cl, err := c.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	for _, suffix := range schemas.AllTopics {
		var configs map[string]*string
		if schemas.CompactedTopics[suffix] {
			compact := "compact"
			configs = map[string]*string{"cleanup.policy": &compact}
		}
		if suffix == schemas.TopicReplay {
			retention := schemas.ReplayRetention
			configs = map[string]*string{"retention.ms": &retention}
		}
		resp, err := adm.CreateTopic(ctx, c.Partitions, c.ReplicationFactor, configs, c.Topic(suffix))
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", c.Topic(suffix), err)
		}
	}
	return nil
}

// StartInProcess starts a kfake cluster and returns it with c pointing at
// it. The caller closes the cluster after every client is closed.
func (c Config) StartInProcess() (*kfake.Cluster, Config, error) {
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(c.Partitions, c.allTopicNames()...),
	)
	if err != nil {
		return nil, c, fmt.Errorf("start in-process kafka: %w", err)
	}
	c.Brokers = cluster.ListenAddrs()
	return cluster, c, nil
}

func (c Config) allTopicNames() []string {
	names := make([]string, 0, len(schemas.AllTopics))
	for _, s := range schemas.AllTopics {
		names = append(names, c.Topic(s))
	}
	return names
}

// DeleteTopics deletes every pipeline topic of c's prefix. Topics that do
// not exist are not an error.
func (c Config) DeleteTopics(ctx context.Context) error {
	cl, err := c.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).DeleteTopics(ctx, c.allTopicNames()...)
	if err != nil {
		return fmt.Errorf("delete topics of prefix %s: %w", c.TopicPrefix, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}
