package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// runValidate checks requests offline and prints every problem.
func runValidate(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stdout, stderr)
	apiFlag := fs.String("api", "", "the call: "+apiNames())
	file := fs.String("file", "", "request envelope or bare payload; - reads stdin (NDJSON for many)")
	if err := fs.parse(args); err != nil {
		return err
	}
	api := messages.API(*apiFlag)
	if !api.Valid() {
		return usagef("--api must be one of %s", apiNames())
	}
	docs, err := readDocs(*file, stdin)
	if err != nil {
		return err
	}
	bad := 0
	for i, doc := range docs {
		data, id, err := envelope(doc, api, "", "", "", time.Now())
		if err != nil {
			return err
		}
		req, err := messages.ParseRequest(data)
		if err == nil {
			err = req.ValidateFor(api)
		}
		var ve *messages.ValidationError
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "%d %s: valid\n", i+1, id)
		case errors.As(err, &ve):
			bad++
			fmt.Fprintf(stdout, "%d %s: %d problem(s)\n", i+1, id, len(ve.Fields))
			for _, f := range ve.Fields {
				fmt.Fprintf(stdout, "  %s: %s\n", f.Field, f.Problem)
			}
		default:
			bad++
			fmt.Fprintf(stdout, "%d %s: %v\n", i+1, id, err)
		}
	}
	if bad > 0 {
		return exitError(1)
	}
	return nil
}
