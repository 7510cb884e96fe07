package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The first run of the README: `herald serve` without keys prints a link
// to its page carrying the run's publish token; the page opened with it
// publishes at once with the default topics, shows every outcome next to
// the button that caused it within a 1280×900 window, and says why the hub
// refused a stream.
func TestPageFirstRun(t *testing.T) {
	requireBrowser(t)
	bin := filepath.Join(t.TempDir(), "herald")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/herald").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	var base, link string
	sc := bufio.NewScanner(stdout)
	for (base == "" || link == "") && sc.Scan() {
		line := sc.Text()
		if b, ok := strings.CutPrefix(line, "herald serving on "); ok {
			base = b
		}
		if l, ok := strings.CutPrefix(line, "page that publishes with it: "); ok {
			link = l
		}
	}
	if base == "" || !strings.HasPrefix(link, base+"/#token=") {
		t.Fatalf("serve printed address %q and page link %q", base, link)
	}
	go func() { // keep serve's stdout from filling up
		for sc.Scan() {
		}
	}()

	spec := map[string]any{"link": link, "timeoutMs": 20000}
	spec["screenshot"] = filepath.Join(t.TempDir(), "first-run.png")
	if p := os.Getenv("HERALD_SCREENSHOT"); p != "" {
		spec["screenshot"] = p
	}
	var res struct {
		AfterLoad struct{ Href, Hash, Topics string }
		State     string
		Published []struct {
			Text                       string
			OK, OnScreen, BesideButton bool
		}
		Events  []string
		Refused struct {
			Text                   string
			OnScreen, BesideButton bool
		}
		Diagnostics []string
	}
	runNode(t, "firstrun.mjs", base, spec, &res)

	if res.AfterLoad.Hash != "" || strings.Contains(res.AfterLoad.Href, "token") {
		t.Errorf("after load the address is %q: the token should have left it", res.AfterLoad.Href)
	}
	if res.AfterLoad.Topics == "" || strings.Contains(res.AfterLoad.Topics, "*") {
		t.Errorf("default topics %q: want a topic that needs no * right", res.AfterLoad.Topics)
	}
	if res.State != "open" {
		t.Errorf("state after Subscribe %q, want open", res.State)
	}
	if len(res.Published) != 2 {
		t.Fatalf("publish outcomes %+v, want 2", res.Published)
	}
	for i, want := range []struct {
		ok   bool
		text string
	}{{true, "published, id "}, {false, "reserved"}} {
		p := res.Published[i]
		if p.OK != want.ok || !strings.Contains(p.Text, want.text) {
			t.Errorf("publish %d: shown %q (ok %v), want ok %v and %q", i, p.Text, p.OK, want.ok, want.text)
		}
		if !p.OnScreen || !p.BesideButton {
			t.Errorf("publish %d: %q on screen %v, beside the Publish button %v; want both", i, p.Text, p.OnScreen, p.BesideButton)
		}
	}
	if len(res.Events) != 1 || res.Events[0] != "first event" {
		t.Errorf("events shown %q, want the one published", res.Events)
	}
	// The hub's own JSON reason, not just "refused".
	if r := res.Refused; !strings.Contains(r.Text, "400") || !strings.Contains(r.Text, "longer than 1024 bytes") || !r.OnScreen || !r.BesideButton {
		t.Errorf("refused stream shown as %+v; want the hub's 400 and its reason, on screen beside Subscribe", r)
	}
	failed := 0 // the console reports each refused request
	for _, d := range res.Diagnostics {
		if strings.Contains(d, "Failed to load resource") && strings.Contains(d, "status of 400") {
			failed++
			continue
		}
		t.Errorf("page: %s", d)
	}
	if failed == 0 {
		t.Errorf("console reported no refused request; want the publish and the stream")
	}
	t.Logf("screenshot at 1280×900: %s", spec["screenshot"])
}
