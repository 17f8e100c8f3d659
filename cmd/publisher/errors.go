package main

import "fmt"

// exitError is a quiet exit status: what went wrong is already printed.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// errHelp ends a command that printed its usage because it was asked to:
// exit status 0.
const errHelp = exitError(0)

func usagef(format string, args ...any) error {
	return fmt.Errorf("usage: "+format, args...)
}
