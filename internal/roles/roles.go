// Package roles says what each of qualfile's NATS users may do, for any
// subject prefix: the one source of the permissions that
// deploy/nats/permissions.conf holds for the default prefix and that
// `publisher permissions` prints for any other.
//
// Four roles:
//   - the consumer owns every stream, bucket and the work-queue durable: it
//     alone pulls requests and writes the ledger, the results, the audit
//     stream, the dead letters, the tokens and the rate slots;
//   - a submitter sends requests (and their large files) and reads results;
//   - an operator reads dead letters, trails and results, and asks the
//     consumer to replay or remove a dead letter or resolve a filing, on a
//     control subject that carries the operator's name (control.Subject);
//   - an auditor reads trails, results and dead letters, and changes
//     nothing.
//
// Each role's connections use an inbox prefix of their own (Inbox), and may
// subscribe to nothing else: no role reads another's replies (the consumer's
// pulled requests, KV answers and tokens arrive on its inbox).
package roles

import (
	"fmt"
	"slices"
	"strings"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// Role names a NATS user of qualfile.
type Role string

// The roles.
const (
	Consumer  Role = "consumer"
	Submitter Role = "submitter"
	Operator  Role = "operator"
	Auditor   Role = "auditor"
)

// All are the roles, in the order they are printed.
var All = []Role{Consumer, Submitter, Operator, Auditor}

// Parse returns the role named s.
func Parse(s string) (Role, error) {
	if r := Role(s); slices.Contains(All, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: %q (one of consumer, submitter, operator, auditor)", ErrUnknownRole, s)
}

// Grant is one subject a role may publish or subscribe to, and why.
type Grant struct {
	Subject string
	Why     string
}

// Permissions are a role's allow lists; anything not listed is refused by
// the server.
type Permissions struct {
	Role      Role
	Inbox     string // the inbox prefix its connections use
	Publish   []Grant
	Subscribe []Grant
}

// Inbox is the inbox prefix of a role's connections (nats.CustomInboxPrefix):
// _INBOX.<prefix>.<role>.
func Inbox(r Role, s messages.Subjects) string {
	return "_INBOX." + s.Root() + "." + string(r)
}

// DefaultOperator names the operator of permissions printed without a
// name: one identity shared by whoever holds its credentials.
const DefaultOperator = "operator"

// TenantInboxes is the prefix of the tenants' submitters' inboxes:
// _INBOX.<prefix>.tenant, each tenant's under it (TenantInbox).
func TenantInboxes(s messages.Subjects) string {
	return "_INBOX." + s.Root() + ".tenant"
}

// TenantInbox is the inbox prefix of a tenant's submitters:
// _INBOX.<prefix>.tenant.<tenant>; the default tenant's is
// Inbox(Submitter, s).
func TenantInbox(s messages.Subjects, tenant string) string {
	if tenant == "" {
		return Inbox(Submitter, s)
	}
	return TenantInboxes(s) + "." + tenant
}

// Grantee is one NATS user's part: its role, and the operator's name or
// the submitter's tenant.
type Grantee struct {
	Role     Role
	Operator string // an operator's name (DefaultOperator when empty)
	Tenant   string // a submitter's tenant ("": the default tenant)
}

// Grantees are the grantees of rs: the operator role once for each of
// operators (DefaultOperator when none), the submitter once for each of
// tenants (the default tenant when none).
func Grantees(rs []Role, operators, tenants []string) []Grantee {
	if len(operators) == 0 {
		operators = []string{DefaultOperator}
	}
	if len(tenants) == 0 {
		tenants = []string{""}
	}
	var gs []Grantee
	for _, r := range rs {
		switch r {
		case Operator:
			for _, op := range operators {
				gs = append(gs, Grantee{Role: r, Operator: op})
			}
		case Submitter:
			for _, t := range tenants {
				gs = append(gs, Grantee{Role: r, Tenant: t})
			}
		default:
			gs = append(gs, Grantee{Role: r})
		}
	}
	return gs
}

// For returns the permissions of g under the subject prefix of s. An
// operator's orders are recorded under its name; a submitter sends and
// reads its tenant's requests and results only.
func For(g Grantee, s messages.Subjects) (Permissions, error) {
	r, operator := g.Role, g.Operator
	if _, err := Parse(string(r)); err != nil {
		return Permissions{}, err
	}
	if operator == "" {
		operator = DefaultOperator
	}
	if !control.ValidOperator(operator) {
		return Permissions{}, fmt.Errorf("%w: %q (lower-case letters, digits and _, at most 64)", ErrBadOperator, operator)
	}
	if g.Tenant != "" && !messages.ValidTenant(g.Tenant) {
		return Permissions{}, fmt.Errorf("%w: %q", ErrBadTenant, g.Tenant)
	}
	s = s.For("")
	st, b := queue.StreamNames(s), queue.BucketNames(s)
	root := s.Root()
	p := Permissions{Role: r, Inbox: Inbox(r, s)}
	if r == Submitter {
		p.Inbox = TenantInbox(s, g.Tenant)
	}
	pub := func(why string, subjects ...string) {
		for _, sub := range subjects {
			p.Publish = append(p.Publish, Grant{sub, why})
		}
	}
	// read is what reading a stream takes: its info, ordered consumers
	// (created, pulled, deleted) and direct gets.
	read := func(why, stream string) {
		pub(why, "$JS.API.STREAM.INFO."+stream, "$JS.API.STREAM.MSG.GET."+stream,
			"$JS.API.DIRECT.GET."+stream, "$JS.API.DIRECT.GET."+stream+".>",
			"$JS.API.CONSUMER.CREATE."+stream+".>", "$JS.API.CONSUMER.INFO."+stream+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+stream+".>")
	}
	p.Subscribe = []Grant{{p.Inbox + ".>", "replies to this role's requests, and nothing else"}}
	switch r {
	case Consumer:
		pub("account information, which creating a bucket reads", "$JS.API.INFO")
		for _, name := range queue.LegacyBuckets {
			pub("buckets of an older version, looked for at start", "$JS.API.STREAM.INFO.KV_"+name)
		}
		own := []string{st.Requests, st.Results, st.Audit, st.Dead, st.Files, "KV_" + b.Ledger, "KV_" + b.Tokens, "KV_" + b.TokenLocks,
			"KV_" + b.Health, "KV_" + b.Rate, "OBJ_" + b.Objects}
		for _, name := range own {
			pub("its own streams and buckets: created, checked, read; their consumers",
				"$JS.API.STREAM.*."+name, "$JS.API.STREAM.MSG.*."+name, "$JS.API.DIRECT.GET."+name, "$JS.API.DIRECT.GET."+name+".>",
				"$JS.API.CONSUMER.*."+name+".>", "$JS.API.CONSUMER.MSG.NEXT."+name+".>", "$JS.API.CONSUMER.DURABLE.CREATE."+name+".>",
				"$JS.FC."+name+".>")
		}
		pub("ack, nak, term and in-progress of the requests it pulls", "$JS.ACK."+st.Requests+".>")
		pub("the ledger, the shared tokens and their locks, the health probe, the rate slots",
			"$KV."+b.Ledger+".>", "$KV."+b.Tokens+".>", "$KV."+b.TokenLocks+".>", "$KV."+b.Health+".>", "$KV."+b.Rate+".>")
		pub("dead-letter bodies too big for a message", "$O."+b.Objects+".>")
		pub("results, audit events, dead letters", root+".result.>", root+".audit.>", root+".dead.>")
		pub("a dead letter replayed by an operator's order", root+".request.>")
		pub("a result sent to a request's reply_to, which must be its tenant's submitters' inbox", Inbox(Submitter, s)+".>", TenantInboxes(s)+".>")
		pub("its reports on operators' orders", Inbox(Operator, s)+".>")
		p.Subscribe = append(p.Subscribe, Grant{root + ".control.*.*", "operators' orders, the operator named by the subject"})
	case Submitter:
		own := s.For(g.Tenant)
		pub("send its tenant's requests", own.Own("request")...)
		pub("hand over a file too large for a request, in chunks, on its tenant's subjects: it may not read, list or remove any", own.OwnFiles())
		for _, r := range own.Own("result") {
			pub("read the last result of one of its tenant's requests, by its subject", "$JS.API.DIRECT.GET."+st.Results+"."+r)
		}
	case Operator, Auditor:
		for _, stream := range []string{st.Results, st.Audit, st.Dead} {
			read("read results, trails and dead letters", stream)
		}
		pub("read the ledger (trails; a proof's entry by its sequence)", "$JS.API.STREAM.INFO.KV_"+b.Ledger, "$JS.API.STREAM.MSG.GET.KV_"+b.Ledger,
			"$JS.API.DIRECT.GET.KV_"+b.Ledger, "$JS.API.DIRECT.GET.KV_"+b.Ledger+".>")
		read("read dead-letter bodies kept in the object store", "OBJ_"+b.Objects)
		pub("flow control of those reads", "$JS.FC.OBJ_"+b.Objects+".>")
		if r == Operator {
			pub("ask the consumer to replay or remove dead letters and resolve filings, as "+operator, control.Subjects(s, operator))
		}
	}
	return p, nil
}

// Variable is the name of g's permissions' variable in a server
// configuration: FILING_CONSUMER for the consumer under "filing";
// FILING_OPERATOR_ALICE for the operator alice (FILING_OPERATOR for
// DefaultOperator); FILING_SUBMITTER_ACME for tenant acme's submitter.
// One-to-one: names and tenants are lower-case.
func (g Grantee) Variable(s messages.Subjects) string {
	v := strings.TrimSuffix(queue.StreamNames(s).Requests, "_REQUESTS") + "_" + strings.ToUpper(string(g.Role))
	switch {
	case g.Role == Operator && g.Operator != "" && g.Operator != DefaultOperator:
		v += "_" + strings.ToUpper(g.Operator)
	case g.Role == Submitter && g.Tenant != "":
		v += "_" + strings.ToUpper(g.Tenant)
	}
	return v
}

// User is the user name File suggests for g.
func (g Grantee) User() string {
	switch {
	case g.Role == Operator && g.Operator != "" && g.Operator != DefaultOperator:
		return g.Operator
	case g.Role == Submitter && g.Tenant != "":
		return "qualfile-submitter-" + g.Tenant
	}
	return "qualfile-" + string(g.Role)
}

// Conf renders p as a nats-server configuration variable named name, one
// subject a line with why it is granted.
func (p Permissions) Conf(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: its connections use the inbox prefix %s\n%s = {\n", p.Role, p.Inbox, name)
	list := func(kind string, gs []Grant) {
		fmt.Fprintf(&b, "  %s: {\n    allow: [\n", kind)
		last := ""
		for _, g := range gs {
			if g.Why != last {
				fmt.Fprintf(&b, "      # %s\n", g.Why)
				last = g.Why
			}
			fmt.Fprintf(&b, "      %q\n", g.Subject)
		}
		b.WriteString("    ]\n  }\n")
	}
	list("publish", p.Publish)
	list("subscribe", p.Subscribe)
	b.WriteString("}\n")
	return b.String()
}

// Subjects are p's subjects only (as a JWT's or nsc's allow lists take them).
func Subjects(gs []Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Subject
	}
	return out
}

// File is a nats-server configuration file of the permissions of gs
// under the prefix of s (deploy/nats/permissions.conf for the default
// prefix and Grantees(All, nil, nil)), with how to use it.
func File(s messages.Subjects, gs ...Grantee) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `# The NATS permissions of qualfile's roles for the subject prefix %q,
# made by `+"`publisher permissions --prefix %s`"+` (do not edit: generate it again).
# Include this file in the server's configuration and give each user the
# variable of its role (nats-server refuses a variable no user refers to:
# print only the roles you use, with --role for each), e.g.:
#
#   include ./qualfile-permissions.conf
#   authorization {
#     users = [
`, s.Root(), s.Root())
	for _, g := range gs {
		fmt.Fprintf(&b, "#       { user: %s, password: $%s_PASSWORD, permissions: $%s }\n", g.User(), strings.ToUpper(strings.ReplaceAll(g.User(), "-", "_")), g.Variable(s))
	}
	b.WriteString(`#     ]
#   }
#
# (or the same lists in the users' JWTs: ` + "`publisher permissions --format json`" + `).
# Each role's connections must use its inbox prefix (nats.CustomInboxPrefix;
# the publisher's --inbox-prefix or a nats context's inbox_prefix).
# An operator's orders are recorded under the name its permissions bind:
# give each person their own (--operator NAME, once for each). A tenant's
# submitter sends and reads that tenant's requests and results only
# (--tenant NAME, once for each; without it, the default tenant's).
`)
	for _, g := range gs {
		p, err := For(g, s)
		if err != nil {
			return "", err
		}
		b.WriteString("\n" + p.Conf(g.Variable(s)))
	}
	return b.String(), nil
}
