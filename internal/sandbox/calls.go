package sandbox

import (
	"encoding/json"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/qualfile/qualfile/messages"
)

// Call is one request the sandbox received on a vendor route.
type Call struct {
	// Seq numbers calls from 1 in arrival order of their answers.
	Seq int64 `json:"seq"`
	// API is the call's wire name, TokenAPI for the token endpoint, or ""
	// for a Volcengine request with an unknown Action or Version.
	API messages.API `json:"api"`
	// Time is when the request arrived (Config.Now).
	Time time.Time `json:"time"`
	// AccessKeyOrAppID is the Volcengine access key id from the
	// Authorization header, or the Douyin appid from the body.
	AccessKeyOrAppID string `json:"access_key_or_app_id,omitempty"`
	// RequestID is the id the sandbox returned: ResponseMetadata.RequestId
	// or the X-Tt-Logid header; "" when none was (a bare status).
	RequestID string `json:"request_id,omitempty"`
	// Body is the raw request body; see MarshalJSON.
	Body []byte `json:"-"`
	// Code is the vendor error code answered, "" on success: Volcengine
	// Error.Code, or the Douyin err_code / err_no in decimal.
	Code string `json:"code,omitempty"`
	// HTTPStatus is the status answered (StatusClientGone when the client
	// left during a latency fault).
	HTTPStatus int `json:"http_status"`
	// Fault is true when an injected fault answered the call.
	Fault bool `json:"fault,omitempty"`
}

// callFields is Call without its methods, so that callJSON can embed it.
type callFields Call

type callJSON struct {
	callFields
	Body       *string `json:"body,omitempty"`
	BodyBase64 []byte  `json:"body_base64,omitempty"`
}

// MarshalJSON writes the body as text ("body") when it is valid UTF-8 and
// as base64 ("body_base64") otherwise.
func (c Call) MarshalJSON() ([]byte, error) {
	j := callJSON{callFields: callFields(c)}
	if utf8.Valid(c.Body) {
		b := string(c.Body)
		j.Body = &b
	} else {
		j.BodyBase64 = c.Body
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Call) UnmarshalJSON(data []byte) error {
	var j callJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*c = Call(j.callFields)
	c.Body = j.BodyBase64
	if j.Body != nil {
		c.Body = []byte(*j.Body)
	}
	return nil
}

// record appends c, numbering it.
func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Seq = int64(len(s.calls)) + 1
	s.calls = append(s.calls, c)
}

// Calls returns a copy of every recorded call, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Body = slices.Clone(c.Body)
		out[i] = c
	}
	return out
}

// CountCalls counts the recorded calls of api (TokenAPI for the token
// endpoint); api "" counts every call.
func (s *Server) CountCalls(api messages.API) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if api == "" {
		return len(s.calls)
	}
	n := 0
	for _, c := range s.calls {
		if c.API == api {
			n++
		}
	}
	return n
}
