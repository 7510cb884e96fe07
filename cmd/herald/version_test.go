package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/herald-sse/herald", Version: "v0.0.0-20250131100000-0f3c2a1b4d5e+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0f3c2a1b4d5e6f708192a3b4c5d6e7f8091a2b3c"},
			{Key: "vcs.time", Value: "2025-01-31T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	want := "herald v0.0.0-20250131100000-0f3c2a1b4d5e+dirty (github.com/herald-sse/herald, revision 0f3c2a1b4d5e6f708192a3b4c5d6e7f8091a2b3c, 2025-01-31T10:00:00Z, modified) " +
		runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if got := versionLine(bi); got != want {
		t.Errorf("versionLine:\n got %q\nwant %q", got, want)
	}
	// go install …@v1.2.0: a version, no VCS settings.
	bi = &debug.BuildInfo{Main: debug.Module{Path: "github.com/herald-sse/herald", Version: "v1.2.0"}}
	if got := versionLine(bi); !strings.HasPrefix(got, "herald v1.2.0 (github.com/herald-sse/herald) go") {
		t.Errorf("versionLine of a release: %q", got)
	}
	if got := versionLine(nil); !strings.Contains(got, "no build information") {
		t.Errorf("versionLine without build information: %q", got)
	}
}

// A built herald reports what `go version -m` says it was built from.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if code := run(context.Background(), args, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "herald ") {
			t.Errorf("herald %q: exit %d, %q", args, code, out.String())
		}
	}
	if code := run(context.Background(), []string{"version", "extra"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("herald version extra: exit %d, want 2", code)
	}

	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var version, revision string
	for line := range strings.SplitSeq(string(meta), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			version = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	if version == "" || !strings.HasPrefix(string(out), "herald "+version+" (github.com/herald-sse/herald") {
		t.Errorf("herald version printed %q; go version -m says the module is at %q", out, version)
	}
	if revision != "" && !strings.Contains(string(out), "revision "+revision) {
		t.Errorf("herald version printed %q; go version -m says revision %s", out, revision)
	}
	t.Logf("%s", out)
}
