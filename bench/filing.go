package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// reference is the work of one filing in the plain and Watermill
// pipelines, the same in both: decode the request and validate it with
// qualfile's own parser and rules (the messages package), POST the vendor body
// to the upstream with one shared http.Client, and encode a result. It has
// none of qualfile's guarantees: no ledger, no signature, no audit trail.
type reference struct {
	subjects messages.Subjects
	http     *http.Client
	upstream string
}

func newReference(prefix, upstream string, concurrency int) *reference {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency // one idle connection per handler: each is reused
	return &reference{
		subjects: messages.Subjects{Prefix: prefix},
		http:     &http.Client{Transport: tr, Timeout: 10 * time.Second},
		upstream: upstream,
	}
}

// volcReply is the part of a Volcengine reply the reference reads.
type volcReply struct {
	ResponseMetadata struct {
		RequestID string `json:"RequestId"`
		Error     *struct {
			Code    string `json:"Code"`
			Message string `json:"Message"`
		} `json:"Error"`
	} `json:"ResponseMetadata"`
	Result json.RawMessage `json:"Result"`
}

// errUnsupported is the error of a request the reference cannot file: it
// only speaks vms.add_qualification, the api of every bench request.
var errUnsupported = errors.New("the reference pipeline files vms.add_qualification only")

// file handles one request received on subject and returns the subject and
// body of its result. An error is worth retrying (the upstream failed);
// an invalid request is a rejected result, not an error.
func (f *reference) file(ctx context.Context, subject string, data []byte) (string, []byte, error) {
	req, res, err := f.check(subject, data)
	if err != nil {
		return "", nil, err
	}
	if res.Status == "" {
		if err := f.call(ctx, req, &res); err != nil {
			return "", nil, err
		}
	}
	res.CompletedAt = time.Now().UTC()
	out, err := json.Marshal(res)
	if err != nil {
		return "", nil, err
	}
	return f.subjects.Result(res.API), out, nil
}

// check decodes and validates a request received on subject: res is its
// outcome when that is decided without a call (rejected, unsupported),
// and has no status when the vendor is to be called.
func (f *reference) check(subject string, data []byte) (*messages.Request, messages.Result, error) {
	api, ok := f.subjects.APIFromRequestSubject(subject)
	if !ok {
		return nil, messages.Result{}, fmt.Errorf("not a request subject: %q", subject)
	}
	res := messages.Result{API: api, ReceivedAt: time.Now().UTC()}
	req, err := messages.ParseRequest(data)
	if err == nil {
		res.RequestID, res.Account, res.Metadata = req.ID, req.AccountOrDefault(), req.Metadata
		err = req.ValidateFor(api)
	}
	var ve *messages.ValidationError
	switch {
	case errors.As(err, &ve):
		res.Status = messages.StatusRejected
		res.Error = &messages.ResultError{Code: "InvalidRequest", Message: "the request breaks the rules listed in fields", Class: messages.ClassInvalid, Fields: ve.Fields}
	case err != nil:
		res.Status = messages.StatusRejected
		res.Error = &messages.ResultError{Code: "InvalidRequest", Message: err.Error(), Class: messages.ClassInvalid}
	case api != messages.APIVMSAddQualification:
		res.Status = messages.StatusFailed
		res.Error = &messages.ResultError{Code: "Unsupported", Message: errUnsupported.Error(), Class: messages.ClassPermanent}
	}
	return req, res, nil
}

// call files req with the vendor and records its answer in res.
func (f *reference) call(ctx context.Context, req *messages.Request, res *messages.Result) error {
	reply, err := f.post(ctx, "AddQualification", "2022-01-01", req.Payload)
	if err != nil {
		return err
	}
	res.Status, res.Attempts = messages.StatusSucceeded, 1
	res.Result, res.UpstreamRequestID = reply.Result, reply.ResponseMetadata.RequestID
	return nil
}

// post makes one Volcengine call and reads its reply.
func (f *reference) post(ctx context.Context, action, version string, body []byte) (*volcReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.upstream+"/?Action="+action+"&Version="+version, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	var reply volcReply
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d, unreadable reply: %w", action, resp.StatusCode, err)
	}
	if e := reply.ResponseMetadata.Error; e != nil {
		return nil, fmt.Errorf("%s: %s: %s", action, e.Code, e.Message)
	}
	if resp.StatusCode != http.StatusOK || len(reply.Result) == 0 {
		return nil, fmt.Errorf("%s: HTTP %d without a Result", action, resp.StatusCode)
	}
	return &reply, nil
}
