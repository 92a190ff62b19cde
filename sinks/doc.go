// Package sinks writes the pipeline's topics into ClickHouse and applies the
// ClickHouse migrations.
//
// The Writer consumes the audit, messages, sync, statuses and alerts topics
// and inserts their records in batches, exactly once and in offset order per
// partition. Every row carries the Kafka partition and offset of its record;
// after a restart the Writer reads them back and skips what is already
// stored, so a crash between an insert and the offset commit neither loses
// nor duplicates rows. Audit rows form a hash chain per partition, which
// VerifyChain recomputes.
//
// Given a keyring, the Writer also signs checkpoints of each audit
// partition's chain into audit_checkpoints, at most once per
// sink.checkpoint_interval and once more at shutdown. VerifyAudit checks
// them, so that rows removed or rewritten up to the newest checkpoint are
// detected even when every later hash was recomputed.
package sinks
