// Package watch is the per-id fan-out of change notifications that the
// engines' Watch methods share (opstore/driver.Store.Watch): a Hub keeps,
// per operation id, the channels of its watchers and signals them without
// ever blocking (each channel has a buffer of one, so signals coalesce).
package watch

import "sync"

// Hub fans notifications of ids out to their watchers. The zero Hub is
// ready to use; it is safe for concurrent use.
type Hub struct {
	mu sync.RWMutex
	m  map[string]map[*Watcher]struct{}
}

// Watcher is one subscription: C receives a value after a change of its
// id. A watcher made by AddUnarmed is signalled only once Arm says from
// which sequence number on.
type Watcher struct {
	C chan struct{}

	armed   bool   // guarded by the hub's mu
	base    uint64 // changes after this sequence number are signalled
	maxSeen uint64 // the highest sequence number seen before Arm
}

// Add subscribes to every later Notify (and NotifySeq) of id. stop ends the
// subscription; calling it again does nothing.
func (h *Hub) Add(id string) (w *Watcher, stop func()) {
	return h.add(id, true)
}

// AddUnarmed subscribes to id for a hub fed with sequence-numbered changes
// (NotifySeq) that the subscriber has not read up to yet: until Arm, the
// watcher only records the highest sequence number it was told of.
func (h *Hub) AddUnarmed(id string) (w *Watcher, stop func()) {
	return h.add(id, false)
}

func (h *Hub) add(id string, armed bool) (*Watcher, func()) {
	w := &Watcher{C: make(chan struct{}, 1), armed: armed}
	h.mu.Lock()
	if h.m == nil {
		h.m = map[string]map[*Watcher]struct{}{}
	}
	set := h.m[id]
	if set == nil {
		set = map[*Watcher]struct{}{}
		h.m[id] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w, sync.OnceFunc(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if set := h.m[id]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.m, id)
			}
		}
	})
}

// Arm makes w signal the changes after sequence number base, and signals
// it at once if one was seen while it was unarmed.
func (h *Hub) Arm(w *Watcher, base uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.armed, w.base = true, base
	if w.maxSeen > base {
		signal(w.C)
	}
}

// Notify signals the watchers of ids.
func (h *Hub) Notify(ids ...string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.m) == 0 {
		return
	}
	for _, id := range ids {
		for w := range h.m[id] {
			signal(w.C)
		}
	}
}

// NotifySeq tells the watchers of id of the change numbered seq: an armed
// watcher is signalled if seq is after its base, an unarmed one records
// it.
func (h *Hub) NotifySeq(id string, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.m[id] {
		if !w.armed {
			w.maxSeen = max(w.maxSeen, seq)
		} else if seq > w.base {
			signal(w.C)
		}
	}
}

// WakeAll signals every watcher (after notifications may have been lost,
// so that they read again); an unarmed one is signalled when armed.
func (h *Hub) WakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.m {
		for w := range set {
			w.maxSeen = ^uint64(0)
			signal(w.C)
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
