package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// FileContent is an SMS file's fileContent: a base64 data URI inline
// (Data), or a reference to it in the object store (Ref), for a file too
// large for a NATS message (docs/contracts.md#files-larger-than-a-message).
type FileContent struct {
	Data string
	Ref  *FileRef
}

// FileRef is a fileContent held in an object store.
type FileRef struct {
	Ref    string `json:"$ref"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// MaxFileRefSize is the largest file a reference may name (16 MiB, all a
// request's files may hold together).
const MaxFileRefSize = MaxFileContentLen

var (
	refPattern    = regexp.MustCompile(`^obj://([A-Za-z0-9_-]{1,255})/([A-Za-z0-9._=-]{1,255})$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Location is the bucket and object name of the reference, ok false when
// Ref is not of the form obj://BUCKET/NAME.
func (r FileRef) Location() (bucket, name string, ok bool) {
	m := refPattern.FindStringSubmatch(r.Ref)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// Problem says what is wrong with the reference, "" when nothing is.
func (r FileRef) Problem() string {
	var ps []string
	if _, _, ok := r.Location(); !ok {
		ps = append(ps, `$ref must be "obj://BUCKET/NAME" (letters, digits, '_', '-'; the name also '.', '=')`)
	}
	if !sha256Pattern.MatchString(r.SHA256) {
		ps = append(ps, "sha256 must be 64 lower-case hex digits")
	}
	if r.Size <= 0 || r.Size > MaxFileRefSize {
		ps = append(ps, fmt.Sprintf("size must be 1 to %d bytes", MaxFileRefSize))
	}
	return strings.Join(ps, "; ")
}

// IsZero reports whether there is no content at all.
func (c FileContent) IsZero() bool { return c.Data == "" && c.Ref == nil }

// MarshalJSON writes Data when it is there (a fetched reference included),
// else the reference.
func (c FileContent) MarshalJSON() ([]byte, error) {
	if c.Data != "" || c.Ref == nil {
		return json.Marshal(c.Data)
	}
	return json.Marshal(c.Ref)
}

// UnmarshalJSON reads a string or a reference object.
func (c *FileContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		*c = FileContent{}
		return json.Unmarshal(b, &c.Data)
	case len(b) > 0 && b[0] == '{':
		var r FileRef
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("fileContent reference: %w", err)
		}
		*c = FileContent{Ref: &r}
		return nil
	case string(b) == "null":
		*c = FileContent{}
		return nil
	}
	return errors.New("fileContent must be a data URI string or a reference object")
}

// FileSlot is one SMS file of a request, and its JSON path.
type FileSlot struct {
	Path string
	File *SMSFile
}

// Files lists the SMS files of the payload (none for the other apis), in
// a fixed order.
func (p *SMSApplySignatureIdent) Files() []FileSlot {
	var out []FileSlot
	add := func(path string, fs []SMSFile) {
		for i := range fs {
			out = append(out, FileSlot{Path: fmt.Sprintf("%s[%d]", path, i), File: &fs[i]})
		}
	}
	if b := p.BusinessInfo; b != nil && b.BusinessCertificate != nil {
		out = append(out, FileSlot{Path: "payload.businessInfo.businessCertificate", File: b.BusinessCertificate})
	}
	for _, pp := range []struct {
		path string
		p    *SMSPerson
	}{{"payload.operatorPerson", p.OperatorPerson}, {"payload.responsiblePersonInfo", p.ResponsiblePersonInfo}, {"payload.legalPerson", p.LegalPerson}} {
		if pp.p != nil {
			add(pp.path+".personCertificate", pp.p.PersonCertificate)
		}
	}
	add("payload.powerOfAttorney", p.PowerOfAttorney)
	add("payload.otherMaterials", p.OtherMaterials)
	return out
}

// FileRefs are the files of a request held in an object store, not yet
// fetched.
func (r *Request) FileRefs() []FileSlot {
	p, ok := r.Typed().(*SMSApplySignatureIdent)
	if !ok {
		return nil
	}
	var out []FileSlot
	for _, s := range p.Files() {
		if s.File.FileContent.Ref != nil && s.File.FileContent.Data == "" {
			out = append(out, s)
		}
	}
	return out
}

// HasFileRefs reports whether any file of the request is (or was, before
// it was fetched) held in the object store.
func (r *Request) HasFileRefs() bool {
	p, ok := r.Typed().(*SMSApplySignatureIdent)
	if !ok {
		return false
	}
	for _, s := range p.Files() {
		if s.File.FileContent.Ref != nil {
			return true
		}
	}
	return false
}

// FillFiles puts the contents of referenced files in, by the path of their
// field (as FileRefs names them).
func (r *Request) FillFiles(contents map[string]string) {
	for _, s := range r.FileRefs() {
		if data, ok := contents[s.Path]; ok {
			s.File.FileContent.Data = data
		}
	}
}
