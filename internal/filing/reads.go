package filing

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/messages"
)

// The runner's reads besides the call: the vendor's records (a
// reconciliation, an SMS baseline) and the request's files in the object
// store.

// reconcile makes one read of the vendor's records.
func (r *runner) reconcile() {
	k := r.k
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	f, err := r.p.cfg.Reconcile.Reader.Reconcile(ctx, k.req, k.claimedAt().Add(-k.lim.reconcile.skew))
	cancel()
	k.now = r.p.cfg.Now().UTC()
	k.noteRead(f, err, k.now)
}

// readBaseline lists the SMS records that match the request before its
// first call. A failed read leaves the baseline unknown: the create goes
// on, and a lost answer then goes to an operator.
func (r *runner) readBaseline() {
	k := r.k
	k.baselineDone = true
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	defer cancel()
	f, err := r.p.cfg.Reconcile.Reader.Reconcile(ctx, k.req, time.Time{})
	k.now = r.p.cfg.Now().UTC()
	if err != nil || f.Undated > 0 {
		return
	}
	k.baseline, k.baselineKnown = make([]string, 0, len(f.Records)), true
	for _, rec := range f.Records {
		k.baseline = append(k.baseline, rec.ID)
	}
}

// fetchFiles fetches and checks the request's files held in the object
// store. A file that cannot be used rejects the request; a store that
// cannot be read is broker trouble (the error returned).
func (r *runner) fetchFiles() error {
	k := r.k
	if r.p.cfg.Files == nil {
		k.filesErr = &messages.ValidationError{Fields: []messages.FieldError{{Field: "payload",
			Problem: "references files in an object store, and this consumer has none configured"}}}
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	defer cancel()
	err := files.Fetch(ctx, r.p.cfg.Files, r.p.cfg.FilesBucket, k.req)
	var ve *messages.ValidationError
	switch {
	case errors.As(err, &ve):
		k.filesErr = err
		return nil
	case err != nil:
		return err
	}
	k.filesDone = true
	return nil
}

// removeFiles removes the request's files once its outcome is final. A
// failure is only logged: the bucket's max age removes them anyway.
func (r *runner) removeFiles() {
	k := r.k
	k.filesRemoved = true
	if r.p.cfg.Files == nil {
		return
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if err := files.Remove(ctx, r.p.cfg.Files, r.p.cfg.FilesBucket, k.req); err != nil {
		r.log().Warn("could not remove the request's files from the object store; they expire with the bucket", zap.Error(err))
	}
}
