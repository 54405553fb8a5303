package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chaosScript is the exec route's command. It records its process group
// ($$: the handler makes the command a group leader) in $PIDS, then works
// for 300ms with a child that would outlive it by far: the shell kills and
// reaps that child itself, so a normal run leaves nothing behind, but when
// arr is SIGKILLed the shell dies (Pdeathsig) and both children are left
// running in the group until the next start's Reap. Finally it echoes the
// body.
const chaosScript = `touch "$PIDS/$$"; sleep 30 & c=$!; sleep 0.3; kill $c; wait; cat`

// An exec route under fire: arr is SIGKILLed several times while its
// commands run and restarted each time. Every acknowledged operation ends
// succeeded with its own body as result, exactly one operation exists per
// submission, the kills cut attempts short (recorded as interrupted), and
// once arr is stopped no process of any command is left: the groups a
// killed arr left were reaped by the next start.
func TestChaosExec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const (
		total, clients = 300, 8
		kills          = 5
		minGap, maxGap = 400 * time.Millisecond, 1200 * time.Millisecond
		// pace is the mean delay between a client's submissions: the
		// clients take about as long to submit everything as the kills
		// take (5 × 800ms on average, plus the restarts).
		pace = 120 * time.Millisecond
	)

	// The commands' orphans (a shell that died with a killed arr, and its
	// children) become this process's children rather than those of PID
	// 1, which may reap them late or never (as in some containers): a
	// zombie is still a member of its group, and kill(-pgid, 0) would find
	// it. The reaper below reaps them at once, as a prompt init would.
	setSubreaper(t)

	dir := t.TempDir()
	addr, data, pids := freeAddr(t), filepath.Join(dir, "data"), filepath.Join(dir, "pids")
	if err := os.Mkdir(pids, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "arr.yaml")
	cfg := fmt.Sprintf(`server:
  lease: 1s
routes:
  - path: /v1/work
    handler: exec
    exec:
      command: ["sh", "-c", %s]
      contentType: text/plain
      env:
        PIDS: %s
      killGrace: 500ms
    mediaTypes: [text/plain]
    maxAttempts: 5
    backoff: 100ms
`, strconv.Quote(chaosScript), strconv.Quote(pids))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", cfgPath, "-workers", "8"}
	base := "http://" + addr

	stopReaper := make(chan struct{})
	reaperDone := make(chan struct{})
	go func() {
		defer close(reaperDone)
		for {
			select {
			case <-stopReaper:
				return
			case <-time.After(20 * time.Millisecond):
				reapGroups(recordedGroups(t, pids))
			}
		}
	}()
	defer func() {
		select {
		case <-stopReaper:
		default:
			close(stopReaper)
		}
		<-reaperDone
	}()

	proc := startArr(t, addr, data, args...)
	start := time.Now()
	stopped := false
	defer func() {
		if !stopped { // a t.Fatal on the way: do not leave arr running
			_ = proc.cmd.Process.Kill()
			_ = proc.cmd.Wait()
		}
	}()
	var logs []string // logs of the killed processes

	type accepted struct{ id, body string }
	results := make([]accepted, total)
	var acked, refused atomic.Int64
	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var next atomic.Int64
	var quit atomic.Bool // a t.Fatal on the way: clients stop
	defer func() { quit.Store(true); wg.Wait() }()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				// Paced so that submitting lasts about as long as
				// the kills: some land in the middle of a submission.
				time.Sleep(rand.N(2 * pace))
				n := next.Add(1) - 1
				if n >= total {
					return
				}
				body := fmt.Sprintf("op %d %x\n", n, rand.Uint64())
				key := fmt.Sprintf("chaos-%d", n)
				deadline := time.Now().Add(30 * time.Second)
				id, err := submitUntilAccepted(hc, base+"/v1/work", "text/plain", body, key, &refused,
					func() bool { return quit.Load() || time.Now().After(deadline) })
				if err != nil {
					if !quit.Load() {
						t.Errorf("submission %d: %v", n, err)
					}
					return
				}
				results[n] = accepted{id, body}
				acked.Add(1)
			}
		}()
	}

	// SIGKILL arr at random moments while commands run, restarting it
	// after each kill. live counts the recorded groups still alive just
	// before each kill: commands (or their children) the kill cuts short.
	var live []int
	atKill := map[int]bool{} // groups in {data}/exec-groups when arr was killed
	for range kills {
		time.Sleep(minGap + rand.N(maxGap-minGap))
		live = append(live, liveGroups(recordedGroups(t, pids)))
		proc.kill9(t)
		for _, g := range recordedGroups(t, execPIDDir(data)) {
			atKill[g] = true
		}
		logs = append(logs, proc.log.String())
		time.Sleep(100 * time.Millisecond)
		proc = startArr(t, addr, data, args...)
	}
	wg.Wait()
	loadTime := time.Since(start)
	if t.Failed() {
		proc.stop(t)
		stopped = true
		return
	}

	// Every acknowledged operation succeeds with its own body.
	ids := map[string]bool{}
	for n, a := range results {
		if ids[a.id] {
			t.Fatalf("submission %d got operation %s, already given to another submission", n, a.id)
		}
		ids[a.id] = true
	}
	deadline := time.Now().Add(90 * time.Second)
	for n, a := range results {
		waitResult(t, hc, base, n, a.id, a.body, deadline)
	}
	drainTime := time.Since(start)

	// Each one's attempts: interrupted ones (the kills), then the one that
	// succeeded; no attempt failed (nothing here makes a command fail).
	interrupted, opsInterrupted := 0, 0
	outcomes := map[string]int{}
	for n, a := range results {
		res, err := hc.Get(base + "/v1/operations/" + a.id + "?redirect=false")
		if err != nil {
			t.Fatal(err)
		}
		var op struct {
			Status   string
			Attempts []struct {
				Number  int
				Outcome string
				Error   json.RawMessage
			}
		}
		err = json.NewDecoder(res.Body).Decode(&op)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("submission %d (%s): status: %d %v", n, a.id, res.StatusCode, err)
		}
		if op.Status != "succeeded" {
			t.Errorf("submission %d (%s): status %s, want succeeded", n, a.id, op.Status)
		}
		k := 0
		for i, at := range op.Attempts {
			outcomes[at.Outcome]++
			last := i == len(op.Attempts)-1
			switch {
			case at.Outcome == "interrupted" && !last:
				k++
			case at.Outcome == "succeeded" && last:
			default:
				t.Errorf("submission %d (%s): attempt %d of %d is %s: %s", n, a.id, at.Number, len(op.Attempts), at.Outcome, at.Error)
			}
		}
		interrupted += k
		if k > 0 {
			opsInterrupted++
		}
	}
	if interrupted == 0 {
		t.Errorf("no attempt was interrupted: none of the %d kills landed while a command ran (groups alive at the kills: %v)", kills, live)
	}

	// Exactly one stored operation per submission: nothing unacknowledged.
	assertStoredExactly(t, hc, base, ids, total)

	proc.stop(t)
	stopped = true
	logs = append(logs, proc.log.String())
	close(stopReaper)
	<-reaperDone

	// No process of any command is left, and no record of one.
	groups := recordedGroups(t, pids)
	reapedAtStart := 0
	for _, l := range logs {
		for _, m := range reapedRE.FindAllStringSubmatch(l, -1) {
			k, _ := strconv.Atoi(m[1])
			reapedAtStart += k
		}
	}
	var left []int
	gone := time.Now().Add(5 * time.Second)
	for {
		reapGroups(groups)
		left = left[:0]
		for _, g := range groups {
			if err := syscall.Kill(-g, 0); !errors.Is(err, syscall.ESRCH) {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(gone) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, g := range left {
		why := "it was in exec-groups when arr was killed, yet no start reaped it"
		if !atKill[g] {
			why = "it was in exec-groups at none of the kills: the exec handler had not recorded it yet " +
				"(or it was not started by a killed arr)"
		}
		t.Errorf("process group %d is still there after arr stopped: %s; %s", g, describeGroup(g), why)
		_ = syscall.Kill(-g, syscall.SIGKILL) // it still exists: the id is not reused
	}
	if ents, err := os.ReadDir(execPIDDir(data)); err != nil {
		t.Error(err)
	} else if len(ents) > 0 {
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s still holds records after arr stopped: %v", execPIDDir(data), names)
	}

	t.Logf("%d accepted, %d kills (recorded groups alive at each: %v), %d interrupted attempts in %d operations, "+
		"attempt outcomes %v, %d groups reaped at restarts, %d recorded pgids checked, %d refused tries while down; "+
		"load %v, all succeeded at %v",
		acked.Load(), kills, live, interrupted, opsInterrupted, outcomes, reapedAtStart, len(groups), refused.Load(),
		loadTime.Round(time.Millisecond), drainTime.Round(time.Millisecond))
}

// reapedRE finds the count in arr's "killed process groups left by a
// previous run" warning.
var reapedRE = regexp.MustCompile(`killed process groups left by a previous run.*groups=(\d+)`)

// setSubreaper makes the test process a child subreaper until the test ends.
func setSubreaper(t *testing.T) {
	t.Helper()
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", e)
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}

// recordedGroups lists the process groups the commands recorded in dir.
func recordedGroups(t *testing.T, dir string) []int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []int
	for _, e := range ents {
		if g, err := strconv.Atoi(e.Name()); err == nil && g > 1 {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// reapGroups reaps the exited members of the groups that are this process's
// children (orphans it adopted as a subreaper). Only members of those
// groups: arr's own processes, waited for by os/exec, are not in them.
func reapGroups(groups []int) {
	for _, g := range groups {
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-g, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

// liveGroups counts the groups that have a live (not zombie) member.
func liveGroups(groups []int) int {
	byGroup := processGroups()
	n := 0
	for _, g := range groups {
		if slices.ContainsFunc(byGroup[g], func(m member) bool { return m.state != "Z" }) {
			n++
		}
	}
	return n
}

type member struct {
	pid, ppid   int
	state, comm string
}

// processGroups lists the processes of each process group, from /proc.
func processGroups() map[int][]member {
	ents, _ := os.ReadDir("/proc")
	out := map[int][]member{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(b[j+1:])) // f[0] is field 3, the state
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		out[pgrp] = append(out[pgrp], member{pid, ppid, f[0], string(b[i+1 : j])})
	}
	return out
}

// describeGroup lists the members of group g for a failure message.
func describeGroup(g int) string {
	ms := processGroups()[g]
	if len(ms) == 0 {
		return "no member found in /proc"
	}
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("pid %d (%s) state %s ppid %d", m.pid, m.comm, m.state, m.ppid))
	}
	return strings.Join(s, "; ")
}
