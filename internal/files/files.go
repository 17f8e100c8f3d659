// Package files keeps SMS files too large for a NATS message in the
// deployment's file stream (<PREFIX>_FILES): the publisher hands each over
// in chunks (Offload), the consumer fetches and checks them before the
// call (Fetch) and removes them once the request's outcome is recorded
// (Remove). A submitter may only publish chunks; the stream keeps one
// message per subject and refuses a second, so the first writer's stays,
// and nobody but the consumer may read, list, delete or purge. See
// messages.FileContent for the reference form.
package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// Store keeps files by name.
type Store interface {
	// Put stores data under name, which its content gives: a file
	// already stored under name is no error.
	Put(ctx context.Context, name string, data []byte) error
	// Get reads the file name of size bytes: ErrNotFound when there is
	// none, errNotTheFile when it is not of that size.
	Get(ctx context.Context, name string, size int64) ([]byte, error)
	// Delete removes the file name; one already gone is no error.
	Delete(ctx context.Context, name string) error
}

// ChunkSize is the size of every chunk of a file but its last: well
// below any server's max_payload, and fixed, so that a file of a given
// size has one number of chunks.
const ChunkSize = 256 << 10

// Chunks is a Store over a stream that keeps one message per subject
// (<Subject>.<name>.<n>, the nth ChunkSize bytes of a file) and refuses a
// second one on a subject (queue.StreamConfigs makes it so).
type Chunks struct {
	JS      jetstream.JetStream
	Stream  string // <PREFIX>_FILES
	Subject string // the tenant's: <prefix>.file, or <prefix>.file.<tenant>
}

func (c *Chunks) chunk(name string, n int) string {
	return c.Subject + "." + name + "." + strconv.Itoa(n)
}

// Put publishes data's chunks, each only where its subject holds none: a
// chunk already there (the same file, named by its content) is kept. No
// message id: the stream's duplicate window is every tenant's, and one
// that names another's chunk would have it dropped.
func (c *Chunks) Put(ctx context.Context, name string, data []byte) error {
	for n := 0; n == 0 || n*ChunkSize < len(data); n++ {
		m := nats.NewMsg(c.chunk(name, n))
		m.Data = data[n*ChunkSize : min(len(data), (n+1)*ChunkSize)]
		_, err := c.JS.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
			return fmt.Errorf("no stream takes %s: start the consumer once (it creates %s), or check --prefix: %w", m.Subject, c.Stream, err)
		case err != nil:
			return err
		}
	}
	return nil
}

// Get reads the chunks of a file of size bytes, each of the size it must
// be and with no header but the one Put writes: never more than size
// bytes, nor more chunks than size gives, and memory only for what was
// read. The stream answers through its API (no direct gets), so that
// what a chunk's publisher wrote in its headers is read as data.
func (c *Chunks) Get(ctx context.Context, name string, size int64) ([]byte, error) {
	stream, err := c.JS.Stream(ctx, c.Stream)
	if err != nil {
		return nil, err
	}
	var data []byte
	for n := 0; n == 0 || int64(n)*ChunkSize < size; n++ {
		m, err := stream.GetLastMsgForSubject(ctx, c.chunk(name, n))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && n == 0:
			return nil, ErrNotFound
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, fmt.Errorf("%w: chunk %d is missing", errNotTheFile, n)
		case err != nil:
			return nil, err
		}
		if want := min(size-int64(n)*ChunkSize, ChunkSize); int64(len(m.Data)) != want {
			return nil, fmt.Errorf("%w: chunk %d holds %d bytes, not %d", errNotTheFile, n, len(m.Data), want)
		}
		for k := range m.Header {
			if k != jetstream.ExpectedLastSubjSeqHeader {
				return nil, fmt.Errorf("%w: chunk %d carries a header %q, which Put never writes", errNotTheFile, n, messages.Truncate(k, 64))
			}
		}
		data = append(data, m.Data...)
	}
	return data, nil
}

// Delete purges the file's chunks.
func (c *Chunks) Delete(ctx context.Context, name string) error {
	stream, err := c.JS.Stream(ctx, c.Stream)
	if err != nil {
		return err
	}
	return stream.Purge(ctx, jetstream.WithPurgeSubject(c.Subject+"."+name+".>"))
}

// ErrNotFound: no file of that name is stored.
var ErrNotFound = errors.New("files: not found")

// errNotTheFile: what is stored under a name is not a file of the size
// its reference says.
var errNotTheFile = errors.New("not the file its reference says")

// MaxTotal is the most file bytes one request may reference in all
// (16 MiB, as much as one inline file may hold): the vendor gets them in
// one body, and the consumer holds them in memory while it calls.
const MaxTotal = messages.MaxFileContentLen

// DefaultThreshold is the longest fileContent the publisher leaves inline
// (256 KiB): a request with a few of them still fits a 1 MiB message.
const DefaultThreshold = 256 << 10

// Ref is the reference to content stored in bucket for the request with
// id: named by the content's SHA-256 and the request's key, so that the
// same request sent again makes the same reference (and the same payload,
// which the ledger compares), while two requests that share a file never
// share its chunks (each removes its own once its outcome is recorded).
func Ref(bucket, id string, content []byte) messages.FileRef {
	sum := sha256.Sum256(content)
	h := hex.EncodeToString(sum[:])
	return messages.FileRef{Ref: "obj://" + bucket + "/" + own(h, id), SHA256: h, Size: int64(len(content))}
}

// Offload stores every fileContent of payload (a JSON document) of the
// request with id longer than threshold bytes in store and puts a
// reference in its place. It returns the payload to publish and the
// references made.
func Offload(ctx context.Context, store Store, bucket, id string, payload []byte, threshold int) ([]byte, []messages.FileRef, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, nil, fmt.Errorf("payload: %w", err)
	}
	var refs []messages.FileRef
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if s, ok := child.(string); ok && k == "fileContent" && len(s) > threshold {
					ref := Ref(bucket, id, []byte(s))
					_, name, _ := ref.Location()
					if err := store.Put(ctx, name, []byte(s)); err != nil {
						return fmt.Errorf("store a %d-byte file in %s: %w", len(s), bucket, err)
					}
					v[k] = ref
					refs = append(refs, ref)
					continue
				}
				if err := walk(child); err != nil {
					return err
				}
			}
		case []any:
			for _, child := range v {
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(tree); err != nil {
		return nil, nil, err
	}
	if len(refs) == 0 {
		return payload, nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), refs, nil
}

// Fetch reads every referenced file of req from store and returns their
// contents by the path of their field (req.FillFiles puts them in). Files
// that total more than MaxTotal bytes are refused before any is read. A
// reference to another stream or to another request's file (one not
// named with req's key, as Offload names them), a missing file, or one
// whose size, SHA-256 or content (a data URI of the type of its
// fileSuffix) is not what the reference says is a
// *messages.ValidationError naming each such field; a failure to read the
// store is returned as it came (the broker's trouble, to be retried).
func Fetch(ctx context.Context, store Store, bucket string, req *messages.Request) (map[string]string, error) {
	slots := req.FileRefs()
	var total int64
	for _, slot := range slots {
		total += slot.File.FileContent.Ref.Size
	}
	if total > MaxTotal {
		return nil, &messages.ValidationError{Fields: []messages.FieldError{{Field: "payload",
			Problem: fmt.Sprintf("references %d bytes of files in all, at most %d allowed", total, MaxTotal)}}}
	}
	fetched := map[string]string{}
	var problems []messages.FieldError
	bad := func(path, format string, args ...any) {
		problems = append(problems, messages.FieldError{Field: path + ".fileContent", Problem: fmt.Sprintf(format, args...)})
	}
	for _, slot := range slots {
		ref := slot.File.FileContent.Ref
		b, name, ok := ref.Location()
		switch {
		case !ok || b != bucket:
			bad(slot.Path, "%s is not in this deployment's file store %s", ref.Ref, bucket)
			continue
		case name != own(ref.SHA256, req.ID):
			bad(slot.Path, "%s is not named by its SHA-256 and this request's key: a request may use only the files stored under its own id", ref.Ref)
			continue
		}
		data, err := store.Get(ctx, name, ref.Size)
		switch {
		case errors.Is(err, ErrNotFound):
			bad(slot.Path, "%s was not found in the file store (never stored, removed after the request's outcome, or expired)", ref.Ref)
			continue
		case errors.Is(err, errNotTheFile):
			bad(slot.Path, "%s is %v", ref.Ref, err)
			continue
		case err != nil:
			return nil, fmt.Errorf("fetch %s: %w", ref.Ref, err)
		}
		sum := sha256.Sum256(data)
		switch got := hex.EncodeToString(sum[:]); {
		case int64(len(data)) != ref.Size:
			bad(slot.Path, "%s holds %d bytes, the reference says %d", ref.Ref, len(data), ref.Size)
		case got != ref.SHA256:
			bad(slot.Path, "%s has SHA-256 %s, the reference says %s", ref.Ref, got, ref.SHA256)
		default:
			if problem := messages.DataURIProblem(string(data), slot.File.FileSuffix); problem != "" {
				bad(slot.Path, "the content of %s %s", ref.Ref, problem)
				continue
			}
			fetched[slot.Path] = string(data)
		}
	}
	if len(problems) > 0 {
		return nil, &messages.ValidationError{Fields: problems}
	}
	return fetched, nil
}

// Remove deletes the files req references in bucket that are its own
// (named with its key, as Offload names them: a reference to another
// request's file is never followed); one already gone is no error.
func Remove(ctx context.Context, store Store, bucket string, req *messages.Request) error {
	p, ok := req.Typed().(*messages.SMSApplySignatureIdent)
	if !ok {
		return nil
	}
	var errs []error
	for _, slot := range p.Files() {
		ref := slot.File.FileContent.Ref
		if ref == nil {
			continue
		}
		if b, name, ok := ref.Location(); ok && b == bucket && name == own(ref.SHA256, req.ID) {
			if err := store.Delete(ctx, name); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", ref.Ref, err))
			}
		}
	}
	return errors.Join(errs...)
}

// own is the name of the file of digest sha256 stored for the request
// with id (Ref names it so): a request may use no other.
func own(sha256, id string) string { return sha256 + "." + messages.IDKey(id) }
