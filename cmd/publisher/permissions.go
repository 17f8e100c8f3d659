package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// runPermissions prints the NATS permissions of qualfile's roles.
func runPermissions(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("permissions", stdout, stderr)
	var rs []roles.Role
	fs.Func("role", "a role to print (consumer, submitter, operator, auditor; repeat it for several); default all. nats-server refuses a variable no user refers to: print only the roles you give users", func(v string) error {
		r, err := roles.Parse(v)
		if err == nil && !slices.Contains(rs, r) {
			rs = append(rs, r)
		}
		return err
	})
	var operators []string
	fs.Func("operator", "an operator's name, which the consumer records with each of its orders (repeat it for several; default one shared operator, named operator)", func(v string) error {
		if !control.ValidOperator(v) {
			return fmt.Errorf("%q: lower-case letters, digits and _, at most 64", v)
		}
		if !slices.Contains(operators, v) {
			operators = append(operators, v)
		}
		return nil
	})
	var tenants []string
	fs.Func("tenant", "a tenant whose submitter to print (repeat it for several; an empty name, or none at all, for the default tenant's, whose subjects carry none)", func(v string) error {
		if v != "" && !messages.ValidTenant(v) {
			return fmt.Errorf("%q: lower-case letters, digits and _, at most %d, not an api's first token", v, messages.MaxTenantLen)
		}
		if !slices.Contains(tenants, v) {
			tenants = append(tenants, v)
		}
		return nil
	})
	prefix := fs.String("prefix", messages.DefaultPrefix, "subject prefix")
	format := fs.String("format", "conf", "conf (a nats-server configuration file) or json (allow lists, for JWTs)")
	if err := fs.parse(args); err != nil {
		return err
	}
	s := messages.Subjects{Prefix: *prefix}
	if !prefixPattern.MatchString(*prefix) {
		return usagef("--prefix %q: one or more subject tokens of letters, digits, _ and - separated by dots", *prefix)
	}
	if len(rs) == 0 {
		rs = roles.All
	}
	switch *format {
	case "conf":
		f, err := roles.File(s, roles.Grantees(rs, operators, tenants)...)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, f)
		return err
	case "json":
		type allow struct {
			Allow []string `json:"allow"`
		}
		type perms struct {
			Role        roles.Role `json:"role"`
			Operator    string     `json:"operator,omitempty"`
			Tenant      string     `json:"tenant,omitempty"`
			InboxPrefix string     `json:"inbox_prefix"`
			Pub         allow      `json:"pub"`
			Sub         allow      `json:"sub"`
		}
		var out []perms
		for _, g := range roles.Grantees(rs, operators, tenants) {
			p, err := roles.For(g, s)
			if err != nil {
				return err
			}
			out = append(out, perms{Role: g.Role, Operator: g.Operator, Tenant: g.Tenant, InboxPrefix: p.Inbox, Pub: allow{roles.Subjects(p.Publish)}, Sub: allow{roles.Subjects(p.Subscribe)}})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return usagef("--format %q: conf or json", *format)
}

// prefixPattern is a subject prefix (as the consumer's subjects.prefix).
var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
