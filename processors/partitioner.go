package processors

import "github.com/twmb/franz-go/pkg/kgo"

// outputPartitioner writes dedupe markers to the partition that the record
// names, which is the raw record's partition number. It hashes the keys of
// every other output record with murmur2 like Kafka's Java client, so all
// records of one key land in one partition.
type outputPartitioner struct {
	manualTopic string
	manual      kgo.Partitioner
	keyed       kgo.Partitioner
}

func newOutputPartitioner(manualTopic string) kgo.Partitioner {
	return outputPartitioner{
		manualTopic: manualTopic,
		manual:      kgo.ManualPartitioner(),
		keyed:       kgo.StickyKeyPartitioner(nil),
	}
}

func (o outputPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == o.manualTopic {
		return o.manual.ForTopic(topic)
	}
	return o.keyed.ForTopic(topic)
}
