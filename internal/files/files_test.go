package files_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

func store(t *testing.T) jetstream.ObjectStore {
	t.Helper()
	js, _, _ := natstest.JetStream(t)
	os, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "FILING_FILES"})
	if err != nil {
		t.Fatal(err)
	}
	return os
}

// smsRequest is the SMS example with a business certificate of size bytes.
func smsRequest(t *testing.T, size int) (envelope map[string]any, content string) {
	t.Helper()
	raw := []byte(`{"id":"f-1","api":"sms.apply_signature_ident","payload":{"materialName":"示例","purpose":1,
"businessInfo":{"businessCertificateType":0,"businessCertificate":{"fileType":0,"fileSuffix":"png","fileContent":"X"},
"businessCertificateName":"北京示例科技有限公司","unifiedSocialCreditIdentifier":"91110108MA01ABCDE1",
"businessCertificateValidityPeriodStart":"2020-01-01","businessCertificateValidityPeriodEnd":"2040-01-01","legalPersonName":"张三"},
"operatorPerson":{"certificateType":0,"personCertificate":[{"fileType":0,"fileSuffix":"png","fileContent":"data:image/png;base64,aGVsbG8="}],
"personName":"李四","personIDCard":"110101199001011234","personMobile":"13800138000"},
"responsiblePersonInfo":{"certificateType":0,"personCertificate":[{"fileType":0,"fileSuffix":"png","fileContent":"data:image/png;base64,aGVsbG8="}],
"personName":"王五","personIDCard":"110101199001015678","personMobile":"13800138001"}}}`)
	if err := json.Unmarshal(raw, &envelope); err != nil {
		t.Fatal(err)
	}
	content = "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("licence ", size/8)))
	envelope["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)["fileContent"] = content
	return envelope, content
}

func offloaded(t *testing.T, os jetstream.ObjectStore, size int) (*messages.Request, string) {
	t.Helper()
	env, content := smsRequest(t, size)
	payload, _ := json.Marshal(env["payload"])
	out, refs, err := files.Offload(context.Background(), os, "FILING_FILES", "f-1", payload, files.DefaultThreshold)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].Size != int64(len(content)) {
		t.Fatalf("refs %+v: want the one large file", refs)
	}
	if len(out) > 4096 {
		t.Errorf("the offloaded payload is %d bytes: the file is still in it", len(out))
	}
	env["payload"] = json.RawMessage(out)
	raw, _ := json.Marshal(env)
	req, err := messages.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	return req, content
}

func TestOffloadFetchRemove(t *testing.T) {
	os := store(t)
	ctx := context.Background()
	req, content := offloaded(t, os, 5<<20)
	fetched, err := files.Fetch(ctx, os, "FILING_FILES", req)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	p := req.Typed().(*messages.SMSApplySignatureIdent)
	if p.BusinessInfo.BusinessCertificate.FileContent.Data != "" {
		t.Fatal("Fetch changed the request")
	}
	req.FillFiles(fetched)
	if p.BusinessInfo.BusinessCertificate.FileContent.Data != content {
		t.Fatal("the fetched file is not the one offloaded")
	}
	if err := files.Remove(ctx, os, "FILING_FILES", req); err != nil {
		t.Fatal(err)
	}
	_, name, _ := p.BusinessInfo.BusinessCertificate.FileContent.Ref.Location()
	if _, err := os.GetInfo(ctx, name); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("after Remove: %v, want the object gone", err)
	}
	if err := files.Remove(ctx, os, "FILING_FILES", req); err != nil {
		t.Errorf("removing again: %v, want no error", err)
	}
}

func TestFetchRefusesWhatItCannotUse(t *testing.T) {
	ctx := context.Background()
	field := "payload.businessInfo.businessCertificate.fileContent"
	for _, tc := range []struct {
		name  string
		spoil func(os jetstream.ObjectStore, ref *messages.FileRef)
		want  string
	}{
		{"missing", func(os jetstream.ObjectStore, ref *messages.FileRef) {
			_, name, _ := ref.Location()
			_ = os.Delete(ctx, name)
		}, "was not found"},
		{"size differs", func(_ jetstream.ObjectStore, ref *messages.FileRef) { ref.Size++ }, "the reference says"},
		{"digest differs", func(_ jetstream.ObjectStore, ref *messages.FileRef) { ref.SHA256 = strings.Repeat("0", 64) }, "SHA-256"},
		{"another bucket", func(_ jetstream.ObjectStore, ref *messages.FileRef) {
			ref.Ref = strings.Replace(ref.Ref, "FILING_FILES", "OTHER_FILES", 1)
		}, "not in this deployment's file store"},
		{"not a data URI", func(os jetstream.ObjectStore, ref *messages.FileRef) {
			_, name, _ := ref.Location()
			body := []byte(strings.Repeat("x", int(ref.Size)))
			if _, err := os.PutBytes(ctx, name, body); err != nil {
				panic(err)
			}
			fixed := files.Ref("FILING_FILES", "f-1", body)
			ref.SHA256 = fixed.SHA256
		}, "data URI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os := store(t)
			req, _ := offloaded(t, os, 300<<10)
			ref := req.FileRefs()[0].File.FileContent.Ref
			tc.spoil(os, ref)
			_, err := files.Fetch(ctx, os, "FILING_FILES", req)
			var ve *messages.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != field || !strings.Contains(ve.Fields[0].Problem, tc.want) {
				t.Fatalf("err %v, want a problem with %s saying %q", err, field, tc.want)
			}
			if !errors.Is(err, messages.ErrInvalid) {
				t.Error("a file that cannot be used is not an invalid request")
			}
		})
	}
}

// A request removes only its own objects: one that references another
// request's object (a copied reference) never deletes it.
func TestRemoveOnlyOwnObjects(t *testing.T) {
	os := store(t)
	ctx := context.Background()
	a, _ := offloaded(t, os, 300<<10)
	ref := *a.FileRefs()[0].File.FileContent.Ref
	env, _ := smsRequest(t, 10)
	env["id"] = "f-2"
	env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)["fileContent"] = map[string]any{"$ref": ref.Ref, "sha256": ref.SHA256, "size": ref.Size}
	raw, _ := json.Marshal(env)
	b, err := messages.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Remove(ctx, os, "FILING_FILES", b); err != nil {
		t.Fatal(err)
	}
	_, name, _ := ref.Location()
	if _, err := os.GetInfo(ctx, name); err != nil {
		t.Errorf("request f-2 removed f-1's object: %v", err)
	}
}

// readCounter is a Store that counts what is read of it.
type readCounter struct {
	files.Store
	reads, puts int
}

func (c *readCounter) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error) {
	c.reads++
	return c.Store.GetInfo(ctx, name, opts...)
}

func (c *readCounter) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	c.reads++
	return c.Store.Get(ctx, name, opts...)
}

func (c *readCounter) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	c.puts++
	return c.Store.PutBytes(ctx, name, data)
}

// TestHostileReferences: a request that references another request's
// file, or one file many times over more than MaxTotal bytes in all, or a
// file whose data URI is not of its fileSuffix's type, is refused with
// the field named; the oversized one before a byte is read.
func TestHostileReferences(t *testing.T) {
	ctx := context.Background()
	os := store(t)
	a, _ := offloaded(t, os, 300<<10)
	ref := *a.FileRefs()[0].File.FileContent.Ref
	refJSON := map[string]any{"$ref": ref.Ref, "sha256": ref.SHA256, "size": ref.Size}
	request := func(id string, edit func(p map[string]any)) *messages.Request {
		env, _ := smsRequest(t, 10)
		env["id"] = id
		edit(env["payload"].(map[string]any))
		raw, _ := json.Marshal(env)
		r, err := messages.ParseRequest(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	certificate := func(p map[string]any) map[string]any {
		return p["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)
	}
	field := "payload.businessInfo.businessCertificate.fileContent"
	for _, tc := range []struct {
		name       string
		req        *messages.Request
		field      string
		want       string
		readsAtAll bool
	}{
		{"another request's file", request("f-2", func(p map[string]any) { certificate(p)["fileContent"] = refJSON }),
			field, "stored for another request", false},
		{"one file referenced over and over", request("f-1", func(p map[string]any) {
			var many []any
			for range 60 {
				many = append(many, map[string]any{"fileType": 0, "fileSuffix": "png", "fileContent": refJSON})
			}
			p["otherMaterials"] = many
		}), "payload", "at most 16777216 allowed", false},
		{"a type other than its suffix's", request("f-1", func(p map[string]any) {
			certificate(p)["fileContent"], certificate(p)["fileSuffix"] = refJSON, "pdf"
		}), field, `is of type "image/png", which is not that of fileSuffix "pdf"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &readCounter{Store: os}
			_, err := files.Fetch(ctx, c, "FILING_FILES", tc.req)
			var ve *messages.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field || !strings.Contains(ve.Fields[0].Problem, tc.want) {
				t.Fatalf("err %v, want a problem with %s saying %q", err, tc.field, tc.want)
			}
			if !tc.readsAtAll && c.reads > 0 {
				t.Errorf("%d reads of the store, want none", c.reads)
			}
		})
	}
}

// TestOffloadStoresAFileOnce: offloading the same request again finds its
// file there and does not store (nor purge) it again.
func TestOffloadStoresAFileOnce(t *testing.T) {
	c := &readCounter{Store: store(t)}
	env, _ := smsRequest(t, 300<<10)
	payload, _ := json.Marshal(env["payload"])
	for range 2 {
		if _, _, err := files.Offload(context.Background(), c, "FILING_FILES", "f-1", payload, files.DefaultThreshold); err != nil {
			t.Fatal(err)
		}
	}
	if c.puts != 1 {
		t.Errorf("%d puts, want 1", c.puts)
	}
}

// TestForgedDescriptions: an object's description (its metadata message,
// which whoever may store files can publish) is trusted for nothing. One
// that says it holds the reference's size over far larger chunks is
// refused having read at most that size; a link to another object is
// refused.
func TestForgedDescriptions(t *testing.T) {
	ctx := context.Background()
	js, _, _ := natstest.JetStream(t)
	os, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "FILING_FILES"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := offloaded(t, os, 300<<10)
	ref := req.FileRefs()[0].File.FileContent.Ref
	_, name, _ := ref.Location()
	info, err := os.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	field := "payload.businessInfo.businessCertificate.fileContent"
	refused := func(what, want string) {
		t.Helper()
		_, err := files.Fetch(ctx, os, "FILING_FILES", req)
		var ve *messages.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != field || !strings.Contains(ve.Fields[0].Problem, want) {
			t.Errorf("%s: err %v, want a problem with %s saying %q", what, err, field, want)
		}
	}
	describe := func(forged jetstream.ObjectInfo) {
		t.Helper()
		data, _ := json.Marshal(forged)
		if _, err := js.Publish(ctx, "$O.FILING_FILES.M."+base64.URLEncoding.EncodeToString([]byte(name)), data); err != nil {
			t.Fatal(err)
		}
	}

	// 64 MiB of chunks under a description that says the reference's
	// size: what the read allocates is bounded by the reference and the
	// client's flow control (about 10 MB here), not by what is stored.
	big := *info
	big.NUID, big.Chunks = "FORGEDCHUNKS00000000001", 128
	chunk := make([]byte, 512<<10)
	for range big.Chunks {
		if _, err := js.Publish(ctx, "$O.FILING_FILES.C."+big.NUID, chunk); err != nil {
			t.Fatal(err)
		}
	}
	describe(big)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	refused("64 MiB under a small description", "is not the object its description says")
	runtime.ReadMemStats(&after)
	kept := after.TotalAlloc - before.TotalAlloc
	t.Logf("64 MiB of chunks under a %d-byte description: the refusal allocated %.1f MiB", ref.Size, float64(kept)/(1<<20))
	if kept > 16<<20 {
		t.Errorf("reading it allocated %d bytes; want it bounded well below the 64 MiB stored", kept)
	}

	// The real chunks under another digest: a rejection, not broker
	// trouble retried for ever.
	wrong := *info
	wrong.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(make([]byte, 32))
	describe(wrong)
	refused("another digest", "is not the object its description says")

	// A link to another object.
	link := *info
	link.Opts = &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: "FILING_FILES", Name: "another"}}
	describe(link)
	refused("a link", "is a link")
}
