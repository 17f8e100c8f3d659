package volcengine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// VMS calls the Volcengine VMS qualification API (Version 2022-01-01,
// service "vms"). It is safe for concurrent use.
type VMS struct {
	c *client
}

// NewVMS returns a VMS client; an empty Config.Endpoint means
// DefaultVMSEndpoint.
func NewVMS(cfg Config) (*VMS, error) {
	c, err := newClient(cfg, ServiceVMS, VersionVMS, DefaultVMSEndpoint)
	if err != nil {
		return nil, err
	}
	return &VMS{c: c}, nil
}

// AddQualification files q and returns the qualification number the vendor
// assigned; a success reply without it matches ErrNoResult.
func (v *VMS) AddQualification(ctx context.Context, q *messages.VMSQualification) (messages.VMSAddResult, Metadata, error) {
	if q == nil {
		return messages.VMSAddResult{}, Metadata{}, nilPayload(ActionAddQualification)
	}
	no, md, err := create(ctx, v.c, ActionAddQualification, withReqSource(q), qualificationNo)
	return messages.VMSAddResult{QualificationNo: no}, md, err
}

// UpdateQualification amends a qualification whose review was rejected and
// returns the vendor's Result verbatim, or {} when the reply has none.
func (v *VMS) UpdateQualification(ctx context.Context, q *messages.VMSQualification) (json.RawMessage, Metadata, error) {
	if q == nil {
		return nil, Metadata{}, nilPayload(ActionUpdateQualification)
	}
	result, md, err := v.c.do(ctx, http.MethodPost, ActionUpdateQualification, withReqSource(q))
	if err == nil && result == nil {
		result = json.RawMessage("{}")
	}
	return result, md, err
}

// withReqSource is q with QualificationMainInfoFormDO.ReqSourceType set to
// messages.DefaultReqSourceType when the caller gave none, as the official
// SDK sends it; q itself is not changed.
func withReqSource(q *messages.VMSQualification) *messages.VMSQualification {
	if q.QualificationMainInfoFormDO == nil || q.QualificationMainInfoFormDO.ReqSourceType != 0 {
		return q
	}
	body, main := *q, *q.QualificationMainInfoFormDO
	main.ReqSourceType = messages.DefaultReqSourceType
	body.QualificationMainInfoFormDO = &main
	return &body
}

// qualificationNo reads the number from an AddQualification Result, "" when
// it has none. The vendor's page spells it QualificationNo in the example
// and qualificationNo in the table: any casing is accepted.
func qualificationNo(result json.RawMessage) (string, error) {
	v, err := resultField(result, "QualificationNo", "qualificationNo")
	if err != nil || v == nil {
		return "", err
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		return strings.TrimSpace(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(v), nil
	}
	return "", fmt.Errorf("qualification number is not a string")
}

// resultField returns the value of the first of names present in the JSON
// object result (exact spellings first, then any casing of names[0]); nil
// when none is present or the value is null.
func resultField(result json.RawMessage, names ...string) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(result, &obj); err != nil {
		return nil, fmt.Errorf("Result is not a JSON object")
	}
	pick := func(v json.RawMessage) json.RawMessage {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || string(v) == "null" {
			return nil
		}
		return v
	}
	for _, n := range names {
		if v, ok := obj[n]; ok {
			return pick(v), nil
		}
	}
	for k, v := range obj {
		if strings.EqualFold(k, names[0]) {
			return pick(v), nil
		}
	}
	return nil, nil
}

// nilPayload is the error of a call made with a nil payload: nothing is sent.
func nilPayload(action string) error {
	return fmt.Errorf("volcengine %s: nil payload: %w", action, retry.ErrInvalid)
}
