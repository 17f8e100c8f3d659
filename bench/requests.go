package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/qualfile/qualfile/messages"
)

// benchAPI is the one api of every request: vms.add_qualification, whose
// example is the ~1.8 KiB request of the issue. Every pipeline gets the same
// requests (the same bytes; only the id differs from one to the next).
const benchAPI = messages.APIVMSAddQualification

// idPrefix starts every request id; the rest is the request's index, so a
// result's id says which request it answers without a lookup.
const (
	idPrefix = "bench-"
	idDigits = 9
)

// idPlaceholder marks where the id goes in the template.
const idPlaceholder = "@@BENCH-ID@@"

// requests makes request i of a run: examples/<api>.json with the id
// bench-<i>, laid out as the example file is.
type requests struct {
	api        messages.API
	head, tail []byte
}

// loadRequests reads examples/<benchAPI>.json under root and checks that
// the request it makes passes qualfile's own validation.
func loadRequests(root string) (*requests, error) {
	path := filepath.Join(root, "examples", string(benchAPI)+".json")
	example, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env map[string]any
	if err := json.Unmarshal(example, &env); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	env["id"] = idPlaceholder
	env["api"] = string(benchAPI)
	env["submitted_at"] = "2026-11-23T10:00:00Z"
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	head, tail, ok := bytes.Cut(data, []byte(idPlaceholder))
	if !ok || bytes.Contains(tail, []byte(idPlaceholder)) {
		return nil, errors.New("request template: the id placeholder must occur once")
	}
	r := &requests{api: benchAPI, head: head, tail: tail}
	req, err := messages.ParseRequest(r.data(0))
	if err != nil {
		return nil, fmt.Errorf("request built from %s: %w", path, err)
	}
	if err := req.ValidateFor(benchAPI); err != nil {
		return nil, fmt.Errorf("request built from %s does not validate: %w", path, err)
	}
	return r, nil
}

// id is the id of request i.
func (r *requests) id(i int) string { return idPrefix + fmt.Sprintf("%0*d", idDigits, i) }

// data is request i.
func (r *requests) data(i int) []byte {
	id := r.id(i)
	b := make([]byte, 0, len(r.head)+len(id)+len(r.tail))
	b = append(b, r.head...)
	b = append(b, id...)
	return append(b, r.tail...)
}

// size is the length of a request in bytes.
func (r *requests) size() int { return len(r.head) + len(idPrefix) + idDigits + len(r.tail) }

// requestIndex reads the index back from a request id; ok is false for an
// id the bench did not make.
func requestIndex(id []byte) (int, bool) {
	if !bytes.HasPrefix(id, []byte(idPrefix)) {
		return 0, false
	}
	n, err := strconv.Atoi(string(id[len(idPrefix):]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
