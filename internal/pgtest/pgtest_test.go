package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestSharedIsolatedDatabases(t *testing.T) {
	s := Shared(t)
	if s != Shared(t) {
		t.Fatal("Shared returned two different servers")
	}
	a := s.NewDatabase(t)
	b := s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	dbA, dbB := DatabaseName(t, a), DatabaseName(t, b)
	if !s.External() && !strings.HasSuffix(a, "/"+dbA+"?sslmode=disable") {
		t.Errorf("odd URL %s", a)
	}
	s.Exec(t, dbA, "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1), (2)")
	if got := s.QueryValue(t, dbA, "SELECT count(*) FROM only_in_a"); got != "2" {
		t.Errorf("count in %s = %s, want 2", dbA, got)
	}
	if got := s.QueryValue(t, dbB, "SELECT count(*) FROM pg_class WHERE relname = $1", "only_in_a"); got != "0" {
		t.Errorf("table of %s visible in %s", dbA, dbB)
	}
	if got := s.QueryValue(t, dbA, "SELECT current_setting('fsync')"); !s.External() && got != "off" {
		t.Errorf("fsync = %s, want off", got)
	}
	rows := s.Query(t, dbA, "SELECT NULL::text, 'x', 1.5::numeric, true")
	if want := []string{"", "x", "1.5", "t"}; strings.Join(rows[0], "|") != strings.Join(want, "|") {
		t.Errorf("Query row = %q, want %q", rows[0], want)
	}
	t.Run("dropped", func(t *testing.T) {
		var url string
		t.Run("inner", func(t *testing.T) { url = s.NewDatabase(t) })
		name := DatabaseName(t, url)
		if got := s.QueryValue(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = $1", name); got != "0" {
			t.Errorf("database %s still exists after its test ended", name)
		}
	})
}

func TestPairDistinctClusters(t *testing.T) {
	start := time.Now()
	src, dst := Pair(t)
	t.Logf("Pair started in %v", time.Since(start))
	if src.External() {
		t.Skip("RUNBOOK_TEST_DATABASE_URL is set: Pair returns one server")
	}
	if src.Port == dst.Port || src.DataDir == dst.DataDir {
		t.Fatalf("Pair shares port or data directory: %+v %+v", src, dst)
	}
	idSrc := src.QueryValue(t, "postgres", "SELECT system_identifier FROM pg_control_system()")
	idDst := dst.QueryValue(t, "postgres", "SELECT system_identifier FROM pg_control_system()")
	if idSrc == idDst {
		t.Errorf("both clusters have system identifier %s", idSrc)
	}
	for _, name := range []string{"pg_dump", "pg_restore", "psql"} {
		if _, err := os.Stat(filepath.Join(src.BinDir, name)); err != nil {
			t.Errorf("BinDir %s: %v", src.BinDir, err)
		}
	}
}

func TestNewClusterStoppedAndRemoved(t *testing.T) {
	var s *Server
	var took time.Duration
	t.Run("inner", func(t *testing.T) {
		start := time.Now()
		s = NewCluster(t, WithFsync(), WithSetting("cluster_name", "it's pgtest"))
		took = time.Since(start)
		if s.External() {
			t.Skip("RUNBOOK_TEST_DATABASE_URL is set")
		}
		if got := s.QueryValue(t, "postgres", "SELECT current_setting('fsync')"); got != "on" {
			t.Errorf("WithFsync: fsync = %s", got)
		}
		if got := s.QueryValue(t, "postgres", "SHOW cluster_name"); got != "it's pgtest" {
			t.Errorf("WithSetting: cluster_name = %q", got)
		}
	})
	if s == nil || s.External() {
		return
	}
	t.Logf("NewCluster started in %v", took)
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Errorf("data directory %s still there after the test: %v", s.DataDir, err)
	}
}

func TestPgaudit(t *testing.T) {
	s := NewCluster(t, WithPgaudit())
	db := DatabaseName(t, s.NewDatabase(t))
	if got := s.QueryValue(t, db, "SHOW pgaudit.log"); got != "all" {
		t.Errorf("SHOW pgaudit.log = %q, want all", got)
	}
	if got := s.QueryValue(t, db, "SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'"); got != "1" {
		t.Errorf("new database lacks the pgaudit extension")
	}
	if s.External() {
		return
	}
	s.Exec(t, db, "CREATE TABLE audited (x int)")
	log, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "AUDIT: SESSION") {
		t.Errorf("no AUDIT lines in %s", s.LogFile)
	}
}

func TestUnavailable(t *testing.T) {
	t.Setenv("CI", "")
	var skipped bool
	t.Run("local", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		unavailable(t, "because %s", "reasons")
	})
	if !skipped {
		t.Error("unavailable did not skip without CI=true")
	}
}

// TestUnavailableFailsUnderCI runs the test binary again with CI=true to
// check that an unavailable PostgreSQL fails the test there.
func TestUnavailableFailsUnderCI(t *testing.T) {
	if os.Getenv("PGTEST_UNAVAILABLE_CHILD") != "" {
		unavailable(t, "because %s", "reasons")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableFailsUnderCI$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CI=true", "PGTEST_UNAVAILABLE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--- FAIL") || !strings.Contains(string(out), "because reasons") {
		t.Errorf("under CI=true: err=%v, output:\n%s", err, out)
	}
}

func TestHasLibrary(t *testing.T) {
	for list, want := range map[string]bool{
		"pgaudit":                       true,
		"pg_stat_statements, pgaudit":   true,
		`"pgaudit",pg_stat_statements`:  true,
		"pgaudit_other":                 false,
		"":                              false,
		"pg_stat_statements,pgauditlog": false,
	} {
		if got := hasLibrary(list, "pgaudit"); got != want {
			t.Errorf("hasLibrary(%q) = %v", list, got)
		}
	}
}

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Logf("Available: %v", err)
	}
}
