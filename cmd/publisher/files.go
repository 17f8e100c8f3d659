package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/messages"
)

// fileStore is the deployment's object store of large files, opened when
// a request first needs it (a publisher that sends small requests needs no
// permission on it). Offload only looks for an object and puts one: the
// other methods are those of the store they opened.
type fileStore struct {
	jetstream.ObjectStore
	js     jetstream.JetStream
	bucket string
}

func (s *fileStore) open(ctx context.Context) error {
	if s.ObjectStore != nil {
		return nil
	}
	os, err := s.js.ObjectStore(ctx, s.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("the object store %s does not exist: start the consumer once (it creates it), or check --prefix", s.bucket)
	}
	if err != nil {
		return fmt.Errorf("object store %s: %w", s.bucket, err)
	}
	s.ObjectStore = os
	return nil
}

func (s *fileStore) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s.ObjectStore.GetInfo(ctx, name, opts...)
}

func (s *fileStore) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s.ObjectStore.PutBytes(ctx, name, data)
}

// offload moves the request's fileContents longer than max bytes into the
// object store, each replaced by a reference (files.Offload); data is the
// envelope. A request without such a file is returned as it is.
func offload(ctx context.Context, store *fileStore, id string, data []byte, max int) ([]byte, []messages.FileRef, error) {
	if !bytes.Contains(data, []byte(`"fileContent"`)) || len(data) <= max {
		return data, nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, nil, err
	}
	payload, refs, err := files.Offload(ctx, store, store.bucket, id, fields["payload"], max)
	if err != nil || len(refs) == 0 {
		return data, nil, err
	}
	fields["payload"] = payload
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), refs, nil
}
