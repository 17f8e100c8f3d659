package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Size limits applied to every payload before any rule: they keep a hostile
// message from costing more than it is worth.
const (
	// MaxStringLen is the longest string accepted in any field but fileContent.
	MaxStringLen = 64 << 10
	// MaxFileContentLen is the longest inline file (a base64 data URI).
	MaxFileContentLen = 16 << 20
	// MaxArrayLen is the longest array accepted in any field.
	MaxArrayLen = 1000
	// MaxDepth is the deepest nesting accepted.
	MaxDepth = 32
)

// credentialFields never belong in a payload: the client adds them from the
// account's credentials.
var credentialFields = map[string]bool{"appid": true, "access_token": true, "secret": true}

// checkShape compares the JSON in raw with the struct that v points to: every
// key must be a field of that struct spelled exactly as the vendor spells it,
// and every value must have the field's JSON type. All problems are added.
// It fills v from the document as it goes, leaving out every offending key
// and value, so that no field is filled from a key spelt in another case
// (Go's decoder would) and the rules can still report the rest: the
// document is decoded once. It returns the decoded document (numbers as
// json.Number), which redaction may reuse.
func checkShape(p *problems, prefix string, v any, raw []byte) (tree any, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		p.add(orRoot(prefix), "not valid JSON: %s", jsonProblem(err))
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		p.add(orRoot(prefix), "unexpected data after the JSON value")
		return nil, false
	}
	if !walkShape(p, orRoot(prefix), tree, reflect.ValueOf(v), 0, true) {
		return nil, false
	}
	return tree, true
}

// walkShape checks value against the type of dst and stores in dst what of
// it may be decoded. It reports whether value was stored (a null leaves dst
// as it is and counts as stored: the rules decide whether it is required).
func walkShape(p *problems, path string, value any, dst reflect.Value, depth int, root bool) bool {
	if depth > MaxDepth {
		p.add(path, "nested deeper than %d levels", MaxDepth)
		return false
	}
	if value == nil {
		return true
	}
	for dst.Kind() == reflect.Pointer {
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		dst = dst.Elem()
	}
	t := dst.Type()
	if t == fileContentType {
		return walkFileContent(p, path, value, dst)
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := value.(map[string]any)
		if !ok {
			p.add(path, "must be an object, not %s", jsonKind(value))
			return false
		}
		fields := structFields(t)
		for _, key := range sortedKeys(obj) {
			sub := childPath(path, key)
			f, ok := fields[key]
			switch {
			case ok:
				field := reflect.New(f.Type).Elem()
				if walkShape(p, sub, obj[key], field, depth+1, false) {
					dst.FieldByIndex(f.Index).Set(field)
				}
			case root && credentialFields[key]:
				p.add(sub, "must not be in the payload: the account's credentials supply it")
			default:
				p.add(sub, "unknown field%s", suggestion(key, fields))
			}
		}
		return true
	case reflect.Slice:
		arr, ok := value.([]any)
		if !ok {
			p.add(path, "must be an array, not %s", jsonKind(value))
			return false
		}
		if len(arr) > MaxArrayLen {
			p.add(path, "has %d items, at most %d allowed", len(arr), MaxArrayLen)
			return false
		}
		out := reflect.MakeSlice(t, 0, len(arr))
		for i, el := range arr {
			item := reflect.New(t.Elem()).Elem()
			if walkShape(p, index(path, i), el, item, depth+1, false) {
				out = reflect.Append(out, item)
			}
		}
		dst.Set(out)
		return true
	case reflect.String:
		s, ok := value.(string)
		if !ok {
			p.add(path, "must be a string, not %s", jsonKind(value))
			return false
		}
		limit := MaxStringLen
		if strings.HasSuffix(path, ".fileContent") {
			limit = MaxFileContentLen
		}
		if len(s) > limit {
			p.add(path, "is %d bytes long, at most %d allowed", len(s), limit)
			return false
		}
		dst.SetString(s)
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := value.(json.Number)
		if !ok {
			p.add(path, "must be an integer, not %s", jsonKind(value))
			return false
		}
		i, err := strconv.ParseInt(string(n), 10, t.Bits())
		if err != nil {
			if errors.Is(err, strconv.ErrRange) && t.Bits() == 32 {
				p.add(path, "integer %s is out of range: the vendor takes a 32-bit integer (at most 2147483647)", Truncate(string(n), 40))
			} else if errors.Is(err, strconv.ErrRange) {
				p.add(path, "integer %s is out of range", Truncate(string(n), 40))
			} else {
				p.add(path, "must be an integer, not %s", Truncate(string(n), 40))
			}
			return false
		}
		dst.SetInt(i)
		return true
	}
	// The payload types hold no other kinds (no bool, map or raw JSON).
	p.add(path, "cannot be checked")
	return false
}

var fileContentType = reflect.TypeOf(FileContent{})

// walkFileContent reads a fileContent: a data URI string (at most
// MaxFileContentLen), or a reference object {"$ref","sha256","size"}.
func walkFileContent(p *problems, path string, value any, dst reflect.Value) bool {
	switch v := value.(type) {
	case string:
		if len(v) > MaxFileContentLen {
			p.add(path, "is %d bytes long, at most %d allowed inline: store it in the object store and send a reference", len(v), MaxFileContentLen)
			return false
		}
		dst.Set(reflect.ValueOf(FileContent{Data: v}))
		return true
	case map[string]any:
		var r FileRef
		ok := true
		for _, key := range sortedKeys(v) {
			sub := childPath(path, key)
			switch key {
			case "$ref", "sha256":
				s, isStr := v[key].(string)
				if !isStr {
					p.add(sub, "must be a string, not %s", jsonKind(v[key]))
					ok = false
				} else if key == "$ref" {
					r.Ref = Truncate(s, 600)
				} else {
					r.SHA256 = Truncate(s, 100)
				}
			case "size":
				n, isNum := v[key].(json.Number)
				i, err := strconv.ParseInt(string(n), 10, 64)
				if !isNum || err != nil {
					p.add(sub, "must be an integer number of bytes")
					ok = false
				}
				r.Size = i
			default:
				p.add(sub, `unknown field of a file reference (it has "$ref", "sha256" and "size")`)
				ok = false
			}
		}
		if ok {
			dst.Set(reflect.ValueOf(FileContent{Ref: &r}))
		}
		return ok
	}
	p.add(path, "must be a data URI string or a file reference object, not %s", jsonKind(value))
	return false
}

type shapeField struct {
	Type  reflect.Type
	Index []int
}

var fieldCache sync.Map // reflect.Type → map[string]shapeField

// structFields maps each JSON name of struct t to its field.
func structFields(t reflect.Type) map[string]shapeField {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]shapeField)
	}
	m := make(map[string]shapeField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = shapeField{Type: f.Type, Index: f.Index}
	}
	fieldCache.Store(t, m)
	return m
}

// suggestion names the field a misspelt key probably meant (same letters,
// other case), since Go's decoder would otherwise accept it silently.
func suggestion(key string, fields map[string]shapeField) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return "; did you mean " + strconv.Quote(name) + "?"
		}
	}
	return ""
}

func childPath(path, key string) string {
	if path == "$" {
		return safeKey(key)
	}
	return path + "." + safeKey(key)
}

// safeKey keeps a hostile key from making a path unreadable.
func safeKey(key string) string {
	key = Truncate(key, 64)
	if key == "" || strings.ContainsAny(key, ".[]\"\\") || strings.IndexFunc(key, func(r rune) bool { return r < 0x20 }) >= 0 {
		return strconv.Quote(key)
	}
	return key
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return reflect.TypeOf(v).String()
	}
}

// jsonProblem turns a decoder error into a short plain message.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return syn.Error() + " at byte " + strconv.FormatInt(syn.Offset, 10)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
}
