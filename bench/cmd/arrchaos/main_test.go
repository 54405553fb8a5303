package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/arrhq/arr/internal/natstest"
	"github.com/arrhq/arr/internal/pgtest"
)

// tlog sends the run's progress to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A short chaos run against a real arr serve, killed with SIGKILL every
// 1–2 s: nothing acknowledged is lost, nothing unsent appears, no key makes
// two operations and no request has two results.
func TestChaosRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arr and kills real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sum, err := run(ctx, config{
		Duration: 6 * time.Second,
		Clients:  8,
		KillMin:  time.Second,
		KillMax:  2 * time.Second,
		Settle:   60 * time.Second,
		Grace:    30 * time.Second,
		Log:      tlog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(sum)
	if sum.Lost != 0 || sum.Phantom != 0 || sum.DuplicateOps != 0 || sum.DifferingResults != 0 {
		t.Errorf("audit failed: %s\n%s", sum, strings.Join(sum.Problems, "\n"))
	}
	if sum.Kills < 2 {
		t.Errorf("%d kills, want at least 2", sum.Kills)
	}
	if sum.Accepted == 0 {
		t.Error("nothing was accepted")
	}
	if sum.Completed != sum.Accepted {
		t.Errorf("completed=%d, accepted=%d", sum.Completed, sum.Accepted)
	}
	if sum.Rejected != 0 {
		t.Errorf("%d valid requests refused", sum.Rejected)
	}
	if f := sum.Failures(); len(f) > 0 {
		t.Errorf("failures: %q", f)
	}
}

// A short chaos run of arr scaled out: two apis and two workers over a
// 3-node NATS cluster (R3) or a private PostgreSQL, where each kill hits an
// api, a worker or the engine (a NATS node; the PostgreSQL server), which
// is restarted after a short pause. The audit must be clean.
func TestChaosScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arr and kills real processes")
	}
	for _, tc := range []struct {
		engine  string
		missing func() bool
		what    string
	}{
		{"nats", func() bool { return !natstest.Available() }, "no nats-server binary"},
		{"postgres", func() bool { return !pgtest.Available() }, "no PostgreSQL initdb"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			if tc.missing() {
				if os.Getenv("CI") == "" {
					t.Skip(tc.what + "; CI unset, skipping")
				}
				t.Fatal(tc.what + ", and CI is set: the test must run")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			sum, err := run(ctx, config{
				Engine:   tc.engine,
				Duration: 15 * time.Second,
				Clients:  8,
				KillMin:  time.Second,
				KillMax:  2 * time.Second,
				DownMax:  time.Second,
				Settle:   60 * time.Second,
				Grace:    30 * time.Second,
				Log:      tlog{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(sum)
			if f := sum.Failures(); len(f) > 0 {
				t.Errorf("failures: %q\n%s", f, strings.Join(sum.Problems, "\n"))
			}
			if sum.Kills < 3 {
				t.Errorf("%d kills, want at least 3", sum.Kills)
			}
			if sum.Accepted == 0 || sum.Completed != sum.Accepted {
				t.Errorf("completed=%d, accepted=%d", sum.Completed, sum.Accepted)
			}
		})
	}
}

func req(c, seq int, acked bool, id string) *request {
	key := "k-" + string(rune('a'+c)) + "-" + string(rune('0'+seq))
	r := &request{Client: c, Seq: seq, Key: key, Body: makeBody(c, seq, key, 128), Tries: 1, Acked: acked, ID: id, Retried: true}
	return r
}

func succeeded(id string, result string, attempts int) *observed {
	return &observed{ID: id, Known: true, Listed: true, Status: "succeeded", Attempts: attempts,
		Result: result, HasResult: true, Signed: result, HasSigned: true}
}

// The audit of a clean history: everything acknowledged succeeded with its
// body; an operation run twice is reported, not failed; an operation of a
// request the client gave up on is an orphan, not a phantom.
func TestAuditClean(t *testing.T) {
	a := req(0, 0, true, "op-a")
	b := req(0, 1, true, "op-b")
	gaveUp := req(1, 0, false, "")
	never := req(1, 1, false, "") // sent, never stored: fine
	ops := map[string]*observed{
		"op-a": succeeded("op-a", a.Body, 1),
		"op-b": succeeded("op-b", b.Body, 2),
		"op-c": succeeded("op-c", gaveUp.Body, 1),
	}
	rep := audit([]*request{a, b, gaveUp, never}, ops)
	want := auditReport{Accepted: 2, Completed: 2, DuplicatesExecuted: 1, Stored: 3, Orphans: 1}
	rep.Problems, rep.problemCount = nil, 0
	if rep.Accepted != want.Accepted || rep.Completed != want.Completed || rep.Lost != 0 || rep.Phantom != 0 ||
		rep.DuplicateOps != 0 || rep.DifferingResults != 0 || rep.DuplicatesExecuted != 1 || rep.Stored != 3 || rep.Orphans != 1 {
		t.Errorf("audit = %+v, want %+v", rep, want)
	}
	s := summary{auditReport: rep, Kills: 3, Duration: 30 * time.Second}
	if f := s.Failures(); len(f) != 0 {
		t.Errorf("failures of a clean run: %q", f)
	}
	if got := s.String(); got != "accepted=2 completed=2 lost=0 phantom=0 duplicate_ops=0 duplicates_executed=1 differing_results=0 kills=3 duration=30s" {
		t.Errorf("summary line %q", got)
	}
}

// The audit fails when something is wrong: each kind of fault is counted
// where it belongs.
func TestAuditFindsProblems(t *testing.T) {
	var (
		unknown   = req(0, 0, true, "op-unknown") // acked, 404
		pending   = req(0, 1, true, "op-pending") // acked, never finished
		failed    = req(0, 2, true, "op-failed")  // acked, failed
		wrong     = req(0, 3, true, "op-wrong")   // acked, someone else's result
		twice     = req(1, 0, true, "op-twice")   // acked, and a second op with its body
		differ    = req(1, 1, true, "op-differ")  // acked, result and signed URL disagree
		dropped   = req(1, 2, false, "")          // sent once, not retried, yet stored
		orphanDup = req(1, 3, false, "")          // never acked, stored twice
		fine      = req(2, 0, true, "op-fine")    // all good
		other     = req(2, 1, true, "op-other")   // all good; its body is op-wrong's result
		truncated = req(2, 2, false, "")          // never acked; stored with a truncated result
		reqs      = []*request{unknown, pending, failed, wrong, twice, differ, dropped, orphanDup, fine, other, truncated}
	)
	dropped.Retried = false
	d := succeeded("op-differ", differ.Body, 1)
	d.Signed = differ.Body[:len(differ.Body)-3] + `x"}`
	trunc := succeeded("op-trunc", truncated.Body[:len(truncated.Body)-10]+`"}`, 1)
	ops := map[string]*observed{
		"op-unknown":  {ID: "op-unknown", Err: "status monitor: 404"},
		"op-pending":  {ID: "op-pending", Known: true, Listed: true, Status: "pending", Attempts: 3},
		"op-failed":   {ID: "op-failed", Known: true, Listed: true, Status: "failed", Attempts: 3},
		"op-wrong":    succeeded("op-wrong", other.Body, 1),
		"op-twice":    succeeded("op-twice", twice.Body, 1),
		"op-twice-2":  succeeded("op-twice-2", twice.Body, 1),
		"op-differ":   d,
		"op-dropped":  succeeded("op-dropped", dropped.Body, 1),
		"op-orphan-1": succeeded("op-orphan-1", orphanDup.Body, 1),
		"op-orphan-2": succeeded("op-orphan-2", orphanDup.Body, 2),
		"op-fine":     succeeded("op-fine", fine.Body, 1),
		"op-other":    succeeded("op-other", other.Body, 1),
		"op-ghost":    succeeded("op-ghost", `{"client":9,"seq":9,"key":"nobody","pad":""}`, 1),
		"op-blank":    {ID: "op-blank", Known: true, Listed: true, Status: "failed", Attempts: 3},
		"op-trunc":    trunc,
	}
	rep := audit(reqs, ops)
	for _, p := range rep.Problems {
		t.Log(p)
	}
	check := func(name string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	check("accepted", rep.Accepted, 8)
	// unknown, pending, failed, wrong
	check("lost", rep.Lost, 4)
	// twice, differ, fine, other
	check("completed", rep.Completed, 4)
	// op-ghost (nobody's body), op-blank (no result to tie it to anyone),
	// op-dropped (a request the client dropped)
	check("phantom", rep.Phantom, 3)
	// op-twice-2, op-orphan-2
	check("duplicate_ops", rep.DuplicateOps, 2)
	// op-differ (result ≠ signed), op-trunc (result ≠ body sent)
	check("differing_results", rep.DifferingResults, 2)
	check("duplicates_executed", rep.DuplicatesExecuted, 4) // pending, failed, orphan-2, blank
	check("orphans", rep.Orphans, 3)                        // orphan-1, orphan-2, trunc
	check("stored", rep.Stored, 14)

	s := summary{auditReport: rep, Kills: 5, Duration: 30 * time.Second}
	if f := s.Failures(); len(f) != 4 {
		t.Errorf("failures = %q, want lost, phantom, duplicate and differing", f)
	}
	// A run long enough to kill that killed nothing fails too.
	if f := (summary{Duration: 5 * time.Second}).Failures(); len(f) != 1 {
		t.Errorf("failures of a run without kills = %q", f)
	}
	if f := (summary{Duration: 2 * time.Second}).Failures(); len(f) != 0 {
		t.Errorf("failures of a short run without kills = %q", f)
	}
}
