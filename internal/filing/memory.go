package filing

import (
	"sync"
	"time"
)

// memory is what this replica knows of requests beyond the ledger: which
// ids a handler holds right now, and, for an id whose ledger entry may be
// behind, what settles it (a nonce written but never called under, an
// outcome not yet recorded). It is the "what this replica remembers"
// input of the decision core.
type memory struct {
	mu     sync.Mutex
	ids    map[string]*slot
	ttl    time.Duration
	pruned time.Time
}

type slot struct {
	held bool
	free chan struct{} // closed when the holder lets go
	rec  remembered
	kept time.Time // when it was last let go holding something
}

func newMemory(ttl time.Duration) *memory {
	return &memory{ids: map[string]*slot{}, ttl: ttl}
}

// acquire takes id for one handler and returns what is remembered of it,
// or, when another handler holds it, a channel closed when it lets go.
func (m *memory) acquire(id string) (remembered, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	if s == nil {
		s = &slot{}
		m.ids[id] = s
	}
	if s.held {
		return remembered{}, s.free
	}
	s.held, s.free = true, make(chan struct{})
	return s.rec, nil
}

// release lets go of id, keeping rec when keep is true, and forgets what
// was kept longer than the memory's ttl ago.
func (m *memory) release(id string, rec remembered, keep bool, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	if s == nil {
		return
	}
	close(s.free)
	s.held = false
	if !keep {
		delete(m.ids, id)
	} else {
		s.rec, s.kept = rec, now
	}
	if now.Sub(m.pruned) < m.ttl/10 {
		return
	}
	m.pruned = now
	for other, o := range m.ids {
		if !o.held && now.Sub(o.kept) > m.ttl {
			delete(m.ids, other)
		}
	}
}
