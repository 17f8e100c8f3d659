package messages

import (
	"bytes"
	"fmt"
)

// NewPayload returns a pointer to the empty typed payload of api, or nil for
// an unknown api.
func NewPayload(api API) any {
	switch api {
	case APIVMSAddQualification, APIVMSUpdateQualification:
		return new(VMSQualification)
	case APISMSApplySignatureIdent:
		return new(SMSApplySignatureIdent)
	case APIDouyinAddRole:
		return new(DouyinAddRole)
	case APIDouyinGetClassAuth:
		return new(DouyinGetClassAuth)
	}
	return nil
}

// DecodePayload decodes raw as the payload of api, checks its shape (unknown
// fields, wrong JSON types) and every rule of the vendor's page, and returns
// the typed payload (*VMSQualification, *SMSApplySignatureIdent,
// *DouyinAddRole or *DouyinGetClassAuth). Problems come back together in a
// *ValidationError whose field paths start with prefix ("payload" for an
// envelope; "" for a bare vendor body).
func DecodePayload(api API, raw []byte, prefix string) (any, error) {
	v, _, err := decodePayload(api, raw, prefix)
	return v, err
}

// decodePayload is DecodePayload that also returns the decoded document,
// for redaction to reuse.
func decodePayload(api API, raw []byte, prefix string) (any, any, error) {
	var p problems
	v := NewPayload(api)
	if v == nil {
		p.add(join(prefix, ""), "unknown api %q", api)
		return nil, nil, p.err()
	}
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		p.add(orRoot(prefix), "required")
		return nil, nil, p.err()
	}
	// checkShape fills v from the document, decoded once, leaving out what
	// breaks the shape (already a problem).
	tree, ok := checkShape(&p, prefix, v, raw)
	if !ok {
		return nil, nil, p.err()
	}
	validatePayload(&p, prefix, api, v)
	if err := p.err(); err != nil {
		return v, nil, err
	}
	return v, tree, nil
}

func orRoot(prefix string) string {
	if prefix == "" {
		return "$"
	}
	return prefix
}

// join builds a JSON path.
func join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func index(prefix string, i int) string { return fmt.Sprintf("%s[%d]", prefix, i) }
