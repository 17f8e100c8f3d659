package filing

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/messages"
)

// The runner's reads besides the call: the vendor's records (a
// reconciliation, a baseline) and the request's files in the object
// store.

// readRecords makes one read of the vendor's records that match the
// request.
func (r *runner) readRecords(ctx context.Context) recordsRead {
	ctx, cancel := context.WithTimeout(ctx, r.p.cfg.CallTimeout)
	defer cancel()
	f, err := r.p.cfg.Reconcile.Reader.Reconcile(ctx, r.d.msg.req)
	return recordsRead{finding: f, err: err}
}

// fetchFiles fetches and checks the request's files held in the object
// store. A store that cannot be read is broker trouble.
func (r *runner) fetchFiles(ctx context.Context) answer {
	store, ok := r.p.cfg.Files[r.d.msg.tenant]
	if !ok {
		return filesFetched{noStore: true}
	}
	ctx, cancel := context.WithTimeout(ctx, r.p.cfg.CallTimeout)
	defer cancel()
	contents, err := files.Fetch(ctx, store.Store, store.Bucket, r.d.msg.req)
	switch {
	case errors.As(err, new(*messages.ValidationError)):
		return filesFetched{unusable: err}
	case err != nil:
		return failed{op: stepFiles, err: err}
	}
	return filesFetched{contents: contents}
}

// removeFiles removes the request's files once its outcome is final. A
// failure is only logged: the bucket's max age removes them anyway.
func (r *runner) removeFiles() answer {
	store, ok := r.p.cfg.Files[r.d.msg.tenant]
	if !ok {
		return filesRemoved{}
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if err := files.Remove(ctx, store.Store, store.Bucket, r.d.msg.req); err != nil {
		r.log().Warn("could not remove the request's files from the object store; they expire with the bucket", zap.Error(err))
	}
	return filesRemoved{}
}
