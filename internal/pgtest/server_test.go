package pgtest

import (
	"os/exec"
	"testing"
)

func TestPrivateServerSurvivesKill(t *testing.T) {
	s := StartServer(t)
	psql := func(sql string) string {
		out, err := exec.Command("psql", s.URL, "-tAc", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", sql, err, out)
		}
		return string(out)
	}
	psql("create table t(x int); insert into t values (42)")
	s.Kill()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := psql("select x from t"); got != "42\n" {
		t.Fatalf("after kill and restart: %q", got)
	}
}
