// Package ingest is the HTTP edge of SyncGuard. It responds to Meta's WhatsApp
// webhook handshake, verifies the X-Hub-Signature-256 of webhook bodies,
// authenticates sync clients by bearer token and device, validates their
// event batches, and produces every accepted request to the raw topic
// before it responds: 200 or 202 means Kafka acknowledged the records. Every
// request, accepted or not, also becomes one audit event.
package ingest
