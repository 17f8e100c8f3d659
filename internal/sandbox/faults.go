package sandbox

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// isRead reports whether api names one of the sandbox's read calls.
func isRead(api messages.API) bool {
	return api == QueryQualificationAPI || api == SignatureIdentListAPI
}

// Fault is an injected misbehaviour. See the package documentation for how
// it answers.
type Fault struct {
	// API is the call the fault applies to: one of the five APIs or the two
	// reads, "" for any of these, or TokenAPI for the token endpoint.
	API messages.API `json:"api"`
	// Code is the vendor code to answer: a Volcengine Error.Code (e.g.
	// "SystemError", "1999", "FlowLimitExceeded") or a Douyin err_code in
	// decimal (e.g. "28001005").
	Code string `json:"code,omitempty"`
	// HTTPStatus is the status answered; default 200.
	HTTPStatus int `json:"http_status,omitempty"`
	// Count is how many matching calls the fault answers; 0 with Fraction 0
	// means every matching call until cleared.
	Count int `json:"count,omitempty"`
	// Fraction is the probability (0..1) that a matching call is answered
	// by the fault.
	Fraction float64 `json:"fraction,omitempty"`
	// Latency is waited before answering; in JSON a Go duration string
	// such as "2s".
	Latency time.Duration `json:"-"`
}

// faultFields is Fault without its methods, so that faultJSON can embed it.
type faultFields Fault

type faultJSON struct {
	faultFields
	Latency string `json:"latency,omitempty"`
}

// MarshalJSON writes Latency as a Go duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{faultFields: faultFields(f)}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes. Unknown fields are errors.
func (f *Fault) UnmarshalJSON(data []byte) error {
	var j faultJSON
	if err := strictJSON(data, &j); err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	*f = Fault(j.faultFields)
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("fault: latency: %w", err)
		}
		f.Latency = d
	}
	return nil
}

// Validate reports what is wrong with f, if anything.
func (f Fault) Validate() error {
	var errs []error
	if f.API != "" && f.API != TokenAPI && !f.API.Valid() && !isRead(f.API) {
		errs = append(errs, fmt.Errorf("api %q is not one of the five calls, a read (%q, %q), %q or empty", f.API, QueryQualificationAPI, SignatureIdentListAPI, TokenAPI))
	}
	if f.HTTPStatus != 0 && (f.HTTPStatus < 100 || f.HTTPStatus > 599) {
		errs = append(errs, fmt.Errorf("http_status %d is not an HTTP status", f.HTTPStatus))
	}
	if f.Count < 0 {
		errs = append(errs, errors.New("count must not be negative"))
	}
	if !(f.Fraction >= 0 && f.Fraction <= 1) {
		errs = append(errs, errors.New("fraction must be between 0 and 1"))
	}
	if f.Latency < 0 {
		errs = append(errs, errors.New("latency must not be negative"))
	}
	return errors.Join(errs...)
}

// InjectedFault is an active fault with its id and the number of calls it
// has answered so far.
type InjectedFault struct {
	ID    int   `json:"id"`
	Fault Fault `json:"fault"`
	Hits  int   `json:"hits"`
}

type faultEntry struct {
	id   int
	f    Fault
	hits int
}

func (e *faultEntry) matches(api messages.API) bool {
	if e.f.API == "" {
		return api.Valid() || isRead(api)
	}
	return e.f.API == api
}

// Inject adds a fault and returns its id. A fault that does not Validate is
// clamped: negative values become 0 and Fraction is limited to 0..1.
func (s *Server) Inject(f Fault) int {
	f.Count, f.Latency = max(f.Count, 0), max(f.Latency, 0)
	if !(f.Fraction > 0) { // also NaN
		f.Fraction = 0
	}
	f.Fraction = min(f.Fraction, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultSeq++
	s.faults = append(s.faults, &faultEntry{id: s.faultSeq, f: f})
	return s.faultSeq
}

// RemoveFault removes the fault with id and reports whether it was active.
func (s *Server) RemoveFault(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.faults)
	s.faults = slices.DeleteFunc(s.faults, func(e *faultEntry) bool { return e.id == id })
	return len(s.faults) < n
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults lists the active faults in the order they are tried.
func (s *Server) Faults() []InjectedFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InjectedFault, len(s.faults))
	for i, e := range s.faults {
		out[i] = InjectedFault{ID: e.id, Fault: e.f, Hits: e.hits}
	}
	return out
}

// pickFault returns the first fault that fires for a call of api, using up
// one of its Count.
func (s *Server) pickFault(api messages.API) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.faults {
		if !e.matches(api) {
			continue
		}
		if e.f.Fraction > 0 && e.f.Fraction < 1 && s.rng.Float64() >= e.f.Fraction {
			continue
		}
		e.hits++
		if e.f.Count > 0 && e.hits >= e.f.Count {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		return e.f, true
	}
	return Fault{}, false
}

// volcCodeN is the CodeN of the Volcengine common error codes.
var volcCodeN = map[string]int64{
	"MissingParameter":           100002,
	"MissingAuthenticationToken": 100003,
	"MissingRequestInfo":         100004,
	"MissingSignature":           100005,
	"InvalidTimestamp":           100006,
	"ServiceNotFound":            100007,
	"InvalidActionOrVersion":     100008,
	"InvalidAccessKey":           100009,
	"SignatureDoesNotMatch":      100010,
	"LackPolicy":                 100012,
	"AccessDenied":               100013,
	"InternalError":              100014,
	"FailToConnect":              100015,
	"InternalServiceTimeout":     100016,
}

// volcMessages are the Error.Message of the codes a fault may answer.
var volcMessages = map[string]string{
	"SystemError":              "系统错误",
	"InternalServiceFailed":    "The internal service error",
	"1999":                     "系统错误",
	"1001":                     "参数错误",
	"1023":                     "no permission",
	"InternalError":            "Service has some internal Error. Pls Contact With Admin.",
	"InternalServiceError":     "Service has some internal Error. Pls Contact With Admin.",
	"InternalServiceTimeout":   "Internal Service is timeout. Pls Contact With Admin.",
	"ServiceUnavailableTemp":   "Service is unavailable temporarily.",
	"FlowLimitExceeded":        "Request was denied due to flow limit exceeded.",
	"AccountFlowLimitExceeded": "Request was denied due to account flow limit exceeded.",
	"AccessDenied":             "User is not authorized to perform this operation.",
	"LackPolicy":               "Request was rejected because of lack of policy.",
	"RequestParametersError":   "request parameters error",
}

// Douyin platform codes the sandbox answers or knows a message for.
const (
	douyinSystemBusy     = 28001005
	douyinTokenInvalid   = 28001003
	douyinInvalidParam   = 28001007
	douyinTokenExpired   = 28001008
	tokenErrSystem       = -1
	tokenErrBadParams    = 40014
	tokenErrBadAppID     = 40015
	tokenErrBadSecret    = 40017
	tokenErrBadGrantType = 40020
)

var douyinMessages = map[int64]string{
	-1:       "system error",
	28001003: "access_token invalid",
	28001005: "system busy",
	28001006: "network error",
	28001007: "invalid parameter",
	28001008: "access_token expired",
	28001014: "capability not granted",
	28001016: "app banned",
	28001018: "capability not granted",
	28001019: "capability banned",
	28001052: "risk control",
	28001056: "api retired",
	28003017: "quota exhausted",
	28003018: "request rate too high",
	40014:    "bad params",
	40015:    "bad appid",
	40017:    "bad secret",
	40020:    "bad grant_type",
}

// douyinFaultCode turns a fault code into a Douyin code and message; a
// non-numeric code becomes fallback.
func douyinFaultCode(code string, fallback int64) (int64, string) {
	n, err := strconv.ParseInt(code, 10, 64)
	if err != nil {
		msg := douyinMessages[fallback]
		return fallback, fmt.Sprintf("%s (sandbox fault %s)", msg, code)
	}
	return n, cmp.Or(douyinMessages[n], "sandbox: injected fault "+code)
}
