package files_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// store is the default tenant's files on a file stream made as the
// consumer makes it.
func store(t *testing.T) *files.Chunks {
	t.Helper()
	js, _, _ := natstest.JetStream(t)
	if _, err := queue.EnsureStreams(context.Background(), js, queue.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	return &files.Chunks{JS: js, Stream: "FILING_FILES", Subject: messages.Subjects{}.Files()}
}

// chunks is how many chunks the file stream holds.
func chunks(t *testing.T, c *files.Chunks) uint64 {
	t.Helper()
	s, err := c.JS.Stream(context.Background(), c.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
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

func offloaded(t *testing.T, os files.Store, size int) (*messages.Request, string) {
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
	if n, want := chunks(t, os), uint64((len(content)+files.ChunkSize-1)/files.ChunkSize); n != want {
		t.Errorf("the stream holds %d chunks, want %d (%d bytes in chunks of %d)", n, want, len(content), files.ChunkSize)
	}
	if err := files.Remove(ctx, os, "FILING_FILES", req); err != nil {
		t.Fatal(err)
	}
	if n := chunks(t, os); n != 0 {
		t.Errorf("after Remove: %d chunks, want none", n)
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
		spoil func(os *files.Chunks, ref *messages.FileRef)
		want  string
	}{
		{"missing", func(os *files.Chunks, ref *messages.FileRef) {
			_, name, _ := ref.Location()
			_ = os.Delete(ctx, name)
		}, "was not found"},
		{"a chunk missing", func(os *files.Chunks, ref *messages.FileRef) {
			s, _ := os.JS.Stream(ctx, os.Stream)
			_, name, _ := ref.Location()
			_ = s.Purge(ctx, jetstream.WithPurgeSubject(os.Subject+"."+name+".1"))
		}, "chunk 1 is missing"},
		{"size differs", func(_ *files.Chunks, ref *messages.FileRef) { ref.Size++ }, "not the file its reference says"},
		{"digest differs", func(_ *files.Chunks, ref *messages.FileRef) { ref.SHA256 = strings.Repeat("0", 64) }, "not named by its SHA-256"},
		{"another tenant's name", func(_ *files.Chunks, ref *messages.FileRef) {
			ref.Ref = strings.Replace(ref.Ref, "FILING_FILES/", "FILING_FILES/acme.", 1)
		}, "not named by its SHA-256"},
		{"an empty token", func(_ *files.Chunks, ref *messages.FileRef) {
			b, name, _ := ref.Location()
			_, key, _ := strings.Cut(name, ".")
			ref.Ref = "obj://" + b + "/." + key
		}, "not named by its SHA-256"},
		{"another bucket", func(_ *files.Chunks, ref *messages.FileRef) {
			ref.Ref = strings.Replace(ref.Ref, "FILING_FILES", "OTHER_FILES", 1)
		}, "not in this deployment's file store"},
		{"not a data URI", func(os *files.Chunks, ref *messages.FileRef) {
			body := []byte(strings.Repeat("x", int(ref.Size)))
			fixed := files.Ref("FILING_FILES", "f-1", body)
			_, name, _ := fixed.Location()
			if err := os.Put(ctx, name, body); err != nil {
				panic(err)
			}
			*ref = fixed
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
	before := chunks(t, os)
	if err := files.Remove(ctx, os, "FILING_FILES", b); err != nil {
		t.Fatal(err)
	}
	if n := chunks(t, os); n != before {
		t.Errorf("request f-2 removed f-1's chunks: %d left of %d", n, before)
	}
}

// readCounter is a Store that counts what is read of it.
type readCounter struct {
	files.Store
	reads, puts int
}

func (c *readCounter) Get(ctx context.Context, name string, size int64) ([]byte, error) {
	c.reads++
	return c.Store.Get(ctx, name, size)
}

func (c *readCounter) Put(ctx context.Context, name string, data []byte) error {
	c.puts++
	return c.Store.Put(ctx, name, data)
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
			field, "not named by its SHA-256 and this request's key", false},
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
// chunks there (a second message on a chunk's subject is refused), and
// stores nothing twice.
func TestOffloadStoresAFileOnce(t *testing.T) {
	os := store(t)
	env, _ := smsRequest(t, 300<<10)
	payload, _ := json.Marshal(env["payload"])
	for range 2 {
		if _, _, err := files.Offload(context.Background(), os, "FILING_FILES", "f-1", payload, files.DefaultThreshold); err != nil {
			t.Fatal(err)
		}
	}
	if n := chunks(t, os); n != 2 {
		t.Errorf("%d chunks, want 2", n)
	}
}

// TestTheFirstChunkStays: whoever may hand files over may publish on a
// chunk's subject, but the stream keeps the first message there: a
// publisher that comes second (another submitter of the tenant, knowing
// the name) changes nothing, and a file whose chunks are not of the sizes
// its reference gives is refused having read no more than it says, so
// that a request cannot make the consumer read without bound.
func TestTheFirstChunkStays(t *testing.T) {
	ctx := context.Background()
	os := store(t)
	req, content := offloaded(t, os, 300<<10)
	ref := req.FileRefs()[0].File.FileContent.Ref
	_, name, _ := ref.Location()
	if _, err := os.JS.Publish(ctx, os.Subject+"."+name+".0", []byte("forged")); err == nil {
		t.Fatal("a second message on a chunk's subject was stored")
	}
	// A chunk published with headers that would confuse a direct get's
	// reader is refused as not the file, not retried as broker trouble.
	forged := files.Ref("FILING_FILES", "f-1", []byte("forged"))
	_, fname, _ := forged.Location()
	m := nats.NewMsg(os.Subject + "." + fname + ".0")
	m.Data = []byte("forged")
	m.Header.Set("Nats-Sequence", "x")
	m.Header.Set("Status", "503")
	if _, err := os.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Get(ctx, fname, 6); err == nil || !strings.Contains(err.Error(), "not the file its reference says") {
		t.Fatalf("Get of a chunk with forged headers: %v", err)
	}
	// Nor may a publisher purge the stream with a rollup.
	rollup := nats.NewMsg(os.Subject + ".purge.all.0")
	rollup.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := os.JS.PublishMsg(ctx, rollup); err == nil {
		t.Fatal("a rollup was taken")
	}
	fetched, err := files.Fetch(ctx, os, "FILING_FILES", req)
	if err != nil || fetched[req.FileRefs()[0].Path] != content {
		t.Fatalf("Fetch after a second writer: %v", err)
	}

	// A file of one short chunk under a reference that says 16 MiB: one
	// read, refused.
	huge := files.Ref("FILING_FILES", "f-1", []byte("short"))
	_, hname, _ := huge.Location()
	if err := os.Put(ctx, hname, []byte("short")); err != nil {
		t.Fatal(err)
	}
	c := &readCounter{Store: os}
	if _, err := c.Get(ctx, hname, 16<<20); err == nil || !strings.Contains(err.Error(), "chunk 0 holds 5 bytes") {
		t.Fatalf("Get of a short chunk: %v", err)
	}
}

// TestAFullStreamIsNoStoredFile: a chunk the stream refuses for lack of
// room (its limits, which any publisher can fill) is an error of Put, not
// taken for a chunk already there.
func TestAFullStreamIsNoStoredFile(t *testing.T) {
	ctx := context.Background()
	c := store(t)
	s, err := c.JS.Stream(ctx, c.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxBytes = 1 << 20
	if _, err := c.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ { // junk on other subjects until the stream is full
		if _, err := c.JS.Publish(ctx, c.Subject+"."+strings.Repeat("b", 64)+".junk"+strconv.Itoa(i)+".0", make([]byte, 200<<10)); err != nil {
			break
		}
	}
	content := []byte(strings.Repeat("v", 300<<10))
	_, name, _ := files.Ref("FILING_FILES", "f-1", content).Location()
	if err := c.Put(ctx, name, content); err == nil {
		t.Fatal("Put into a full stream said nothing")
	}
}
