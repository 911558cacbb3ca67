package executor

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// browser finds headless Chromium (scripts/ensure-deps installs it). Without
// it the test skips, except under CI=true, where it fails.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH (scripts/ensure-deps installs it); under CI=true the browser test cannot skip")
	}
	t.Skip("no chromium on PATH (scripts/ensure-deps installs it)")
	return ""
}

// headless runs Chromium on the file with args, and returns its standard
// output.
func headless(t *testing.T, bin, file string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args = append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)
	args = append(args, "file://"+file)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

const browserRunbook = `version: 1
name: timeline
params:
  url: {secret: true}
  target: {secret: true}
  token: {secret: true}
  marker: {}
connections:
  db: ${{ params.url }}
  target: ${{ params.target }}
steps:
  - id: schema
    name: Create <items> & fill them
    sql:
      on: db
      script: |
        CREATE TABLE items (id int PRIMARY KEY, name text);
        INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
        CREATE TABLE big (id int PRIMARY KEY, pad text);
        INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g;
  - id: copy
    copy: {from: db, to: target, jobs: 2, split_larger_than: 128kB}
  - id: flaky
    retry: {attempts: 2, delay: 50ms}
    shell:
      run: 'sleep 0.05; echo "token $TOKEN"; if [ ! -f "$M" ]; then touch "$M"; echo "not yet with $TOKEN" >&2; exit 1; fi'
      env: {M: '${{ params.marker }}', TOKEN: '${{ params.token }}'}
  - id: gate
    confirm: Put the application in maintenance mode.
  - id: shout
    generate:
      on: db
      query: SELECT format('UPDATE items SET name = upper(name) WHERE id = %s', id) FROM items ORDER BY id
  - id: migrate
    shell: {run: 'sleep 0.1; echo "migration failed" >&2; exit 3'}
  - id: verify
    assert:
      on: db
      query: SELECT count(*) AS n FROM items WHERE name = upper(name)
      that: row.n == 5
`

// TestReportHTMLInBrowser renders the HTML report of a real run (a pause
// for approval, a resume that fails, a resume that finishes; a retry; SQL
// on a real server) and loads it in headless Chromium: after the page's
// script ran, every bar of the timeline has a size on the page, each step
// that ran has its bar, and the screenshot shows the bars' colours.
func TestReportHTMLInBrowser(t *testing.T) {
	bin := browser(t)
	srv := pgtest.Shared(t)
	url, target := srv.NewDatabase(t), srv.NewDatabase(t)
	dir := t.TempDir()
	vars := []string{"url=" + url, "target=" + target, "token=s3cr3t-html-token", "marker=" + filepath.Join(dir, "marker")}
	if err := logRun(t, dir, browserRunbook, vars, Options{Operator: "alice", Ticket: "CHG-16", Version: "test"}); exitcode.Of(err) != exitcode.Approval {
		t.Fatalf("first invocation: exit %d (%v), want 3", exitcode.Of(err), err)
	}
	time.Sleep(300 * time.Millisecond) // a gap between the invocations
	if err := logRun(t, dir, "", vars, Options{Resume: true, Approve: []string{"gate"}, Operator: "bob", Version: "test"}); exitcode.Of(err) != exitcode.StepFailed {
		t.Fatalf("second invocation: exit %d (%v), want 1", exitcode.Of(err), err)
	}
	fixed := strings.Replace(browserRunbook, "exit 3", "exit 0", 1)
	if err := logRun(t, dir, fixed, vars, Options{Resume: true, Operator: "alice", Version: "test"}); err != nil {
		t.Fatalf("third invocation: %v", err)
	}

	rep, err := BuildReport(ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: filepath.Join(dir, "audit.log")})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if strings.Contains(html, "s3cr3t") {
		t.Error("the HTML report holds the secret")
	}
	if !strings.Contains(html, "not yet with ***") {
		t.Error("the HTML report lacks the failed attempt's stderr, masked")
	}
	if strings.Contains(html, "<items>") || !strings.Contains(html, "Create &lt;items&gt; &amp; fill them") {
		t.Error("a step's title is not escaped")
	}
	// The copy's parts (copy.part.start, copy.part.end) are lanes.
	if !strings.Contains(html, `data-part="public.big#1"`) || !strings.Contains(html, `data-part="public.items"`) ||
		!strings.Contains(html, `<g class="row lane" data-row="copy">`) {
		t.Error("the copy's parts have no lanes on the timeline")
	}
	for _, want := range []string{`id="audit-head">` + rep.Verify.Head + `<`, `data-invocation="3"`, "approved by", `class="bar attempt-failed"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	bars := strings.Count(html, `<rect class="bar `)
	dom := string(headless(t, bin, file, "--dump-dom"))
	m := regexp.MustCompile(`data-bars-drawn="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("after load the DOM has no data-bars-drawn: the page's script did not run\n%.2000s", dom)
	}
	if n, _ := strconv.Atoi(m[1]); n != bars || n < 7 {
		t.Errorf("the browser drew %s bars of %d (want all, at least 7)", m[1], bars)
	}
	for _, id := range []string{"schema", "copy", "flaky", "gate", "shout", "migrate", "verify"} {
		if !strings.Contains(dom, `data-step="`+id+`"`) {
			t.Errorf("the timeline has no bar of step %s", id)
		}
	}
	if regexp.MustCompile(`<rect class="bar [^>]*><title>`).MatchString(dom) {
		t.Error("the script did not take over the bars' tooltips")
	}

	// It prints (the print stylesheet fits the timeline on a page).
	pdf := filepath.Join(dir, "report.pdf")
	headless(t, bin, file, "--no-pdf-header-footer", "--print-to-pdf="+pdf)
	if b, err := os.ReadFile(pdf); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) || !bytes.Contains(b, []byte("/Type /Page")) {
		t.Errorf("printing to PDF: %v, %d bytes", err, len(b))
	}

	shot := filepath.Join(dir, "report.png")
	headless(t, bin, file, "--screenshot="+shot, "--window-size=1280,1400", "--hide-scrollbars")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The legend's swatches and the status words have a few hundred pixels
	// of these colours; the bars more than a thousand (the failed one's
	// width is its share of the run's time, which varies with the machine's
	// load: 1,350 to 2,500 pixels seen).
	counts := colourCounts(img, map[string][3]uint8{"ok": {0x2f, 0x9e, 0x5b}, "failed": {0xd6, 0x45, 0x45}})
	t.Logf("screenshot %v: pixels of the bars' colours %v", img.Bounds().Size(), counts)
	for name, n := range counts {
		if n < 1000 {
			t.Errorf("the screenshot has %d pixels of the %s bars' colour: the timeline is not drawn", n, name)
		}
	}
}

// colourCounts counts the pixels of img near each colour.
func colourCounts(img image.Image, colours map[string][3]uint8) map[string]int {
	out := map[string]int{}
	for name := range colours {
		out[name] = 0
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(r>>8, c[0]) && near(g>>8, c[1]) && near(bl>>8, c[2]) {
					out[name]++
				}
			}
		}
	}
	return out
}

func near(v uint32, c uint8) bool {
	d := int(v) - int(c)
	return d >= -12 && d <= 12
}
