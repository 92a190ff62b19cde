// Package loadgen sends realistic traffic to a running SyncGuard ingest: WhatsApp
// Cloud API webhooks in Meta's own byte form, signed with the app secret, and
// sync-client event batches authorised by Ed25519 access tokens. The demo,
// the end-to-end tests and the benchmark share it.
//
// Every target and every source address must be a loopback address
// (127.0.0.0/8, ::1 or localhost). The HTTP client re-checks the peer
// address of each connection it opens, ignores proxy settings and never
// follows redirects, so load cannot reach any other host.
//
// The parts:
//
//   - WebhookFactory builds signed webhook notifications of every message
//     and status type, forged variants and byte-for-byte redeliveries.
//   - SyncFactory builds batches of sync events, some of them end-to-end
//     encrypted with AES-256-GCM, each batch with a bearer token from a
//     TokenSigner such as Signer.
//   - Run sends a bounded mix of those requests, paced open loop at a fixed
//     rate or closed loop as fast as the connections allow, and returns a
//     Report with status counts, latency percentiles and acknowledgement
//     times.
//   - Attack presets (ForgedBurst, VolumeSpike) shape a run for the demo's
//     detectors.
package loadgen
