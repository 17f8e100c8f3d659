package guard

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// KVSlots are Slots in a JetStream KV bucket shared by the replicas: a
// slot is taken by creating its key, which succeeds for exactly one
// caller. The bucket should keep keys for a minute or so (its MaxAge):
// a slot is never looked at again once its time is past.
type KVSlots struct {
	KV jetstream.KeyValue
}

// Take creates key; false when another caller created it first.
func (s KVSlots) Take(ctx context.Context, key string) (bool, error) {
	_, err := s.KV.Create(ctx, key, []byte{'1'})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, err
}
