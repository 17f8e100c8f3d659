// Package files keeps SMS files too large for a NATS message in the
// deployment's JetStream object store (<PREFIX>_FILES): the publisher
// offloads them (Offload), the consumer fetches and checks them before the
// call (Fetch) and removes them once the request's outcome is recorded
// (Remove). See messages.FileContent for the reference form.
package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// Store is what the package needs of an object store (jetstream.ObjectStore).
type Store interface {
	GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error)
	PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error)
	Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error)
	Delete(ctx context.Context, name string) error
}

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
// share its object (each removes its own once its outcome is recorded).
func Ref(bucket, id string, content []byte) messages.FileRef {
	sum := sha256.Sum256(content)
	h := hex.EncodeToString(sum[:])
	return messages.FileRef{Ref: "obj://" + bucket + "/" + h + "." + messages.IDKey(id), SHA256: h, Size: int64(len(content))}
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
					// Named by its content: one already there is this
					// very file (replacing it would purge the old one,
					// which a submitter may not).
					if info, err := store.GetInfo(ctx, name); err != nil || info.Deleted || info.Size != uint64(len(s)) || info.Digest != digest([]byte(s)) {
						if _, err := store.PutBytes(ctx, name, []byte(s)); err != nil {
							return fmt.Errorf("store a %d-byte file in %s: %w", len(s), bucket, err)
						}
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
// reference to another bucket or to another request's object (one not
// named with req's key, as Offload names them), a missing object, or one
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
		case !own(name, req.ID):
			bad(slot.Path, "%s was stored for another request: a request may use only the files stored under its own id", ref.Ref)
			continue
		}
		// The object's description (its metadata, which whoever may
		// store files can write) is checked first, but trusted for
		// nothing: the read stops at the reference's size whatever it
		// says, and the content is checked against the reference.
		info, err := store.GetInfo(ctx, name)
		var data []byte
		if err == nil && (info.Opts == nil || info.Opts.Link == nil) && info.Size == uint64(ref.Size) {
			data, err = readAtMost(ctx, store, name, ref.Size)
		}
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			bad(slot.Path, "%s was not found in the object store (never stored, removed after the request's outcome, or expired)", ref.Ref)
			continue
		case errors.Is(err, errTooLarge), errors.Is(err, jetstream.ErrDigestMismatch):
			bad(slot.Path, "%s is not the object its description says (%v)", ref.Ref, err)
			continue
		case err != nil:
			return nil, fmt.Errorf("fetch %s: %w", ref.Ref, err)
		case info.Opts != nil && info.Opts.Link != nil:
			bad(slot.Path, "%s is a link to another object, which a request may not use", ref.Ref)
			continue
		case info.Size != uint64(ref.Size):
			bad(slot.Path, "%s holds %d bytes, the reference says %d", ref.Ref, info.Size, ref.Size)
			continue
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

// Remove deletes the objects req references in bucket that are its own
// (named with its key, as Offload names them: a reference to another
// request's object is never followed); one already gone is no error.
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
		if b, name, ok := ref.Location(); ok && b == bucket && own(name, req.ID) {
			if err := store.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, fmt.Errorf("remove %s: %w", ref.Ref, err))
			}
		}
	}
	return errors.Join(errs...)
}

// own reports whether the object name is of a file stored for the request
// with id (Ref names it so).
func own(name, id string) bool { return strings.HasSuffix(name, "."+messages.IDKey(id)) }

// errTooLarge: an object holds more than its reference says.
var errTooLarge = errors.New("it holds more bytes than the reference says")

// readAtMost reads the object name, refusing it once it holds more than
// size bytes: never more than size+1 bytes are kept.
func readAtMost(ctx context.Context, store Store, name string, size int64) ([]byte, error) {
	r, err := store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, size+1))
	switch {
	case err != nil:
		return nil, err
	case int64(len(data)) > size:
		return nil, errTooLarge
	}
	return data, nil
}

// digest is an object's digest as the object store writes it.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
}
