package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

type fakeVMS struct {
	add    func(context.Context, *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error)
	update func(context.Context, *messages.VMSQualification) (json.RawMessage, volcengine.Metadata, error)
}

func (f fakeVMS) AddQualification(ctx context.Context, q *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error) {
	return f.add(ctx, q)
}
func (f fakeVMS) UpdateQualification(ctx context.Context, q *messages.VMSQualification) (json.RawMessage, volcengine.Metadata, error) {
	return f.update(ctx, q)
}

type fakeSMS struct {
	apply func(context.Context, *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, volcengine.Metadata, error)
}

func (f fakeSMS) ApplySignatureIdent(ctx context.Context, p *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, volcengine.Metadata, error) {
	return f.apply(ctx, p)
}

type fakeDouyin struct {
	addRole  func(context.Context, *messages.DouyinAddRole) (messages.DouyinAddRoleResult, douyin.Metadata, error)
	getClass func(context.Context, *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error)
}

func (f fakeDouyin) AddRole(ctx context.Context, p *messages.DouyinAddRole) (messages.DouyinAddRoleResult, douyin.Metadata, error) {
	return f.addRole(ctx, p)
}
func (f fakeDouyin) GetClassAuth(ctx context.Context, p *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error) {
	return f.getClass(ctx, p)
}

func request(tb testing.TB, api messages.API, account string) *messages.Request {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", string(api)+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := messages.ParseRequest(b)
	if err != nil {
		tb.Fatal(err)
	}
	r.Account = account
	if err := r.Validate(); err != nil {
		tb.Fatal(err)
	}
	return r
}

// sentTimeout is a transport error after the request was written.
var sentTimeout = &volcengine.TransportError{Op: "POST", Err: context.DeadlineExceeded, Sent: true}

func TestDispatchRoutes(t *testing.T) {
	var called []string
	acct := dispatch.Account{
		VMS: fakeVMS{
			add: func(_ context.Context, q *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error) {
				called = append(called, "add:"+q.QualificationMainInfoFormDO.QualificationEntity)
				return messages.VMSAddResult{QualificationNo: "QUA1"}, volcengine.Metadata{RequestID: "req-add"}, nil
			},
			update: func(_ context.Context, q *messages.VMSQualification) (json.RawMessage, volcengine.Metadata, error) {
				called = append(called, "update:"+q.QualificationMainInfoFormDO.QualificationNo)
				return nil, volcengine.Metadata{RequestID: "req-upd"}, nil
			},
		},
		SMS: fakeSMS{apply: func(_ context.Context, p *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, volcengine.Metadata, error) {
			called = append(called, "sms:"+p.MaterialName)
			return messages.SMSApplyResult{ID: 9007199254740993}, volcengine.Metadata{RequestID: "req-sms"}, nil
		}},
		Douyin: fakeDouyin{
			addRole: func(_ context.Context, p *messages.DouyinAddRole) (messages.DouyinAddRoleResult, douyin.Metadata, error) {
				called = append(called, "role:"+p.EntityID)
				return messages.DouyinAddRoleResult{AddRoleTaskID: "Role_1"}, douyin.Metadata{LogID: "log-1"}, nil
			},
			getClass: func(_ context.Context, p *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error) {
				called = append(called, "class:"+p.MerchantEntityID)
				return messages.DouyinClassAuthResult{ClassAuths: []json.RawMessage{json.RawMessage(`{"industry_code":10000}`)}}, douyin.Metadata{LogID: "log-2"}, nil
			},
		},
	}
	d := dispatch.New(map[string]dispatch.Account{"default": acct})
	tests := []struct {
		api        messages.API
		call       string
		result     string
		upstreamID string
	}{
		{messages.APIVMSAddQualification, "add:北京示例科技有限公司", `{"QualificationNo":"QUA1"}`, "req-add"},
		{messages.APIVMSUpdateQualification, "update:QUA164664762128220429", `{}`, "req-upd"},
		{messages.APISMSApplySignatureIdent, "sms:示例科技短信资质", `{"id":9007199254740993,"id_string":"9007199254740993"}`, "req-sms"},
		{messages.APIDouyinAddRole, "role:E_7230706235463548989", `{"add_role_taskid":"Role_1"}`, "log-1"},
		{messages.APIDouyinGetClassAuth, "class:E_7230706235463548989", `{"class_auths":[{"industry_code":10000}]}`, "log-2"},
	}
	for _, tt := range tests {
		t.Run(string(tt.api), func(t *testing.T) {
			called = nil
			out, err := d.Dispatch(context.Background(), request(t, tt.api, ""))
			if err != nil {
				t.Fatal(err)
			}
			if len(called) != 1 || called[0] != tt.call {
				t.Fatalf("called %v, want [%s]", called, tt.call)
			}
			if string(out.Result) != tt.result || out.UpstreamRequestID != tt.upstreamID {
				t.Fatalf("outcome = %s %q, want %s %q", out.Result, out.UpstreamRequestID, tt.result, tt.upstreamID)
			}
		})
	}
}

func TestDispatchErrors(t *testing.T) {
	vendorErr := &volcengine.APIError{Code: "RequestParametersError", Message: "bad", RequestID: "req-9"}
	acct := dispatch.Account{
		VMS: fakeVMS{
			add: func(context.Context, *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error) {
				return messages.VMSAddResult{}, volcengine.Metadata{}, sentTimeout
			},
			update: func(context.Context, *messages.VMSQualification) (json.RawMessage, volcengine.Metadata, error) {
				return nil, volcengine.Metadata{RequestID: "req-9"}, vendorErr
			},
		},
		Douyin: fakeDouyin{getClass: func(context.Context, *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error) {
			return messages.DouyinClassAuthResult{}, douyin.Metadata{}, &douyin.TransportError{Op: "POST", Err: context.DeadlineExceeded, Sent: true}
		}},
	}
	d := dispatch.New(map[string]dispatch.Account{"default": acct, "vms-only": {VMS: acct.VMS}})
	tests := []struct {
		name      string
		req       *messages.Request
		wantErr   error
		wantClass retry.Class
		wantCode  string
	}{
		{"create call sent without answer is ambiguous", request(t, messages.APIVMSAddQualification, ""), retry.ErrAmbiguous, retry.ClassAmbiguous, "AmbiguousOutcome"},
		{"read call sent without answer stays transient", request(t, messages.APIDouyinGetClassAuth, ""), retry.ErrTransient, retry.ClassTransient, ""},
		{"vendor error keeps code", request(t, messages.APIVMSUpdateQualification, ""), retry.ErrPermanent, retry.ClassPermanent, "RequestParametersError"},
		{"unknown account", request(t, messages.APIVMSAddQualification, "nobody"), dispatch.ErrUnknownAccount, retry.ClassInvalid, "UnknownAccount"},
		{"no client for vendor", request(t, messages.APISMSApplySignatureIdent, "vms-only"), dispatch.ErrNoClient, retry.ClassInvalid, "NoCredentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Dispatch(context.Background(), tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			code, msg, class := dispatch.Describe(err)
			if class != tt.wantClass || code != tt.wantCode || msg == "" {
				t.Fatalf("Describe = %q %q %q, want code %q class %q", code, msg, class, tt.wantCode, tt.wantClass)
			}
		})
	}
	var amb *dispatch.AmbiguousError
	_, err := d.Dispatch(context.Background(), request(t, messages.APIVMSAddQualification, ""))
	if !errors.As(err, &amb) || errors.Is(err, retry.ErrTransient) || !errors.Is(amb.Err, context.DeadlineExceeded) {
		t.Fatalf("ambiguous error %v must keep its cause but not classify as transient", err)
	}
}

func TestDispatchNotValidated(t *testing.T) {
	r, err := messages.ParseRequest([]byte(`{"id":"a","api":"vms.add_qualification","payload":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(map[string]dispatch.Account{"default": {}})
	if _, err := d.Dispatch(context.Background(), r); !errors.Is(err, dispatch.ErrNotValidated) {
		t.Fatalf("err = %v, want ErrNotValidated", err)
	}
}

// TestGatewayTimeoutOnCreateIsAmbiguous: a bare 504, 502 or 500 may mean a
// gateway forwarded the request and gave up (or the server failed while
// handling it): ambiguous for a create call,
// transient for a read; a 503 or a vendor code is a definite answer.
func TestGatewayTimeoutOnCreateIsAmbiguous(t *testing.T) {
	var reply error
	acct := dispatch.Account{
		VMS: fakeVMS{add: func(context.Context, *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error) {
			return messages.VMSAddResult{}, volcengine.Metadata{}, reply
		}},
		Douyin: fakeDouyin{getClass: func(context.Context, *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error) {
			return messages.DouyinClassAuthResult{}, douyin.Metadata{}, reply
		}},
	}
	d := dispatch.New(map[string]dispatch.Account{"default": acct})
	tests := []struct {
		name  string
		api   messages.API
		reply error
		want  retry.Class
	}{
		{"504 create", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 504}, retry.ClassAmbiguous},
		{"502 create", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 502}, retry.ClassAmbiguous},
		{"503 create", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 503}, retry.ClassTransient},
		{"bare 500 create (the SDK would send it again)", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 500}, retry.ClassAmbiguous},
		{"500 with vendor code", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 500, Code: "InternalError"}, retry.ClassTransient},
		{"500 read", messages.APIDouyinGetClassAuth, &douyin.APIError{HTTPStatus: 500}, retry.ClassTransient},
		{"504 with vendor code", messages.APIVMSAddQualification, &volcengine.APIError{HTTPStatus: 504, Code: "SystemError"}, retry.ClassTransient},
		{"504 read", messages.APIDouyinGetClassAuth, &douyin.APIError{HTTPStatus: 504}, retry.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply = tt.reply
			_, err := d.Dispatch(context.Background(), request(t, tt.api, ""))
			if got := retry.ClassOf(err); got != tt.want {
				t.Fatalf("class %q, want %q (err %v)", got, tt.want, err)
			}
		})
	}
}
