package processors

import (
	"errors"

	"github.com/syncguard/syncguard/schemas"
)

// processSync verifies, parses and routes one sync event record. Its
// content is encrypted under the token subject's data key, unless the
// client encrypted it already, in which case it is stored as received.
func (p *Processor) processSync(b *batch, rr *rawRecord) (string, error) {
	if why := p.verifySync(rr); why != "" {
		return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonInvalidMAC, why)
	}
	device := rr.headers[schemas.HeaderDevice]
	subject := p.ring.Pseudonym(rr.headers[schemas.HeaderSubject])

	ev, err := ParseSyncEvent(rr.Value)
	if err != nil {
		reason := schemas.ReasonInvalidEvent
		if errors.Is(err, errNotJSON) {
			reason = schemas.ReasonInvalidJSON
		}
		return outcomeRejected, p.rejectSync(b, rr, subject, device, ev.EventID, reason, err.Error())
	}

	if ev.DeviceID != device {
		// Ingest checked this already; a mismatch means the record was
		// not written by ingest as it should be.
		return outcomeRejected, p.rejectSync(b, rr, subject, device, ev.EventID, schemas.ReasonDeviceMismatch,
			"device_id differs from the authenticated device in header "+schemas.HeaderDevice)
	}

	msg := schemas.EncryptedMessage{
		MessageID:    ev.EventID,
		Kind:         schemas.KindSync,
		Type:         ev.Type,
		Account:      subject,
		Subject:      subject,
		Device:       device,
		Conversation: ev.ConversationID,
		SentAt:       ev.OccurredAt,
		ReceivedAt:   rr.receivedAt,
		RequestID:    rr.requestID,
	}
	if ev.Encrypted != nil {
		ciphertext, err := CheckClientPayload(*ev.Encrypted, p.cfg.AllowedClientAlgs)
		if err != nil {
			return outcomeRejected, p.rejectSync(b, rr, subject, device, ev.EventID, schemas.ReasonInvalidEvent, err.Error())
		}
		msg.ClientEncrypted = true
		msg.ClientAlg = ev.Encrypted.Alg
		msg.ClientIV = ev.Encrypted.IV
		msg.KeyID = ev.Encrypted.KeyID
		msg.Ciphertext = ciphertext
	}

	audit := schemas.AuditEvent{
		Action:    schemas.ActionRoute,
		Account:   subject,
		Subject:   subject,
		Device:    device,
		MessageID: ev.EventID,
	}
	// A replayed event id counts as a duplicate only from the same device.
	key := newDedupeKey(dedupeSyncEvent, ev.EventID, device)
	if p.isDuplicate(b, rr.Partition, key) {
		audit.Outcome, audit.Reason = schemas.OutcomeDuplicate, schemas.ReasonDuplicate
		return outcomeDuplicate, p.audit(b, rr, audit)
	}

	if !msg.ClientEncrypted {
		msg.KeyID, msg.Nonce, msg.Ciphertext, err = p.seal(b, subject, ev.EventID, Content{Type: ev.Type, Body: ev.Content})
		if err != nil {
			return "", err
		}
	}
	if err := b.add(p.topics.sync, device, msg); err != nil {
		return "", err
	}
	if err := p.markRouted(b, rr, key); err != nil {
		return "", err
	}
	audit.Outcome, audit.Reason, audit.Route = schemas.OutcomeAccepted, schemas.ReasonOK, schemas.TopicSync
	return outcomeAccepted, p.audit(b, rr, audit)
}

// rejectSync dead-letters a verified sync record whose event is invalid.
// detail comes from ParseSyncEvent or CheckClientPayload, which never quote
// content.
func (p *Processor) rejectSync(b *batch, rr *rawRecord, subject, device, eventID, reason, detail string) error {
	if err := p.deadLetter(b, rr, reason, detail); err != nil {
		return err
	}
	return p.audit(b, rr, schemas.AuditEvent{
		Action:    schemas.ActionDeadLetter,
		Outcome:   schemas.OutcomeRejected,
		Reason:    reason,
		Route:     schemas.TopicDLQ,
		Account:   subject,
		Subject:   subject,
		Device:    device,
		MessageID: truncate(eventID, maxHeaderEcho),
		Detail:    detail,
	})
}
