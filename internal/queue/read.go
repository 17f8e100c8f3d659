package queue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Read returns the messages of stream on subjects matching filter (all of
// them when filter is ""), in stream order: an operator's listing or
// trail, or a test's check. It reads through a consumer of its own that
// the server feeds only those messages, found through its subject index,
// so that reading one request's few messages does not grow with the
// stream. Not for the request stream: a work queue has one reader.
func Read(ctx context.Context, js jetstream.JetStream, stream, filter string) ([]*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	// The server removes the consumer a few seconds after its last read:
	// the readers' roles may not delete consumers (they could delete
	// someone else's).
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{FilterSubject: filter, AckPolicy: jetstream.AckNonePolicy,
		MemoryStorage: true, Replicas: 1, InactiveThreshold: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	want := int(info.NumPending)
	var out []*jetstream.RawStreamMsg
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 256), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			out = append(out, &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp})
			n++
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break // the stream changed under us (messages aged out)
		}
	}
	return out, nil
}
