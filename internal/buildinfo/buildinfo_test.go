package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Version: "v1.2.3", Commit: "1db59ec0d1a2b3c4", GoVersion: "go1.26.8"}, "qualfile v1.2.3 (commit 1db59ec0d1a2) go1.26.8"},
		{Info{Version: "(devel)", Commit: "abc", Modified: true, GoVersion: "go1.26.8"}, "qualfile (devel) (commit abc, modified) go1.26.8"},
		{Info{Version: "(devel)", GoVersion: "go1.26.8"}, "qualfile (devel) (commit unknown) go1.26.8"},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.info, got, tc.want)
		}
	}
}

func TestReadNamesGoAndAVersion(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() || i.Version == "" || !strings.HasPrefix(i.String(), "qualfile ") {
		t.Errorf("Read() = %+v", i)
	}
}
