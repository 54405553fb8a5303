package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/arrhq/arr/internal/watch"
)

// listener is the DB's one LISTEN connection, started by the first Watch
// or Receive. It fans NOTIFYs out: operation ids to their watchers, queue
// wake-ups to every waiting Receive. After a reconnect (a lost connection
// loses the notifications sent meanwhile) it wakes every watcher and every
// Receive, so that they read again.
type listener struct {
	db *DB

	mu      sync.Mutex
	started bool
	stopped bool
	ready   chan struct{} // closed once the first LISTEN is in place
	cancel  context.CancelFunc
	done    chan struct{} // closed when the goroutine has exited
	hub     watch.Hub     // the operations' watchers
	qwake   chan struct{} // closed and replaced on each queue wake-up
	pid     uint32        // backend of the current connection (tests)
}

func (l *listener) init(db *DB) {
	l.db = db
	l.ready = make(chan struct{})
	l.done = make(chan struct{})
	l.qwake = make(chan struct{})
}

// ensure starts the listener if needed and waits until its first LISTEN is
// in place (or ctx ends, or the DB closes).
func (l *listener) ensure(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return ErrClosed
	}
	if !l.started {
		l.started = true
		lctx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		go l.run(lctx)
	}
	ready, done := l.ready, l.done
	l.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the listener and waits for its goroutine.
func (l *listener) stop() {
	l.mu.Lock()
	l.stopped = true
	started, cancel := l.started, l.cancel
	l.mu.Unlock()
	if !started {
		return
	}
	cancel()
	<-l.done
	l.wakeQueue() // blocked Receives see the closed DB
}

// run holds the LISTEN connection, reconnecting with backoff.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	first := true
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := l.connect(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.mu.Lock()
		l.pid = conn.PgConn().PID()
		l.mu.Unlock()
		if first {
			first = false
			close(l.ready)
		} else {
			// Notifications sent while disconnected are lost: everyone reads again.
			l.wakeAll()
		}
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				break
			}
			l.dispatch(n)
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := l.db.pool.Config().ConnConfig.Copy()
	if l.db.password != nil {
		p, err := l.db.password(ctx)
		if err != nil {
			return nil, fmt.Errorf("postgres: auth=%s: %w", l.db.cfg.auth, err)
		}
		cfg.Password = p
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, ch := range []string{l.db.opsChan, l.db.qChan} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(context.Background())
			return nil, err
		}
	}
	return conn, nil
}

func (l *listener) dispatch(n *pgconn.Notification) {
	switch n.Channel {
	case l.db.opsChan:
		if n.Payload == "" {
			l.wakeWatchers()
			return
		}
		l.hub.Notify(n.Payload)
	case l.db.qChan:
		l.wakeQueue()
	}
}

func (l *listener) wakeAll() {
	l.wakeWatchers()
	l.wakeQueue()
}

func (l *listener) wakeWatchers() { l.hub.WakeAll() }

// wakeQueue wakes every Receive waiting on the channel queueWait returned.
func (l *listener) wakeQueue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.qwake)
	l.qwake = make(chan struct{})
}

// backendPID returns the process id of the listening connection's server
// backend (0 before the first connection).
func (l *listener) backendPID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pid
}

// queueWait returns the channel the next queue wake-up closes.
func (l *listener) queueWait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.qwake
}
