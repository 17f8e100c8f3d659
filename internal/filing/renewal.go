package filing

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
)

// The runner's side of the in-flight lease (lease.go): a step that lasts
// while this replica holds the entry "calling" renews the entry as it
// goes, and is cut short when no renewal has landed within the fence.

// errFenced cuts a step short whose hold on the entry lapsed.
var errFenced = errors.New("filing: the hold on the ledger entry lapsed")

// lasting performs a step that may last: a sleep, a call, a read of the
// vendor's records or of the request's files.
func (r *runner) lasting(s step) answer {
	work := func(ctx context.Context) answer {
		switch s.kind {
		case stepSleep:
			sleep(ctx, s.delay)
			return slept{}
		case stepCall:
			return r.call(ctx)
		case stepReconcile:
			return r.readRecords(ctx)
		case stepBaseline:
			return baselineRead(r.readRecords(ctx))
		}
		return r.fetchFiles(ctx)
	}
	if s.hold == nil {
		return work(r.ctx)
	}
	if s.hold.left <= 0 {
		return cutOff{call: s.kind == stepCall} // nothing is started from a lapsed hold
	}
	ctx, cut := context.WithCancelCause(r.ctx)
	defer cut(nil)
	fence := time.AfterFunc(s.hold.left, func() { cut(errFenced) })
	defer fence.Stop()
	renewing, stop := context.WithCancel(context.WithoutCancel(r.ctx))
	var wg sync.WaitGroup
	defer func() { // also when work panics: no renewal outlives its step
		stop()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			if v := recover(); v != nil {
				cut(errFenced) // a renewal that panicked renews nothing
			}
		}()
		r.renew(renewing, s.hold, fence, cut)
	}()
	a := work(ctx)
	stop()
	wg.Wait()
	if errors.Is(context.Cause(ctx), errFenced) && cutBy(a) {
		_, wasCall := a.(called)
		return cutOff{call: wasCall}
	}
	return a
}

// cutBy reports whether a is the answer of a step that the fence cut
// short; an answer that came all the same is kept.
func cutBy(a answer) bool {
	var err error
	switch a := a.(type) {
	case slept:
		return true
	case called:
		err = a.err
	case recordsRead:
		err = a.err
	case baselineRead:
		err = a.err
	case failed:
		err = a.err
	}
	return errors.Is(err, errFenced) || errors.Is(err, context.Canceled)
}

// renew renews h.entry every h.renew until ctx is done, moving the fence
// on after each renewal that landed; a renewal that lost its
// compare-and-set (another replica moved the entry) cuts the step at once.
func (r *runner) renew(ctx context.Context, h *holding, fence *time.Timer, cut context.CancelCauseFunc) {
	t := time.NewTicker(h.renew)
	defer t.Stop()
	prev := h.entry
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := r.p.cfg.Now()
		next := prev
		next.Owner, next.UpdatedAt = r.p.cfg.Owner, at.UTC()
		wctx, cancel := context.WithTimeout(ctx, r.p.cfg.PublishTimeout)
		got, err := r.p.ledger.Put(wctx, prev, next)
		cancel()
		switch {
		case err == nil:
			prev = got
			r.renewal = &renewed{entry: got, at: at}
			fence.Reset(max(h.fence-r.p.cfg.Now().Sub(at), 0))
		case errors.Is(err, ledger.ErrConflict):
			// Another writer, or an earlier renewal of ours whose reply
			// was lost: only the entry can tell.
			if cur, ok := r.stillHeld(ctx, prev); ok {
				prev = cur // renews on from it; the fence moves only on a renewal known to be now
				continue
			}
			cut(errFenced)
			return
		}
	}
}

// stillHeld reads the entry after a renewal lost its compare-and-set: it
// is still held when it is "calling" under the same nonce and owner.
func (r *runner) stillHeld(ctx context.Context, prev ledger.Entry) (ledger.Entry, bool) {
	rctx, cancel := context.WithTimeout(ctx, r.p.cfg.PublishTimeout)
	defer cancel()
	cur, err := r.p.ledger.Get(rctx, prev.Tenant, prev.RequestID)
	return cur, err == nil && cur.State == ledger.StateCalling && cur.Nonce == prev.Nonce && cur.Owner == r.p.cfg.Owner
}
