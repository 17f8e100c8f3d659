package messages_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

// exampleTree reads examples/<name>.json as a generic JSON tree.
func exampleTree(tb testing.TB, name string) map[string]any {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// setPath sets (or, with del, deletes) the value at a dotted path such as
// "payload.list[0].name" in tree.
func setPath(tb testing.TB, tree map[string]any, path string, value any, del bool) {
	tb.Helper()
	parts := strings.Split(path, ".")
	var cur any = tree
	for i, part := range parts {
		name, idx := part, -1
		if open := strings.Index(part, "["); open >= 0 {
			name = part[:open]
			n, err := strconv.Atoi(strings.TrimSuffix(part[open+1:], "]"))
			if err != nil {
				tb.Fatalf("bad path %q", path)
			}
			idx = n
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			tb.Fatalf("path %q: %q is not an object", path, name)
		}
		last := i == len(parts)-1
		if idx < 0 {
			if last {
				if del {
					delete(obj, name)
				} else {
					obj[name] = value
				}
				return
			}
			next, ok := obj[name]
			if !ok {
				next = map[string]any{}
				obj[name] = next
			}
			cur = next
			continue
		}
		arr, ok := obj[name].([]any)
		if !ok || idx >= len(arr) {
			tb.Fatalf("path %q: no item %d in %q", path, idx, name)
		}
		if last {
			if del {
				obj[name] = append(arr[:idx:idx], arr[idx+1:]...)
			} else {
				arr[idx] = value
			}
			return
		}
		cur = arr[idx]
	}
}

// problemsOf validates a request tree and returns its problems by field.
func problemsOf(tb testing.TB, tree map[string]any) map[string]string {
	tb.Helper()
	r, err := messages.ParseRequest(mustJSON(tb, tree))
	if err != nil {
		tb.Fatalf("ParseRequest: %v", err)
	}
	got := map[string]string{}
	err = r.Validate()
	if err == nil {
		return got
	}
	ve, ok := err.(*messages.ValidationError)
	if !ok {
		tb.Fatalf("Validate returned %T %v, want *ValidationError", err, err)
	}
	for _, f := range ve.Fields {
		got[f.Field] += f.Problem + ";"
	}
	return got
}

func jsonNumber(s string) json.Number { return json.Number(s) }
