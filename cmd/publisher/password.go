package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// runHashPassword reads a password from stdin (its first line) and prints
// its bcrypt hash, for a console user's password_hash.
func runHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("hash-password", stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 12 {
		return usagef("the password (stdin's first line) must be at least 12 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(h))
	return nil
}
