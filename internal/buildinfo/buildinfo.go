// Package buildinfo says which qualfile a binary is: its version, the
// commit it was built from and the Go version, as `--version` prints them
// and the qualfile_build_info metric carries them.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release, set at build time with
// -ldflags "-X github.com/qualfile/qualfile/internal/buildinfo.Version=v1.2.3";
// without it, the module version Go recorded ("(devel)" in a checkout).
var Version = ""

// Info is what a binary knows of its own build.
type Info struct {
	Version   string // "v1.2.3", or "(devel)"
	Commit    string // the VCS revision, "" when unknown
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "(unknown)"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the line --version prints, e.g.
// "qualfile v1.2.3 (commit 1db59ec0d1a2, modified) go1.26.8".
func (i Info) String() string {
	commit := "commit unknown"
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		commit = "commit " + c
		if i.Modified {
			commit += ", modified"
		}
	}
	return "qualfile " + i.Version + " (" + commit + ") " + i.GoVersion
}
