package watch

import "testing"

func signalled(w *Watcher) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

// Notify signals the id's watchers, coalesced and never blocking, and
// nobody else's; stop ends a subscription.
func TestNotify(t *testing.T) {
	var h Hub
	a, stopA := h.Add("x")
	b, stopB := h.Add("x")
	c, stopC := h.Add("y")
	defer stopC()
	h.Notify("x")
	h.Notify("x") // coalesced, does not block
	if !signalled(a) || !signalled(b) || signalled(c) {
		t.Fatal("Notify(x) did not signal exactly x's watchers")
	}
	if signalled(a) {
		t.Fatal("two notifications gave two signals")
	}
	stopA()
	stopA() // again: nothing
	h.Notify("x")
	if signalled(a) || !signalled(b) {
		t.Fatal("a stopped watcher was signalled, or a live one not")
	}
	stopB()
	if len(h.m["x"]) != 0 || h.m["x"] != nil {
		t.Fatalf("the last stop left %v", h.m["x"])
	}
}

// An unarmed watcher records sequence numbers and is signalled on Arm
// only for one after its base; once armed it is signalled for later ones.
func TestArm(t *testing.T) {
	var h Hub
	w, stop := h.AddUnarmed("x")
	defer stop()
	h.NotifySeq("x", 5)
	if signalled(w) {
		t.Fatal("an unarmed watcher was signalled")
	}
	h.Arm(w, 5) // the read saw 5
	if signalled(w) {
		t.Fatal("armed at the sequence it had seen, it was signalled")
	}
	h.NotifySeq("x", 5)
	if signalled(w) {
		t.Fatal("a change at its base signalled it")
	}
	h.NotifySeq("x", 6)
	if !signalled(w) {
		t.Fatal("a later change did not signal it")
	}
	v, stopV := h.AddUnarmed("x")
	defer stopV()
	h.NotifySeq("x", 9)
	h.Arm(v, 7) // the read saw 7; 9 came meanwhile
	if !signalled(v) {
		t.Fatal("a change seen before Arm, after its base, was not signalled")
	}
	u, stopU := h.AddUnarmed("z")
	defer stopU()
	h.WakeAll()
	h.Arm(u, 100)
	if !signalled(u) || !signalled(w) {
		t.Fatal("WakeAll did not reach every watcher")
	}
}
