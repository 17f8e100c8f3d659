package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// Reconcile reads the vendor's records back through the real clients and
// the sandbox's reads (signed, faultable like the filing calls).
func TestReconcileFindsWhatWasFiled(t *testing.T) {
	ctx := context.Background()
	for _, api := range []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent} {
		t.Run(string(api), func(t *testing.T) {
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{})
			req := loadExample(t, api)
			f, err := r.d.Reconcile(ctx, req)
			if err != nil || len(f.Records) != 0 {
				t.Fatalf("before filing: %+v, %v; want no match", f, err)
			}
			out, err := r.d.Dispatch(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			f, err = r.d.Reconcile(ctx, req)
			if err != nil || len(f.Records) != 1 {
				t.Fatalf("after filing: %+v, %v; want the one record", f, err)
			}
			if got := f.Records[0].Outcome; string(got.Result) != string(out.Result) {
				t.Errorf("found %s, the create answered %s", got.Result, out.Result)
			}
			if up := f.Records[0].Outcome.UpstreamRequestID; up == "" || up == out.UpstreamRequestID {
				t.Errorf("upstream request id %q: want the read's own", up)
			}
			if f.Records[0].ID == "" || !strings.Contains(string(out.Result), f.Records[0].ID) {
				t.Errorf("record id %q: want the number or id of %s", f.Records[0].ID, out.Result)
			}
			if n := sb.CountCalls(readAPI(api)); n != 2 {
				t.Errorf("the sandbox saw %d reads, want 2", n)
			}

			// A second filing of the same fields cannot be told apart.
			if _, err := r.d.Dispatch(ctx, req); err != nil {
				t.Fatal(err)
			}
			f, err = r.d.Reconcile(ctx, req)
			if err != nil || len(f.Records) != 2 {
				t.Fatalf("two records: %+v, %v; want 2 matches", f, err)
			}
		})
	}
}

func readAPI(api messages.API) messages.API {
	if api == messages.APIVMSAddQualification {
		return sandbox.QueryQualificationAPI
	}
	return sandbox.SignatureIdentListAPI
}

// Another entity or credit code is another filing.
func TestReconcileVMSMatchesFields(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	req := loadExample(t, messages.APIVMSAddQualification)
	if _, err := r.d.Dispatch(ctx, req); err != nil {
		t.Fatal(err)
	}
	other := requestWithPayload(t, messages.APIVMSAddQualification, func(p map[string]any) {
		p["QualificationMainInfoFormDO"].(map[string]any)["UnitSocialCreditCode"] = "91110000000000000X"
	})
	if f, err := r.d.Reconcile(ctx, other); err != nil || len(f.Records) != 0 {
		t.Errorf("another credit code: %+v, %v; want absent", f, err)
	}
}

func TestReconcileSMSMatchesFields(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	req := loadExample(t, messages.APISMSApplySignatureIdent)
	if _, err := r.d.Dispatch(ctx, req); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(map[string]any){
		"material name": func(p map[string]any) { p["materialName"] = "另一个资质" },
		"certificate name": func(p map[string]any) {
			p["businessInfo"].(map[string]any)["businessCertificateName"] = "另一家公司"
		},
	} {
		other := requestWithPayload(t, messages.APISMSApplySignatureIdent, edit)
		if f, err := r.d.Reconcile(ctx, other); err != nil || len(f.Records) != 0 {
			t.Errorf("another %s: %+v, %v; want absent", name, f, err)
		}
	}
	if f, err := r.d.Reconcile(ctx, req); err != nil || len(f.Records) != 1 {
		t.Errorf("the same fields: %+v, %v; want found", f, err)
	}
}

func TestReconcileErrors(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	tests := []struct {
		name    string
		api     messages.API
		fault   *sandbox.Fault
		wantErr error
	}{
		{"add_role has no read", messages.APIDouyinAddRole, nil, dispatch.ErrNotReconcilable},
		{"update has no read", messages.APIVMSUpdateQualification, nil, dispatch.ErrNotReconcilable},
		{"vms read down", messages.APIVMSAddQualification, &sandbox.Fault{API: sandbox.QueryQualificationAPI, Code: "SystemError"}, retry.ErrTransient},
		{"sms read down with the rest", messages.APISMSApplySignatureIdent, &sandbox.Fault{Code: "1999"}, retry.ErrTransient},
		{"vms read throttled", messages.APIVMSAddQualification, &sandbox.Fault{API: sandbox.QueryQualificationAPI, Code: "FlowLimitExceeded"}, retry.ErrThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb.ClearFaults()
			if tt.fault != nil {
				sb.Inject(*tt.fault)
			}
			_, err := r.d.Reconcile(ctx, loadExample(t, tt.api))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A bad signature is refused on a read as on any call.
func TestReconcileReadIsSigned(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{SecretAccessKey: "wrong"})
	_, err := r.d.Reconcile(context.Background(), loadExample(t, messages.APISMSApplySignatureIdent))
	if !errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("err = %v, want a permanent signature error", err)
	}
	if c := lastCall(t, sb, sandbox.SignatureIdentListAPI); c.Code != "SignatureDoesNotMatch" {
		t.Errorf("the sandbox answered %q, want SignatureDoesNotMatch", c.Code)
	}
}

// A long list is read page by page, each page paced (a rate limit's slot).
func TestReconcilePacesEachPage(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	for i := range 150 {
		req := requestWithPayload(t, messages.APISMSApplySignatureIdent, func(p map[string]any) { p["materialName"] = fmt.Sprintf("资质%03d", i) })
		if _, err := r.d.Dispatch(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	paced := 0
	f, err := r.d.ReconcilePaced(ctx, loadExample(t, messages.APISMSApplySignatureIdent), func(context.Context) error { paced++; return nil })
	if err != nil || len(f.Records) != 0 {
		t.Fatalf("%+v, %v", f, err)
	}
	if reads := sb.CountCalls(sandbox.SignatureIdentListAPI); reads != 2 || paced != 1 {
		t.Errorf("%d pages read, %d paced; want 2 pages (150 items at 100 a page), the second paced", reads, paced)
	}
}
