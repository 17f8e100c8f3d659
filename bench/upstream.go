package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The upstream is a small, fast stand-in for the three vendor hosts. It
// answers every filing call with success in the vendor's shape, so that
// qualfile's real clients accept the answers, after a configurable latency.
// It keeps no per-call record (only counters), so a run of a million calls
// costs it no memory. internal/sandbox is not used: it records every call
// with its body and keeps every qualification it issues, which a
// million-request backlog would turn into gigabytes, and it verifies each
// signature, which would put the simulator's own CPU on the driver's bill.
//
// Routes (the paths and queries of the vendors):
//
//	POST /?Action=AddQualification&Version=2022-01-01      VMS
//	POST /?Action=UpdateQualification&Version=2022-01-01   VMS
//	POST /?Action=ApplySignatureIdent&Version=2021-01-11   SMS
//	POST /api/apps/v2/token                                Douyin client_token
//	POST /auth/entity/add_role                             Douyin
//	POST /auth/entity/get_class_auth                       Douyin
type upstream struct {
	ln      net.Listener
	srv     *http.Server
	served  chan struct{}
	url     string
	latency atomic.Int64 // nanoseconds, before each filing call is answered

	calls    atomic.Int64 // filing calls answered
	tokens   atomic.Int64 // token fetches answered
	refused  atomic.Int64 // requests answered with an error (unknown route)
	newConns atomic.Int64 // TCP connections accepted (http.StateNew)
	open     atomic.Int64 // TCP connections open now
	maxOpen  atomic.Int64 // most TCP connections open at once
	seq      atomic.Int64 // request ids, qualification numbers, task ids
}

// upstreamCounts is a snapshot of the upstream's counters.
type upstreamCounts struct {
	Calls, Tokens, Refused, NewConns, MaxOpen int64
}

// sub is the difference a-b (MaxOpen is a's).
func (a upstreamCounts) sub(b upstreamCounts) upstreamCounts {
	return upstreamCounts{Calls: a.Calls - b.Calls, Tokens: a.Tokens - b.Tokens, Refused: a.Refused - b.Refused,
		NewConns: a.NewConns - b.NewConns, MaxOpen: a.MaxOpen}
}

// startUpstream listens on a free loopback port and serves until close.
func startUpstream(latency time.Duration) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u := &upstream{ln: ln, served: make(chan struct{}), url: "http://" + ln.Addr().String()}
	u.latency.Store(int64(latency))
	u.srv = &http.Server{
		Handler:           u,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute, // longer than any client's, so the client decides
		ConnState:         u.connState,
	}
	go func() {
		defer close(u.served)
		_ = u.srv.Serve(ln)
	}()
	return u, nil
}

func (u *upstream) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		u.newConns.Add(1)
		n := u.open.Add(1)
		for {
			m := u.maxOpen.Load()
			if n <= m || u.maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
	case http.StateClosed, http.StateHijacked:
		u.open.Add(-1)
	}
}

// setLatency changes the latency of the calls that arrive from now on.
func (u *upstream) setLatency(d time.Duration) { u.latency.Store(int64(d)) }

// resetMaxOpen starts counting the most open connections afresh.
func (u *upstream) resetMaxOpen() { u.maxOpen.Store(u.open.Load()) }

func (u *upstream) counts() upstreamCounts {
	return upstreamCounts{Calls: u.calls.Load(), Tokens: u.tokens.Load(), Refused: u.refused.Load(),
		NewConns: u.newConns.Load(), MaxOpen: u.maxOpen.Load()}
}

// close stops serving and closes every connection.
func (u *upstream) close() {
	_ = u.srv.Close()
	<-u.served
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the whole body, so that the connection can be reused.
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Method != http.MethodPost {
		u.refused.Add(1)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/api/apps/v2/token":
		u.tokens.Add(1)
		u.writeJSON(w, tokenReply(u.next()))
		return
	case "/auth/entity/add_role", "/auth/entity/get_class_auth":
		u.wait(r.Context())
		n := u.next()
		w.Header().Set("X-Tt-Logid", logID(n))
		if r.URL.Path == "/auth/entity/add_role" {
			u.writeJSON(w, fmt.Appendf(nil, `{"add_role_taskid":"Role_%019d","err":{"err_code":0,"err_msg":""}}`, n))
		} else {
			u.writeJSON(w, []byte(classAuthReply))
		}
		u.calls.Add(1)
		return
	case "/":
	default:
		u.refused.Add(1)
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	action, version := q.Get("Action"), q.Get("Version")
	var result []byte
	service := "vms"
	n := u.next()
	switch {
	case action == "AddQualification" && version == "2022-01-01":
		result = fmt.Appendf(nil, `{"QualificationNo":"QUA%018d"}`, n)
	case action == "UpdateQualification" && version == "2022-01-01":
		result = []byte(`{}`)
	case action == "QueryQualification" && version == "2022-01-01":
		// The records that match a create before its first call: none (every
		// bench filing is a new entity). qualfile reads them for its baseline.
		result = []byte(`{"Records":[],"Limit":100,"Offset":0,"Total":0}`)
	case action == "ApplySignatureIdent" && version == "2021-01-11":
		service = "volcSMS"
		result = strconv.AppendInt(nil, 9007199254740993+n, 10) // above 2^53, as the vendor's ids are
		result = append(append([]byte(`{"id":`), result...), '}')
	default:
		u.refused.Add(1)
		u.writeJSON(w, fmt.Appendf(nil, `{"ResponseMetadata":{"RequestId":%q,"Action":%q,"Version":%q,"Service":"vms","Region":"cn-north-1","Error":{"Code":"InvalidActionOrVersion","CodeN":100008,"Message":"Could not find operation %s for version %s."}}}`,
			volcRequestID(n), action, version, action, version), http.StatusNotFound)
		return
	}
	u.wait(r.Context())
	u.writeJSON(w, fmt.Appendf(nil, `{"ResponseMetadata":{"RequestId":%q,"Action":%q,"Version":%q,"Service":%q,"Region":"cn-north-1"},"Result":%s}`,
		volcRequestID(n), action, version, service, result))
	u.calls.Add(1)
}

func (u *upstream) next() int64 { return u.seq.Add(1) }

// wait is the configured latency, cut short when the client goes away.
func (u *upstream) wait(ctx context.Context) {
	d := time.Duration(u.latency.Load())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (u *upstream) writeJSON(w http.ResponseWriter, body []byte, status ...int) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if len(status) > 0 {
		w.WriteHeader(status[0])
	}
	_, _ = w.Write(body)
}

// volcRequestID is a Volcengine RequestId: a timestamp and a counter.
func volcRequestID(n int64) string {
	return time.Now().UTC().Format("20060102150405") + fmt.Sprintf("%018d", n)
}

// logID is a Douyin X-Tt-Logid.
func logID(n int64) string {
	return time.Now().UTC().Format("20060102150405") + fmt.Sprintf("BENCH%012d", n)
}

// tokenReply is the Douyin client_token answer: a token valid for 2 hours.
func tokenReply(n int64) []byte {
	return fmt.Appendf(nil, `{"err_no":0,"err_tips":"success","data":{"access_token":"bench-token-%016x","expires_in":7200}}`, n)
}

// classAuthReply is a get_class_auth answer with one approved institution
// class auth, in the shape of the vendor's page.
const classAuthReply = `{"class_auths":[{"industry_class":{"first_class":40000,"second_class":40600,"third_class":0},` +
	`"industry_code":10000,"industry_role":2,` +
	`"online_qualification":{"audit_status":2,"audit_taskid":"7179078900000000001","audit_reason":"","expire_time":4102444800,"qualifications":[]},` +
	`"audit_qualification":{},"institution":{"record_name":"bench","scene_type":1,"subject_type":1,"logo_uri":"","trademark_uri":"","desc":"bench"},"partner":{}}],` +
	`"err":{"err_code":0,"err_msg":""}}`

// errUpstreamRefused is the error of a run during which the upstream
// answered a request with an error (an unknown route or action).
var errUpstreamRefused = errors.New("the upstream refused a call")
