package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultPrefix is the subject prefix unless configured otherwise.
const DefaultPrefix = "filing"

// Stream names (DESIGN.md).
const (
	StreamRequests = "FILING_REQUESTS"
	StreamResults  = "FILING_RESULTS"
	StreamAudit    = "FILING_AUDIT"
	StreamDead     = "FILING_DEAD"
)

// Subjects names qualfile's subjects under one prefix, for one tenant.
type Subjects struct {
	Prefix string
	// Tenant names the tenant whose subjects these are: its name follows
	// the kind of subject (filing.request.<tenant>.<api>). The default
	// tenant, "", has the subjects of a deployment without tenants
	// (filing.request.<api>).
	Tenant string
}

// For is s for tenant ("": the default tenant).
func (s Subjects) For(tenant string) Subjects {
	s.Tenant = tenant
	return s
}

// kind is <prefix>.<kind>. and, for a tenant, its name and a dot.
func (s Subjects) kind(kind string) string {
	if s.Tenant == "" {
		return s.Root() + "." + kind + "."
	}
	return s.Root() + "." + kind + "." + s.Tenant + "."
}

// Tenant names are one subject token of lower-case letters, digits and _,
// at most MaxTenantLen, and never the first token of an api or of a
// breaker's events: filing.result.<tenant>.> must match no subject of the
// default tenant.
const MaxTenantLen = 32

var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_]*$`)

// ValidTenant reports whether name may name a tenant.
func ValidTenant(name string) bool {
	if len(name) > MaxTenantLen || !tenantPattern.MatchString(name) || name == "breaker" || name == "unknown" {
		return false
	}
	return !slices.Contains(vendors(), name)
}

// AccountPermitted reports whether a request on tenant's subjects may
// use account, owners naming the tenant of each configured account ("" the
// default tenant): one of its tenant's own or, for the default tenant, one
// not configured (which then fails as unknown).
func AccountPermitted(owners map[string]string, tenant, account string) bool {
	owner, known := owners[account]
	return owner == tenant && (known || tenant == "")
}

// Own are the subjects of s's tenant of one kind (request, result,
// audit, dead), as wildcards: filing.request.<tenant>.> for a tenant; for
// the default tenant, those that start with a vendor's token, or with
// "unknown" (but requests), which no tenant's name can be
// (filing.request.vms.*, ..., filing.result.unknown.*). A wildcard of
// the default tenant's never ends in '>' where a tenant's name could be
// next, so that a literal '>' in a subject it grants (a direct get's
// filter) reaches no tenant's.
func (s Subjects) Own(kind string) []string {
	if s.Tenant != "" {
		return []string{s.kind(kind) + ">"}
	}
	rest := map[string]string{"request": "*", "result": "*.*", "audit": "*.*.*", "dead": "*"}[kind]
	var out []string
	for _, vendor := range vendors() {
		out = append(out, s.kind(kind)+vendor+"."+rest)
	}
	if kind != "request" {
		out = append(out, s.kind(kind)+"unknown."+strings.TrimPrefix(rest, "*."))
	}
	return out
}

// vendors are the first tokens of the apis.
func vendors() []string {
	var out []string
	for _, a := range APIs() {
		if v, _, _ := strings.Cut(string(a), "."); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Root is the prefix in use ("filing" unless configured).
func (s Subjects) Root() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Request is filing.request.<api>.
func (s Subjects) Request(api API) string { return s.kind("request") + string(api) }

// Result is filing.result.<api>: the results of one api are on it and the
// subjects below it (ResultFor); subscribe to filing.result.<api>.>.
func (s Subjects) Result(api API) string { return s.kind("result") + string(api) }

// ResultFor is filing.result.<api>.<key>, where qualfile publishes a
// result: the key names the request (IDKey), so that every result of one
// request is found by subject (ResultOf).
func (s Subjects) ResultFor(api API, requestID string) string {
	return s.Result(api) + "." + IDKey(requestID)
}

// ResultOf are the filters of one request's results (a two-token api, or
// "unknown").
func (s Subjects) ResultOf(requestID string) []string {
	key := IDKey(requestID)
	return []string{s.kind("result") + "*.*." + key, s.kind("result") + "*." + key}
}

// Audit is filing.audit.<api>.<key>.<event>, the key naming the request
// (IDKey of its request_id), so that the events of one request are found
// by subject, server-side (AuditOf), however long the stream: the key
// comes right after the api, whose few values the server's subject index
// walks in no time, and before the event.
func (s Subjects) Audit(api API, event, requestID string) string {
	return s.kind("audit") + string(api) + "." + IDKey(requestID) + "." + event
}

// AuditOf are the filters of one request's audit events: the api is two
// tokens (vms.add_qualification), or one for "unknown".
func (s Subjects) AuditOf(requestID string) []string {
	key := IDKey(requestID)
	return []string{s.kind("audit") + "*.*." + key + ".*", s.kind("audit") + "*." + key + ".*"}
}

// IDKey is a request id as one subject token: 32 hex digits of its
// SHA-256 (an id may hold dots, which split subjects).
func IDKey(requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return hex.EncodeToString(sum[:16])
}

// Dead is filing.dead.<api>.
func (s Subjects) Dead(api API) string { return s.kind("dead") + string(api) }

// Dead-letter headers. The body of a dead letter is the original request,
// byte for byte, so that it can be replayed; a body too large for a
// message is kept in the object store, named by HeaderBodyObject.
const (
	HeaderDeadReason   = "Qualfile-Dead-Reason"
	HeaderDeadClass    = "Qualfile-Dead-Class"
	HeaderRequestID    = "Qualfile-Request-Id"
	HeaderOrigSubject  = "Qualfile-Original-Subject"
	HeaderOrigSequence = "Qualfile-Original-Sequence"
	HeaderDeliveries   = "Qualfile-Deliveries"
	HeaderDeadAt       = "Qualfile-Dead-At"
	HeaderBodyObject   = "Qualfile-Body-Object"
	HeaderBodySize     = "Qualfile-Body-Size"
	HeaderBodySHA256   = "Qualfile-Body-Sha256"
)

// DeadBodyObject names the object that keeps the body of a dead letter
// too large for a message, from the body's SHA-256 (64 hex digits) and the
// request's stream sequence, as its headers carry them (HeaderBodySHA256,
// HeaderOrigSequence): a letter can name no object but its own body's.
// ok is false when sha256Hex is not a SHA-256.
func DeadBodyObject(sha256Hex string, seq uint64) (name string, ok bool) {
	if !sha256Pattern.MatchString(sha256Hex) {
		return "", false
	}
	return "dead-" + sha256Hex[:32] + "-" + strconv.FormatUint(seq, 10), true
}

// AllRequests, AllResults, AllAudit and AllDead are the wildcards the streams bind.
func (s Subjects) AllRequests() string { return s.Root() + ".request.>" }
func (s Subjects) AllResults() string  { return s.Root() + ".result.>" }
func (s Subjects) AllAudit() string    { return s.Root() + ".audit.>" }
func (s Subjects) AllDead() string     { return s.Root() + ".dead.>" }
func (s Subjects) AllFiles() string    { return s.Root() + ".file.>" }

// Files is the prefix of s's tenant's file chunks: filing.file, or
// filing.file.<tenant>; a chunk is <Files>.<sha256>.<key>.<n>
// (files.Chunks).
func (s Subjects) Files() string { return strings.TrimSuffix(s.kind("file"), ".") }

// OwnFiles are the subjects of s's tenant's file chunks, as a wildcard:
// filing.file.<tenant>.>, or the default tenant's, of three tokens
// (filing.file.*.*.*), which no tenant's match.
func (s Subjects) OwnFiles() string {
	if s.Tenant != "" {
		return s.kind("file") + ">"
	}
	return s.kind("file") + "*.*.*"
}

// APIFromRequestSubject returns the <api> of filing.request.<api>; an api that
// is not a known one is returned as is for the caller to reject.
func (s Subjects) APIFromRequestSubject(subject string) (API, bool) {
	_, api, ok := s.ParseRequestSubject(subject)
	return api, ok
}

// ParseRequestSubject returns the tenant and the api of a request
// subject: filing.request.<api> (the default tenant, "") or
// filing.request.<tenant>.<api> (a first token that can name a tenant,
// which no api's can). An api that is not a known one is returned as is
// for the caller to reject.
func (s Subjects) ParseRequestSubject(subject string) (tenant string, api API, ok bool) {
	return s.parse("request", subject)
}

// ParseDeadSubject returns the tenant and the api of a dead letter's
// subject, as ParseRequestSubject does.
func (s Subjects) ParseDeadSubject(subject string) (tenant string, api API, ok bool) {
	return s.parse("dead", subject)
}

func (s Subjects) parse(kind, subject string) (tenant string, api API, ok bool) {
	p := s.Root() + "." + kind + "."
	if len(subject) <= len(p) || subject[:len(p)] != p {
		return "", "", false
	}
	rest := subject[len(p):]
	if t, a, found := strings.Cut(rest, "."); found && ValidTenant(t) {
		return t, API(a), true
	}
	return "", API(rest), true
}
