package processors

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/encoding/json"

	"github.com/syncguard/syncguard/schemas"
)

// processWhatsApp verifies, parses and routes one WhatsApp webhook record.
func (p *Processor) processWhatsApp(b *batch, rr *rawRecord) (string, error) {
	if why := p.verifyWhatsApp(rr); why != "" {
		return outcomeRejected, p.reject(b, rr, schemas.ActionVerify, schemas.ReasonInvalidSignature, why)
	}
	wh, err := ParseWebhook(rr.Value)
	if err != nil {
		reason, detail := schemas.ReasonInvalidJSON, "body is not webhook JSON"
		if errors.Is(err, ErrNotWhatsApp) {
			reason, detail = schemas.ReasonInvalidEvent, "object is not "+WhatsAppObject
		}
		return outcomeRejected, p.reject(b, rr, schemas.ActionDeadLetter, reason, detail)
	}

	var outcome recordOutcome
	for ei, entry := range wh.Entries {
		for ci, change := range entry.Changes {
			where := fmt.Sprintf("entry %d change %d", ei, ci)
			if err := p.routeChange(b, rr, entry, change, where, &outcome); err != nil {
				return "", err
			}
		}
	}
	if rr.auditEvents == 0 {
		// Every raw record leaves at least one audit event behind.
		err := p.audit(b, rr, schemas.AuditEvent{
			Action:  schemas.ActionRoute,
			Outcome: schemas.OutcomeAccepted,
			Reason:  schemas.ReasonOK,
			Detail:  "notification carries no messages or statuses",
		})
		if err != nil {
			return "", err
		}
	}
	return outcome.result(), nil
}

func (p *Processor) routeChange(b *batch, rr *rawRecord, entry Entry, change Change, where string, outcome *recordOutcome) error {
	v := change.Value
	account := v.PhoneNumberID
	if account == "" {
		account = entry.ID
	}
	if change.Field != FieldMessages {
		return p.audit(b, rr, schemas.AuditEvent{
			Action:  schemas.ActionRoute,
			Outcome: schemas.OutcomeAccepted,
			Reason:  schemas.ReasonUnsupportedType,
			Account: account,
			Detail:  where + ": field " + truncate(change.Field, 64) + " is not processed",
		})
	}

	for mi, m := range v.Messages {
		o, err := p.routeMessage(b, rr, account, v, m, fmt.Sprintf("%s message %d", where, mi))
		if err != nil {
			return err
		}
		outcome.add(o)
	}
	for si, s := range v.Statuses {
		o, err := p.routeStatus(b, rr, account, s, fmt.Sprintf("%s status %d", where, si))
		if err != nil {
			return err
		}
		outcome.add(o)
	}
	if v.Errors != nil {
		return p.audit(b, rr, schemas.AuditEvent{
			Action:  schemas.ActionRoute,
			Outcome: schemas.OutcomeAccepted,
			Reason:  schemas.ReasonOK,
			Account: account,
			Detail:  where + ": webhook reported errors with codes " + errorCodes(v.Errors),
		})
	}
	return nil
}

// routeMessage encrypts one inbound message and routes it to the messages
// topic, unless it is invalid (dead letter) or a redelivery (dropped).
func (p *Processor) routeMessage(b *batch, rr *rawRecord, account string, v ChangeValue, m Message, where string) (string, error) {
	if m.Invalid != "" {
		return outcomeRejected, p.rejectItem(b, rr, account, m.ID, joinDetail(where, m.Invalid))
	}
	from := m.From
	if from == "" {
		from = m.FromUserID
	}
	subject := p.ring.Pseudonym(from)
	ev := schemas.AuditEvent{
		Action:    schemas.ActionRoute,
		Account:   account,
		Subject:   subject,
		MessageID: m.ID,
	}

	key := newDedupeKey(dedupeWhatsAppMessage, m.ID)
	if p.isDuplicate(b, rr.Partition, key) {
		ev.Outcome, ev.Reason = schemas.OutcomeDuplicate, schemas.ReasonDuplicate
		return outcomeDuplicate, p.audit(b, rr, ev)
	}

	content := Content{Type: m.Type, Body: m.Content, Extra: m.Extra, ProfileName: v.ProfileName(m.From)}
	keyID, nonce, ciphertext, err := p.seal(b, subject, m.ID, content)
	if err != nil {
		return "", err
	}
	err = b.add(p.topics.messages, m.ID, schemas.EncryptedMessage{
		MessageID:  m.ID,
		Kind:       schemas.KindWhatsApp,
		Type:       m.Type,
		Account:    account,
		Subject:    subject,
		SentAt:     m.SentAt,
		ReceivedAt: rr.receivedAt,
		KeyID:      keyID,
		Nonce:      nonce,
		Ciphertext: ciphertext,
		Meta:       messageMeta(m, p.ring.Pseudonym),
		Errors:     m.Errors,
		RequestID:  rr.requestID,
	})
	if err != nil {
		return "", err
	}
	if err := p.markRouted(b, rr, key); err != nil {
		return "", err
	}

	ev.Outcome, ev.Reason, ev.Route = schemas.OutcomeAccepted, schemas.ReasonOK, schemas.TopicMessages
	if !m.Known {
		ev.Reason = schemas.ReasonUnsupportedType
	}
	return outcomeAccepted, p.audit(b, rr, ev)
}

// routeStatus routes one delivery status to the statuses topic with the
// recipient pseudonymized, unless it is invalid or a redelivery.
func (p *Processor) routeStatus(b *batch, rr *rawRecord, account string, s StatusUpdate, where string) (string, error) {
	if s.Invalid != "" {
		return outcomeRejected, p.rejectItem(b, rr, account, s.ID, joinDetail(where, s.Invalid))
	}
	recipient := s.RecipientID
	if recipient == "" {
		recipient = s.RecipientUserID
	}
	subject := p.ring.Pseudonym(recipient)
	ev := schemas.AuditEvent{
		Action:    schemas.ActionRoute,
		Account:   account,
		Subject:   subject,
		MessageID: s.ID,
	}

	// One message goes through several statuses, and Meta may repeat each.
	key := newDedupeKey(dedupeWhatsAppStatus, s.ID, s.Status, s.Timestamp)
	if p.isDuplicate(b, rr.Partition, key) {
		ev.Outcome, ev.Reason = schemas.OutcomeDuplicate, schemas.ReasonDuplicate
		return outcomeDuplicate, p.audit(b, rr, ev)
	}

	st := schemas.Status{
		MessageID:    s.ID,
		Account:      account,
		Recipient:    subject,
		Status:       s.Status,
		Timestamp:    s.Time,
		Conversation: s.ConversationID,
		Pricing:      s.Pricing,
		Errors:       s.Errors,
		RequestID:    rr.requestID,
	}
	if s.RecipientUserID != "" {
		st.RecipientUser = p.ring.Pseudonym(s.RecipientUserID)
	}
	if err := b.add(p.topics.statuses, s.ID, st); err != nil {
		return "", err
	}
	if err := p.markRouted(b, rr, key); err != nil {
		return "", err
	}
	ev.Outcome, ev.Reason, ev.Route = schemas.OutcomeAccepted, schemas.ReasonOK, schemas.TopicStatuses
	return outcomeAccepted, p.audit(b, rr, ev)
}

// rejectItem dead-letters one message or status of a verified webhook,
// leaving the record's other items to route.
func (p *Processor) rejectItem(b *batch, rr *rawRecord, account, messageID, detail string) error {
	if err := p.deadLetter(b, rr, schemas.ReasonInvalidEvent, detail); err != nil {
		return err
	}
	return p.audit(b, rr, schemas.AuditEvent{
		Action:    schemas.ActionDeadLetter,
		Outcome:   schemas.OutcomeRejected,
		Reason:    schemas.ReasonInvalidEvent,
		Route:     schemas.TopicDLQ,
		Account:   account,
		MessageID: truncate(messageID, maxHeaderEcho),
		Detail:    detail,
	})
}

// errorCodes returns the codes of a webhook errors array, comma-separated,
// for an audit detail. Titles and messages are left out to keep it short.
func errorCodes(raw json.RawMessage) string {
	var errs []struct {
		Code json.Number `json:"code"`
	}
	if err := json.Unmarshal(raw, &errs); err != nil {
		return "(unreadable)"
	}
	codes := make([]string, 0, len(errs))
	for _, e := range errs {
		codes = append(codes, truncate(string(e.Code), 16))
	}
	return strings.Join(codes, ",")
}
