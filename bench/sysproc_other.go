//go:build !linux

package main

import "os/exec"

// dieWithParent has no equivalent outside Linux; the bench reads /proc and
// is meant for Linux anyway. A worker also exits when its stdin closes.
func dieWithParent(*exec.Cmd) {}
