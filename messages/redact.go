package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// What Redact does to the value of a field, by the field's exact name.
const (
	redactKeepLast4 = iota + 1 // ID numbers and phone numbers: all but the last 4 characters masked
	redactAll                  // names, tokens and secrets: replaced entirely
	redactFile                 // file contents: replaced by size and SHA-256
)

// Redacted is what a fully redacted value is replaced with.
const Redacted = "[redacted]"

// sensitive lists every field of the five payloads (and of the Douyin and
// Volcengine credentials) that must never reach a log or an audit event.
var sensitive = map[string]int{
	// ID numbers
	"LegalRepresentativeId": redactKeepLast4,
	"IdCardNumber":          redactKeepLast4,
	"personIDCard":          redactKeepLast4,
	"id_number":             redactKeepLast4,
	// phone numbers
	"ContactNumber": redactKeepLast4,
	"personMobile":  redactKeepLast4,
	// person names
	"LegalRepresentativeName": redactAll,
	"Name":                    redactAll,
	"personName":              redactAll,
	"legalPersonName":         redactAll,
	"name":                    redactAll,
	// file contents
	"fileContent": redactFile,
	// tokens and secrets
	"access_token":    redactAll,
	"secret":          redactAll,
	"SecretAccessKey": redactAll,
	"SessionToken":    redactAll,
	"password":        redactAll,
	"Authorization":   redactAll,
}

// Redact returns a copy of the JSON document data with ID numbers and phone
// numbers masked down to their last four characters, person names, tokens
// and secrets replaced by "[redacted]", and file contents replaced by their
// size and SHA-256. It is the one redaction used for logs and audit events.
// Data that is not JSON is replaced entirely by a note of its size.
func Redact(data []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return mustMarshal(fmt.Sprintf("[redacted: %d bytes, not JSON]", len(data)))
	}
	return mustMarshal(redactValue(tree, 0))
}

func redactValue(v any, rule int) any {
	switch v := v.(type) {
	case map[string]any:
		if rule == redactFile {
			return redactFileRef(v)
		}
		if rule != 0 {
			return Redacted // an object where a name, number or secret belongs
		}
		for k, child := range v {
			v[k] = redactValue(child, sensitive[k])
		}
		return v
	case []any:
		for i, child := range v {
			v[i] = redactValue(child, rule)
		}
		return v
	case nil:
		return nil
	}
	switch rule {
	case 0:
		return v
	case redactKeepLast4:
		if s, ok := v.(string); ok {
			return MaskKeepLast4(s)
		}
		return Redacted
	case redactFile:
		if s, ok := v.(string); ok {
			sum := sha256.Sum256([]byte(s))
			return fmt.Sprintf("[file: %d bytes, sha256:%s]", len(s), hex.EncodeToString(sum[:]))
		}
		return Redacted
	default:
		return Redacted
	}
}

// redactFileRef shows a file held in the object store as an inline file is
// shown: its size and SHA-256 (those the reference states), nothing else.
func redactFileRef(v map[string]any) any {
	sum, _ := v["sha256"].(string)
	size, _ := v["size"].(json.Number)
	if !sha256Pattern.MatchString(sum) || size == "" {
		return Redacted
	}
	return fmt.Sprintf("[file: %s bytes, sha256:%s]", size, sum)
}

// MaskKeepLast4 masks all but the last four characters of s; a value of
// eight characters or fewer keeps none.
func MaskKeepLast4(s string) string {
	r := []rune(s)
	if len(r) <= 8 {
		return strings.Repeat("*", len(r))
	}
	return strings.Repeat("*", len(r)-4) + string(r[len(r)-4:])
}

func mustMarshal(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values built from a decoded JSON tree reach here; they always encode.
		return json.RawMessage(`"[redacted: unencodable]"`)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}
