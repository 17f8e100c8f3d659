package messages

// DefaultPrefix is the subject prefix unless configured otherwise.
const DefaultPrefix = "filing"

// Stream names (DESIGN.md).
const (
	StreamRequests = "FILING_REQUESTS"
	StreamResults  = "FILING_RESULTS"
	StreamAudit    = "FILING_AUDIT"
	StreamDead     = "FILING_DEAD"
)

// Subjects names qualfile's subjects under one prefix.
type Subjects struct {
	Prefix string
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Root is the prefix in use ("filing" unless configured).
func (s Subjects) Root() string { return s.prefix() }

// Request is filing.request.<api>.
func (s Subjects) Request(api API) string { return s.prefix() + ".request." + string(api) }

// Result is filing.result.<api>.
func (s Subjects) Result(api API) string { return s.prefix() + ".result." + string(api) }

// Audit is filing.audit.<api>.<event>.
func (s Subjects) Audit(api API, event string) string {
	return s.prefix() + ".audit." + string(api) + "." + event
}

// Dead is filing.dead.<api>.
func (s Subjects) Dead(api API) string { return s.prefix() + ".dead." + string(api) }

// AllRequests, AllResults, AllAudit and AllDead are the wildcards the streams bind.
func (s Subjects) AllRequests() string { return s.prefix() + ".request.>" }
func (s Subjects) AllResults() string  { return s.prefix() + ".result.>" }
func (s Subjects) AllAudit() string    { return s.prefix() + ".audit.>" }
func (s Subjects) AllDead() string     { return s.prefix() + ".dead.>" }

// APIFromRequestSubject returns the <api> of filing.request.<api>; an api that
// is not a known one is returned as is for the caller to reject.
func (s Subjects) APIFromRequestSubject(subject string) (API, bool) {
	p := s.prefix() + ".request."
	if len(subject) <= len(p) || subject[:len(p)] != p {
		return "", false
	}
	return API(subject[len(p):]), true
}
