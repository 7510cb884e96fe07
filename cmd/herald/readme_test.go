package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock returns the first ```sh block of README.md, after the
// heading, that contains marker.
func readmeBlock(t *testing.T, heading, marker string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	if next := strings.Index(rest, "\n## "); next >= 0 {
		rest = rest[:next]
	}
	for {
		_, block, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			t.Fatalf("README.md: no sh block with %q under %q", marker, heading)
		}
		block, rest, _ = strings.Cut(block, "```\n")
		if strings.Contains(block, marker) {
			return block
		}
	}
}

// freePort returns a port nothing listens on just now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// runReadme runs a README example in bash as pasted, in a directory of its
// own, with ./herald being this package built and the README's ports
// replaced by free ones (so that it does not meet another hub), and
// returns what it printed. Everything it started is killed at the end.
func runReadme(t *testing.T, script string, replace ...string) string {
	t.Helper()
	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	p0, p1, p2 := freePort(t), freePort(t), freePort(t)
	replace = append(replace, "./herald ", bin+" ", "8080", p0, "8081", p1, "8082", p2)
	script = strings.NewReplacer(replace...).Replace(script)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = t.TempDir()
	// Only what the example sets: no HERALD_* of the test's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HERALD_ADDR=:"+p0, "HERALD_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: the hubs and curls left running in the
	// background would hold a pipe open after bash exits.
	outFile, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what the example left running
	}
	out, rerr := os.ReadFile(outFile.Name())
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("README example failed: %v\n--- script\n%s\n--- output\n%s", err, script, out)
	}
	t.Logf("output:\n%s", out)
	return string(out)
}

// The README's examples work when pasted: the publish reaches the
// subscriber started just before it (the authentication example used to
// publish before the stream was open, and lose the event).
func TestReadmeExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald and runs the README's shell examples")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README examples need %s: %v", tool, err)
		}
	}
	t.Run("go run", func(t *testing.T) {
		// The README's first command, as written, from the repository
		// root: it runs until stopped, so it passes once the hub serves.
		block := readmeBlock(t, "## Quickstart", "go run")
		if block != "go run ./cmd/herald serve\n" {
			t.Fatalf("the quickstart's first command is %q, want the hub run from source", block)
		}
		port := freePort(t)
		out := runReadmeUntil(t, "../..", block, "publish token (this run only", "HERALD_ADDR=:"+port)
		if !strings.Contains(out, "herald serving on http://localhost:"+port+"\n") {
			t.Errorf("go run ./cmd/herald serve did not say where it serves:\n%s", out)
		}
	})
	t.Run("quickstart", func(t *testing.T) {
		out := runReadme(t, readmeBlock(t, "## Quickstart", "serve.out"))
		for _, want := range []string{"publish token (this run only", "page that publishes with it: http://localhost:", `{"id":"`, "event: herald.connected", "data: hello"} {
			if !strings.Contains(out, want) {
				t.Errorf("quickstart printed no %q", want)
			}
		}
	})
	t.Run("authentication", func(t *testing.T) {
		out := runReadme(t, readmeBlock(t, "## Authentication", "serve"))
		if !strings.Contains(out, `{"id":"`) || !strings.Contains(out, "\ndata: hello\n") {
			t.Errorf("the subscriber did not get the event")
		}
	})
	t.Run("cluster", func(t *testing.T) {
		url := os.Getenv("HERALD_TEST_REDIS_URL")
		if url == "" {
			t.Skip("set HERALD_TEST_REDIS_URL (redis://127.0.0.1:6379) to run the cluster example")
		}
		prefix := "herald-readme-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		block := readmeBlock(t, "## Cluster mode", "serve")
		if !strings.Contains(block, "--redis-prefix myapp") {
			t.Fatalf("the cluster example sets no --redis-prefix of its own:\n%s", block)
		}
		out := runReadme(t, block, "redis://127.0.0.1:6379", url, "--redis-prefix myapp", "--redis-prefix "+filepath.Base(prefix))
		if !strings.Contains(out, `{"id":"`) || !strings.Contains(out, "\ndata: hello\n") {
			t.Errorf("the subscriber on the second node did not get the event")
		}
	})
}

// runReadmeUntil runs script in bash in dir, with env added to an
// environment free of the test's HERALD_* variables, until its output
// has a line starting with ready, and returns the output up to then. It
// fails the test if the script ends first or ready takes over 2 minutes
// (go run may have to build).
func runReadmeUntil(t *testing.T, dir, script, ready string, env ...string) string {
	t.Helper()
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	// go run starts herald as a child: kill the whole group.
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out strings.Builder
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("%s ended before printing %q:\n%s", script, ready, out.String())
			}
			out.WriteString(line + "\n")
			if strings.HasPrefix(line, ready) {
				// Drain the rest so the reader goroutine ends with the
				// killed group.
				go func() {
					for range lines {
					}
				}()
				return out.String()
			}
		case <-timeout:
			t.Fatalf("%s printed no %q within 2 minutes:\n%s", script, ready, out.String())
		}
	}
}
