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

// ApplySignatureIdent files a signature qualification and returns its id; a
// success reply without it matches ErrNoResult.
func (s *SMS) ApplySignatureIdent(ctx context.Context, p *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, Metadata, error) {
	if p == nil {
		return messages.SMSApplyResult{}, Metadata{}, nilPayload(ActionApplySignatureIdent)
	}
	id, md, err := create(ctx, s.c, ActionApplySignatureIdent, p, signatureIdentID)
	return messages.SMSApplyResult{ID: id}, md, err
}

// signatureIdentID reads Result.id, a JSON integer or a string holding one,
// with strconv so that values above 2^53 stay exact; 0 when the id is
// absent or null.
func signatureIdentID(result json.RawMessage) (int64, error) {
	v, err := resultField(result, "id")
	if err != nil || v == nil {
		return 0, err
	}
	text := string(v)
	if v[0] == '"' {
		if err := json.Unmarshal(v, &text); err != nil {
			return 0, err
		}
	}
	id, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id %s is not a 64-bit integer", v)
	}
	if id < 0 {
		return 0, fmt.Errorf("id %d is negative", id)
	}
	return id, nil
}
