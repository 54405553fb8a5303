//go:build unix

package command

import (
	"errors"
	"os/exec"
	"testing"
	"time"
)

// waitExited returns once the child has exited, not before, and leaves it
// to be reaped by Wait, which still gets its status; also for a child that
// has exited before waitExited is called.
func TestWaitExitedDoesNotReap(t *testing.T) {
	for _, c := range []struct {
		name   string
		script string
		before time.Duration // how long to let the child run first
		least  time.Duration // the least waitExited can take from the start
	}{
		{"running", "sleep 0.2; exit 7", 0, 200 * time.Millisecond},
		{"exited", "exit 7", 200 * time.Millisecond, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			cmd := exec.Command("/bin/sh", "-c", c.script)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(c.before)
			done := make(chan error, 1)
			go func() { done <- waitExited(cmd.Process.Pid) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("waitExited: %v", err)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("waitExited did not return")
			}
			if d := time.Since(start); d < c.least {
				t.Errorf("waitExited returned after %v, before the child could exit", d)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 7 {
				t.Errorf("Wait after waitExited = %v, want exit status 7 (was the child reaped?)", err)
			}
		})
	}
}
