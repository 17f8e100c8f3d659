package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultAccount is the credential profile of a request that names none.
const DefaultAccount = "default"

// Envelope limits.
const (
	MaxIDLen          = 128
	MaxAccountLen     = 64
	MaxReplyToLen     = 256
	MaxMetadataKeys   = 32
	MaxMetadataKeyLen = 64
	MaxMetadataValLen = 1024
)

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
	accountPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// Request is the envelope published on filing.request.<api>.
type Request struct {
	ID          string            `json:"id"`
	API         API               `json:"api"`
	Account     string            `json:"account,omitempty"`
	ReplyTo     string            `json:"reply_to,omitempty"`
	SubmittedAt time.Time         `json:"submitted_at,omitzero"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Payload     json.RawMessage   `json:"payload"`

	// decodeProblems are the envelope fields ParseRequest could not read;
	// Validate reports them with everything else.
	decodeProblems []FieldError
	typed          any
	tree           any // the payload as decoded by Validate, until redacted
	redacted       json.RawMessage
}

// ParseRequest reads an envelope. It fails with a *DecodeError only when data
// is not a JSON object at all (such a message is dead-lettered); a field of
// the wrong type is kept as a problem that Validate reports, so the sender
// gets a rejected result naming it.
func ParseRequest(data []byte) (*Request, error) {
	if !utf8.Valid(data) {
		return nil, &DecodeError{Reason: "not valid UTF-8"}
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, &DecodeError{Reason: "empty message"}
	}
	if trimmed[0] != '{' {
		return nil, &DecodeError{Reason: "not a JSON object"}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, &DecodeError{Reason: "not a JSON object: " + jsonProblem(err)}
	}
	var p problems
	r := &Request{}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[key]
		isNull := bytes.Equal(raw, []byte("null"))
		switch key {
		case "id":
			decodeField(&p, key, raw, &r.ID)
		case "api":
			decodeField(&p, key, raw, &r.API)
		case "account":
			decodeField(&p, key, raw, &r.Account)
		case "reply_to":
			decodeField(&p, key, raw, &r.ReplyTo)
		case "submitted_at":
			var s string
			if decodeField(&p, key, raw, &s) && s != "" {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					p.add(key, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
				} else {
					r.SubmittedAt = t
				}
			}
		case "metadata":
			decodeField(&p, key, raw, &r.Metadata)
		case "payload":
			if !isNull {
				r.Payload = raw
			}
		default:
			p.add(safeKey(key), "unknown envelope field (the vendor's fields go inside payload)")
		}
	}
	r.decodeProblems = p.list
	return r, nil
}

func decodeField(p *problems, key string, raw json.RawMessage, dst any) bool {
	if bytes.Equal(raw, []byte("null")) {
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var want string
		switch dst.(type) {
		case *map[string]string:
			want = "an object of strings"
		default:
			want = "a string"
		}
		p.add(key, "must be %s", want)
		return false
	}
	return true
}

// AccountOrDefault is the request's credential profile.
func (r *Request) AccountOrDefault() string {
	if r.Account == "" {
		return DefaultAccount
	}
	return r.Account
}

// Fingerprint identifies a request for the ledger: a reuse of its id with
// another api, account or payload is told apart by it. Payloads are
// compared as they were published, byte for byte.
func (r *Request) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(r.API))
	h.Write([]byte{0})
	h.Write([]byte(r.AccountOrDefault()))
	h.Write([]byte{0})
	h.Write(r.Payload)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// MsgID is the Nats-Msg-Id to publish a request of tenant with: a digest
// of the tenant, its id and its fingerprint, so that the request stream
// drops an identical copy but not a changed request sent again under the
// same id (a resubmission), nor another tenant's request under the same
// id; and so that the stream's last message id, which any publisher can
// learn from a refused expectation, names no request.
func (r *Request) MsgID(tenant string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + r.ID + "\x00" + r.Fingerprint()))
	return "r:" + hex.EncodeToString(sum[:16])
}

// Validate checks the envelope and the payload against every rule and
// returns a *ValidationError listing all problems.
func (r *Request) Validate() error { return r.ValidateFor("") }

// ValidateFor is Validate for a request received on the subject of
// subjectAPI: the envelope's api must match it, and its reply_to, if any,
// must start with one of the receiver's replyTo prefixes, if it names any.
func (r *Request) ValidateFor(subjectAPI API, replyTo ...string) error {
	p := problems{list: append([]FieldError(nil), r.decodeProblems...)}
	switch {
	case r.ID == "":
		if !p.has("id") {
			p.add("id", "required")
		}
	case len(r.ID) > MaxIDLen:
		p.add("id", "is %d characters long, at most %d allowed", len(r.ID), MaxIDLen)
	case !idPattern.MatchString(r.ID):
		p.add("id", "may hold only letters, digits and . _ : -")
	}
	apiOK := false
	switch {
	case r.API == "":
		if !p.has("api") {
			p.add("api", "required: one of %s", apiList())
		}
	case !r.API.Valid():
		p.add("api", "unknown api %q: must be one of %s", Truncate(string(r.API), 64), apiList())
	case subjectAPI != "" && r.API != subjectAPI:
		p.add("api", "is %q but the request was published on the subject of %q", r.API, Truncate(string(subjectAPI), 64))
	default:
		apiOK = true
	}
	if r.Account != "" && (len(r.Account) > MaxAccountLen || !accountPattern.MatchString(r.Account)) {
		p.add("account", "must be at most %d letters, digits and . _ -", MaxAccountLen)
	}
	switch {
	case r.ReplyTo == "":
	case !validSubject(r.ReplyTo):
		p.add("reply_to", "must be a NATS subject without wildcards or spaces, at most %d characters", MaxReplyToLen)
	case len(replyTo) > 0 && !slices.ContainsFunc(replyTo, func(prefix string) bool { return strings.HasPrefix(r.ReplyTo, prefix+".") }):
		p.add("reply_to", "must be a subject under %s (an inbox qualfile replies to)", Truncate(strings.Join(replyTo, " or "), 200))
	}
	if len(r.Metadata) > MaxMetadataKeys {
		p.add("metadata", "has %d keys, at most %d allowed", len(r.Metadata), MaxMetadataKeys)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
		switch {
		case k == "" || len(k) > MaxMetadataKeyLen:
			p.add("metadata", "keys must be 1 to %d characters long", MaxMetadataKeyLen)
		case len(r.Metadata[k]) > MaxMetadataValLen:
			p.add("metadata."+safeKey(k), "is longer than %d bytes", MaxMetadataValLen)
		}
	}
	switch {
	case len(r.Payload) == 0:
		p.add("payload", "required: the vendor's request body")
	case apiOK:
		typed, tree, err := decodePayload(r.API, r.Payload, "payload")
		if ve, ok := err.(*ValidationError); ok {
			p.list = append(p.list, ve.Fields...)
		} else if err == nil {
			r.typed, r.tree = typed, tree
		}
	}
	return p.err()
}

// Typed returns the payload decoded by a successful Validate:
// *VMSQualification, *SMSApplySignatureIdent, *DouyinAddRole or
// *DouyinGetClassAuth; nil before that.
func (r *Request) Typed() any { return r.typed }

// RedactedPayload is Redact(r.Payload), computed once, from the payload
// Validate decoded when there is one.
func (r *Request) RedactedPayload() json.RawMessage {
	switch {
	case r.redacted != nil:
	case r.tree != nil:
		r.redacted, r.tree = mustMarshal(redactValue(r.tree, 0)), nil
	default:
		r.redacted = Redact(r.Payload)
	}
	return r.redacted
}

func apiList() string {
	names := make([]string, len(apis))
	for i, a := range apis {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

func validSubject(s string) bool {
	if len(s) > MaxReplyToLen || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == '*' || r == '>' || r == 0x7f }) < 0
}

// ValidReplySubject reports whether s may be used as a reply subject: a
// NATS subject without wildcards or spaces, at most MaxReplyToLen long.
func ValidReplySubject(s string) bool { return s != "" && utf8.ValidString(s) && validSubject(s) }
