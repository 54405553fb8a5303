package mem

import "container/heap"

// iheap is a binary min-heap of pointers that know their own index in it
// (through idx), so that an element can be fixed or removed in O(log n).
// An element not in the heap has index -1.
type iheap[T comparable] struct {
	s    []T
	less func(a, b T) bool
	idx  func(T) *int
}

func (h *iheap[T]) Len() int           { return len(h.s) }
func (h *iheap[T]) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }
func (h *iheap[T]) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	*h.idx(h.s[i]) = i
	*h.idx(h.s[j]) = j
}

func (h *iheap[T]) Push(x any) {
	t := x.(T)
	*h.idx(t) = len(h.s)
	h.s = append(h.s, t)
}

func (h *iheap[T]) Pop() any {
	var zero T
	n := len(h.s) - 1
	t := h.s[n]
	h.s[n] = zero
	h.s = h.s[:n]
	*h.idx(t) = -1
	return t
}

func (h *iheap[T]) push(t T) { heap.Push(h, t) }

// peek returns the least element without removing it.
func (h *iheap[T]) peek() (T, bool) {
	if len(h.s) == 0 {
		var zero T
		return zero, false
	}
	return h.s[0], true
}

func (h *iheap[T]) pop() T { return heap.Pop(h).(T) }

// fix restores the order after t's key changed.
func (h *iheap[T]) fix(t T) { heap.Fix(h, *h.idx(t)) }

// remove takes t out of the heap if it is in it.
func (h *iheap[T]) remove(t T) {
	if i := *h.idx(t); i >= 0 {
		heap.Remove(h, i)
	}
}

// reset empties the heap, marking nothing: for an engine dropping all its
// data.
func (h *iheap[T]) reset() { h.s = nil }
