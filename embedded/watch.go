package embedded

import "sync"

// watchers fans change notifications of operations out to Watch channels.
// Notification is in-process and happens after the change is committed.
type watchers struct {
	mu sync.RWMutex
	m  map[string]map[*watcher]struct{}
}

type watcher struct{ ch chan struct{} }

func (w *watchers) init() { w.m = map[string]map[*watcher]struct{}{} }

func (w *watchers) add(id string) (<-chan struct{}, func()) {
	wt := &watcher{ch: make(chan struct{}, 1)}
	w.mu.Lock()
	set := w.m[id]
	if set == nil {
		set = map[*watcher]struct{}{}
		w.m[id] = set
	}
	set[wt] = struct{}{}
	w.mu.Unlock()
	var once sync.Once
	return wt.ch, func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if set := w.m[id]; set != nil {
				delete(set, wt)
				if len(set) == 0 {
					delete(w.m, id)
				}
			}
		})
	}
}

// notify wakes the watchers of ids; sends never block (a buffer of one
// coalesces).
func (w *watchers) notify(ids ...string) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if len(w.m) == 0 {
		return
	}
	for _, id := range ids {
		for wt := range w.m[id] {
			select {
			case wt.ch <- struct{}{}:
			default:
			}
		}
	}
}
