package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// readDocs reads one JSON document, or many as NDJSON, from a file or "-".
func readDocs(file string, stdin io.Reader) ([]json.RawMessage, error) {
	var r io.Reader
	switch file {
	case "":
		return nil, usagef("--file is required (a path, or - for stdin)")
	case "-":
		r = stdin
	default:
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	var docs []json.RawMessage
	for {
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d is not valid JSON: %w", file, len(docs)+1, err)
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no JSON document", file)
	}
	return docs, nil
}

// envelope turns a document into a request envelope: an envelope is kept as
// sent, with id, api, account and submitted_at filled in when missing; a
// bare vendor payload is wrapped in a new envelope.
//
// The id is the document's own, else wantID (--id), else one derived from
// the request's content (see contentID), so that sending the same request
// again is dropped as a copy instead of filed a second time.
func envelope(doc json.RawMessage, api messages.API, account, replyTo, wantID string, now time.Time) ([]byte, string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return nil, "", fmt.Errorf("not a JSON object: %w", err)
	}
	_, hasPayload := fields["payload"]
	_, hasAPI := fields["api"]
	if !hasPayload || (!hasAPI && fields["id"] == nil) {
		fields = map[string]json.RawMessage{"payload": doc}
	}
	var id string
	if raw, ok := fields["id"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &id); err != nil {
			// A made-up id would file the request again on every re-run.
			return nil, "", fmt.Errorf("id must be a string, not %s", messages.Truncate(string(raw), 40))
		}
	}
	if id != "" && wantID != "" && id != wantID {
		return nil, id, usagef("the request's id is %q but --id is %q", id, wantID)
	}
	var docAPI string
	if raw, ok := fields["api"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &docAPI); err != nil {
			return nil, id, fmt.Errorf("api must be a string, not %s", messages.Truncate(string(raw), 40))
		}
	}
	if id == "" {
		id = wantID
	}
	if id == "" {
		reqAPI, reqAccount := api, account
		if docAPI != "" {
			reqAPI = messages.API(docAPI)
		}
		if raw, ok := fields["account"]; ok {
			_ = json.Unmarshal(raw, &reqAccount)
		}
		id = contentID(reqAPI, reqAccount, fields["payload"])
	}
	fields["id"] = mustRaw(id)
	switch {
	case docAPI == "":
		fields["api"] = mustRaw(string(api))
	case api != "" && messages.API(docAPI) != api:
		return nil, id, usagef("request %s has api %q but --api is %q", id, docAPI, api)
	}
	if _, ok := fields["account"]; !ok && account != "" {
		fields["account"] = mustRaw(account)
	}
	if _, ok := fields["submitted_at"]; !ok {
		fields["submitted_at"] = mustRaw(now.UTC().Format(time.RFC3339Nano))
	}
	if replyTo != "" {
		fields["reply_to"] = mustRaw(replyTo)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, id, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), id, nil
}

// contentID is the id of a request given without one: "c-" and 32 hex
// digits of the SHA-256 of its api, its account (default "default") and
// its payload with insignificant whitespace removed. The same request sent
// twice gets the same id, which the request stream's duplicate window and
// then the ledger answer; a request that differs in any of them is another
// request.
func contentID(api messages.API, account string, payload json.RawMessage) string {
	if account == "" {
		account = messages.DefaultAccount
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload); err != nil {
		compact.Reset()
		compact.Write(payload)
	}
	h := sha256.New()
	h.Write([]byte(api))
	h.Write([]byte{0})
	h.Write([]byte(account))
	h.Write([]byte{0})
	h.Write(compact.Bytes())
	return "c-" + hex.EncodeToString(h.Sum(nil)[:16])
}

func mustRaw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
