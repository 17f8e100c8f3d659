package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestTheExampleIsTheReference holds examples/consumer.yaml to the code:
// it names every key, shows each key's default unless its line says
// "example", and its header lists every environment variable read.
func TestTheExampleIsTheReference(t *testing.T) {
	const path = "../../examples/consumer.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{} // leaf paths, true when marked "example"
	leaves(doc.Content[0], "", false, shown)

	def, got := map[string]any{}, map[string]any{}
	flatten(reflect.ValueOf(*Default()), "", def)
	flatten(reflect.ValueOf(*loaded), "", got)
	var missing, wrong []string
	for _, key := range slices.Sorted(mapKeys(def)) {
		if strings.HasPrefix(key, "accounts") {
			continue
		}
		example, ok := shown[key]
		switch {
		case !ok:
			missing = append(missing, key)
		case !example && !same(def[key], got[key]):
			wrong = append(wrong, key)
		}
	}
	if len(missing) > 0 {
		t.Errorf("keys the example does not show: %v", missing)
	}
	if len(wrong) > 0 {
		t.Errorf("values the example shows that are not the defaults (mark them \"example\" if meant): %v", wrong)
	}

	// The environment variables read, against those the header lists.
	var read []string
	_ = Default().applyEnv(func(name string) string { read = append(read, name); return "" })
	header := strings.SplitN(string(data), "\nnats:", 2)[0]
	listed := regexp.MustCompile(`\b(?:QUALFILE_[A-Z_]+|NATS_URL)\b`).FindAllString(header, -1)
	sort.Strings(read)
	sort.Strings(listed)
	if !slices.Equal(slices.Compact(read), slices.Compact(listed)) {
		t.Errorf("the header lists %v\nthe code reads %v", listed, read)
	}
}

// leaves records the paths of n's leaves, and whether the line of each
// (or of a mapping above it) says "example".
func leaves(n *yaml.Node, path string, example bool, out map[string]bool) {
	if n.Kind != yaml.MappingNode {
		out[path] = example
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		marked := example || strings.Contains(k.LineComment+v.LineComment, "example")
		leaves(v, p, marked, out)
	}
}

// flatten records v's leaves by their YAML paths.
func flatten(v reflect.Value, path string, out map[string]any) {
	if v.Kind() != reflect.Struct || v.Type().PkgPath() == "time" {
		out[path] = v.Interface()
		return
	}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		p := tag
		if path != "" {
			p = path + "." + tag
		}
		flatten(v.Field(i), p, out)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// same is reflect.DeepEqual, but for which an empty list is no list.
func same(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() == reflect.Slice && vb.Kind() == reflect.Slice && va.Len() == 0 && vb.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
