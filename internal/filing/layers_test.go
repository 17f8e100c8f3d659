package filing

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"strings"
	"testing"
)

// The decision core's files: only they write its state.
var coreFiles = map[string]bool{"steps.go": true, "state.go": true, "decide.go": true, "entry.go": true,
	"calls.go": true, "results.go": true, "settlement.go": true, "lease.go": true}

// TestOnlyTheCoreWritesItsState: the runner reads the core's state but
// never writes it; what it learns goes back as an answer to
// delivery.apply. Outside the core's files, no assignment, ++ or -- goes
// through a *delivery, no & takes the address of anything in one, no
// pointer, slice or map in one is kept in a variable or appended or
// copied into, no *delivery is passed to a function, and no method of it
// is called but apply, decide and remember. (What a function does with a
// pointer passed to it, such as the request to a vendor client, is beyond
// this check.)
func TestOnlyTheCoreWritesItsState(t *testing.T) {
	const planted = `package filing
func (r *runner) planted() {
	r.d.ledger.stale = true
	d := r.d
	d.call.attempts++
	_ = &r.d.out
	r.d.dropOutcome()
	var f func(*delivery)
	f(r.d)
	e := r.d.ledger.entry
	_ = append(r.d.out.pending, e.Trail...)
}`
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	got := stateWrites(t, names, planted)
	var planted5 []string
	for _, w := range got {
		if strings.HasPrefix(w, "planted.go:") {
			planted5 = append(planted5, w)
		} else {
			t.Errorf("outside the core, %s", w)
		}
	}
	if len(planted5) != 7 {
		t.Errorf("the check finds %d of the 7 writes planted in a runner function: %q", len(planted5), planted5)
	}
}

// stateWrites type-checks the package's files (and planted, as
// planted.go) without their imports, and lists what, outside the core's
// files, writes the core's state.
func stateWrites(t *testing.T, names []string, planted string) []string {
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	f, err := parser.ParseFile(fset, "planted.go", planted, 0)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, f)
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{Importer: noImports{}, Error: func(error) {}} // the imports' types are unknown: no matter here
	pkg, _ := conf.Check("filing", fset, files, info)
	state := pkg.Scope().Lookup("delivery").Type()
	isState := func(e ast.Expr) bool {
		tv := info.Types[e]
		if p, ok := tv.Type.(*types.Pointer); ok {
			return types.Identical(p.Elem(), state)
		}
		return tv.Type != nil && types.Identical(tv.Type, state)
	}
	// through reports whether e reaches into a *delivery: a selector,
	// index or dereference of one.
	through := func(e ast.Expr) bool {
		for {
			switch x := e.(type) {
			case *ast.SelectorExpr:
				e = x.X
			case *ast.IndexExpr:
				e = x.X
			case *ast.StarExpr:
				e = x.X
			case *ast.ParenExpr:
				e = x.X
			default:
				return false
			}
			if isState(e) {
				return true
			}
		}
	}
	// The core's struct fields that hold a pointer, slice or map, by name
	// (their types may come from imports, which the check cannot load).
	sharedFields := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if st, ok := n.(*ast.StructType); ok && coreFiles[filepath.Base(fset.Position(st.Pos()).Filename)] {
				for _, fd := range st.Fields.List {
					switch t := fd.Type.(type) {
					case *ast.StarExpr, *ast.MapType:
					case *ast.ArrayType:
						if t.Len != nil {
							continue
						}
					default:
						continue
					}
					for _, name := range fd.Names {
						sharedFields[name.Name] = true
					}
				}
			}
			return true
		})
	}
	var writes []string
	note := func(n ast.Node, what string) {
		writes = append(writes, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), what))
	}
	for _, f := range files {
		if coreFiles[filepath.Base(fset.Position(f.Pos()).Filename)] {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					if n.Tok != token.DEFINE && through(lhs) {
						note(n, "an assignment to the core's state")
					}
				}
				for _, rhs := range n.Rhs {
					if through(rhs) && (sharesMemory(info.Types[rhs].Type) || sharedFields[lastName(rhs)]) {
						note(n, "a pointer, slice or map of the core's state kept in a variable")
					}
				}
			case *ast.IncDecStmt:
				if through(n.X) {
					note(n, "an assignment to the core's state")
				}
			case *ast.UnaryExpr:
				if n.Op == token.AND && (isState(n.X) || through(n.X)) {
					note(n, "the address of the core's state")
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && isState(sel.X) && sel.Sel.Name != "apply" && sel.Sel.Name != "decide" && sel.Sel.Name != "remember" {
					note(n, "a call of "+sel.Sel.Name+", not one of the core's entry points")
				}
				for i, arg := range n.Args {
					if isState(arg) {
						note(n, "the core's state passed to a function")
					}
					if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "append" || id.Name == "copy") && i == 0 && through(arg) {
						note(n, id.Name+" into the core's state")
					}
				}
			}
			return true
		})
	}
	return writes
}

// sharesMemory reports whether a value of type t shares memory with the
// one it was copied from: a pointer, slice or map.
func sharesMemory(t types.Type) bool {
	if t == nil {
		return false
	}
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Slice, *types.Map:
		return true
	}
	return false
}

// lastName is the name a selector ends with ("" for anything else).
func lastName(e ast.Expr) string {
	if sel, ok := e.(*ast.SelectorExpr); ok {
		return sel.Sel.Name
	}
	return ""
}

type noImports struct{}

func (noImports) Import(path string) (*types.Package, error) {
	p := types.NewPackage(path, filepath.Base(path))
	p.MarkComplete()
	return p, nil
}
