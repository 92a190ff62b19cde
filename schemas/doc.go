// Package schemas defines what the pipeline stages exchange: topic names,
// Kafka record headers, the JSON payloads of every topic and the ClickHouse
// migrations. The stage packages (ingest, processors, detectors, sinks) meet
// only through these types and never import each other.
package schemas
