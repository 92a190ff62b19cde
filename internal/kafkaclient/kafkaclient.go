// Package kafkaclient sets up franz-go clients the same way for every
// component: brokers, client id, durable producer settings, topic creation,
// and the in-process kfake cluster used by the demo and unit tests.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
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
	// InProcess starts an in-memory kfake cluster instead of connecting to
	// Brokers. It keeps nothing across restarts: demo and unit tests only.
	InProcess bool `yaml:"in_process"`
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:19092"},
		TopicPrefix:       "syncguard.",
		ClientID:          "syncguard",
		Partitions:        3,
		ReplicationFactor: 1,
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
	return nil
}

// Topic returns the full name of the topic with the given suffix.
func (c Config) Topic(suffix string) string { return schemas.Topic(c.TopicPrefix, suffix) }

// BaseOpts returns the options every client shares. Producers get acks=all
// and idempotence, which are franz-go's defaults; they are set here anyway so
// that nobody turns them off by accident.
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
// Compacted topics get cleanup.policy=compact.
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
