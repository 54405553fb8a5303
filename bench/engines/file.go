package main

import (
	"errors"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

var errNoReads = errors.New("engine has no point reads")

// ---- baseline A: append + fdatasync per submission, serialized ----

type fileA struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

func openFileA(dir string) (Engine, error) {
	f, err := createLog(dir)
	if err != nil {
		return nil, err
	}
	return &fileA{f: f}, nil
}

func (e *fileA) Submit(s *Sub) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = appendRecord(e.buf[:0], s)
	if _, err := e.f.Write(e.buf); err != nil {
		return err
	}
	return unix.Fdatasync(int(e.f.Fd()))
}

func (e *fileA) Get([]byte) (int, error) { return 0, errNoReads }
func (e *fileA) Close() error            { return e.f.Close() }

// ---- baseline B: append with group commit ----

type fileB struct {
	f  *os.File
	gc *groupCommitter
}

func openFileB(dir string) (Engine, error) {
	f, err := createLog(dir)
	if err != nil {
		return nil, err
	}
	e := &fileB{f: f}
	var buf []byte
	e.gc = newGroupCommitter(func(batch []*Sub) error {
		buf = buf[:0]
		for _, s := range batch {
			buf = appendRecord(buf, s)
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		return unix.Fdatasync(int(f.Fd()))
	})
	return e, nil
}

func (e *fileB) Submit(s *Sub) error     { return e.gc.submit(s) }
func (e *fileB) Get([]byte) (int, error) { return 0, errNoReads }
func (e *fileB) Close() error {
	e.gc.close()
	return e.f.Close()
}

func createLog(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	// Make the file's directory entry durable once, up front.
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return f, d.Sync()
}

// ---- group commit ----

// groupCommitter is a single writer goroutine: it takes every submission
// that is waiting, hands the whole group to flush (one write, one sync),
// then releases all of them with flush's result.
type groupCommitter struct {
	ch    chan *gcReq
	done  chan struct{}
	flush func([]*Sub) error
}

type gcReq struct {
	s   *Sub
	err chan error
}

const maxGroup = 1024

var reqPool = sync.Pool{New: func() any { return &gcReq{err: make(chan error, 1)} }}

func newGroupCommitter(flush func([]*Sub) error) *groupCommitter {
	g := &groupCommitter{ch: make(chan *gcReq, maxGroup), done: make(chan struct{}), flush: flush}
	go g.loop()
	return g
}

func (g *groupCommitter) submit(s *Sub) error {
	r := reqPool.Get().(*gcReq)
	r.s = s
	g.ch <- r
	err := <-r.err
	r.s = nil
	reqPool.Put(r)
	return err
}

func (g *groupCommitter) loop() {
	defer close(g.done)
	reqs := make([]*gcReq, 0, maxGroup)
	subs := make([]*Sub, 0, maxGroup)
	for {
		r, ok := <-g.ch
		if !ok {
			return
		}
		reqs = append(reqs[:0], r)
	drain:
		for len(reqs) < maxGroup {
			select {
			case r, ok := <-g.ch:
				if !ok {
					break drain
				}
				reqs = append(reqs, r)
			default:
				break drain
			}
		}
		subs = subs[:0]
		for _, r := range reqs {
			subs = append(subs, r.s)
		}
		err := g.flush(subs)
		for _, r := range reqs {
			r.err <- err
		}
	}
}

func (g *groupCommitter) close() {
	close(g.ch)
	<-g.done
}
