package volcengine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/qualfile/qualfile/messages"
)

// SMS calls the Volcengine SMS qualification API (Version 2021-01-11,
// service "volcSMS"). It is safe for concurrent use.
type SMS struct {
	c *client
}

// NewSMS returns an SMS client; an empty Config.Endpoint means
// DefaultSMSEndpoint.
func NewSMS(cfg Config) (*SMS, error) {
	c, err := newClient(cfg, ServiceSMS, VersionSMS, DefaultSMSEndpoint)
	if err != nil {
		return nil, err
	}
	return &SMS{c: c}, nil
}

// ApplySignatureIdent files a signature qualification and returns its id, a
// 64-bit integer read exactly (never through float64). A success reply
// without the id is an error matching ErrNoResult (and retry.ErrPermanent).
func (s *SMS) ApplySignatureIdent(ctx context.Context, p *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, Metadata, error) {
	if p == nil {
		return messages.SMSApplyResult{}, Metadata{}, nilPayload(ActionApplySignatureIdent)
	}
	result, md, err := s.c.call(ctx, ActionApplySignatureIdent, p)
	if err != nil {
		return messages.SMSApplyResult{}, md, err
	}
	if result == nil {
		return messages.SMSApplyResult{}, md, noResult(ActionApplySignatureIdent, md)
	}
	id, ok, err := signatureIdentID(result)
	if err != nil {
		return messages.SMSApplyResult{}, md, malformedResult(ActionApplySignatureIdent, md, err.Error(), result)
	}
	if !ok {
		return messages.SMSApplyResult{}, md, noResult(ActionApplySignatureIdent, md)
	}
	return messages.SMSApplyResult{ID: id}, md, nil
}

// signatureIdentID reads Result.id, a JSON integer or a string holding one,
// with strconv so that values above 2^53 stay exact. ok is false when the
// id is absent, null or 0.
func signatureIdentID(result json.RawMessage) (id int64, ok bool, err error) {
	v, err := resultField(result, "id")
	if err != nil || v == nil {
		return 0, false, err
	}
	text := string(v)
	if v[0] == '"' {
		if err := json.Unmarshal(v, &text); err != nil {
			return 0, false, err
		}
	}
	id, err = strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("id %s is not a 64-bit integer", v)
	}
	if id < 0 {
		return 0, false, fmt.Errorf("id %d is negative", id)
	}
	return id, id != 0, nil
}
