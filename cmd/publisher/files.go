package main

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/messages"
)

// offload hands the request's fileContents longer than max bytes over to
// the file stream, each replaced by a reference (files.Offload); data is
// the envelope. A request without such a file is returned as it is.
func offload(ctx context.Context, store *files.Chunks, id string, data []byte, max int) ([]byte, []messages.FileRef, error) {
	if !bytes.Contains(data, []byte(`"fileContent"`)) || len(data) <= max {
		return data, nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, nil, err
	}
	payload, refs, err := files.Offload(ctx, store, store.Stream, id, fields["payload"], max)
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
