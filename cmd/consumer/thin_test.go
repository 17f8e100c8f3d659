package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandsStayThin: the binaries keep flags, configuration and
// signals; what they run is built by internal/consumer. No function of
// cmd/ is longer than maxCommandFunc lines.
func TestCommandsStayThin(t *testing.T) {
	const maxCommandFunc = 100
	files, err := filepath.Glob(filepath.Join("..", "*", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files under cmd/ (%v)", err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxCommandFunc {
					t.Errorf("%s: %s is %d lines, more than %d", name, fd.Name.Name, n, maxCommandFunc)
				}
			}
		}
	}
}
