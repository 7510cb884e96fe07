// Package servicetest gives integration tests the brokers they run
// against: the shared Redis and NATS servers named by environment
// variables (.ci/run sets them), and private servers a test may stop and
// restart to see an outage without disturbing anyone else.
//
// Without the variables, tests that need them skip and say how to run
// them.
package servicetest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment variables naming the services. They are not herald serve's
// own (HERALD_REDIS_URL would put every serve a test starts in cluster
// mode).
const (
	// RedisURLEnv is the URL of a running Redis, e.g. redis://127.0.0.1:6379.
	RedisURLEnv = "HERALD_TEST_REDIS_URL"
	// NATSURLEnv is the URL of a running NATS server with JetStream,
	// e.g. nats://127.0.0.1:4222.
	NATSURLEnv = "HERALD_TEST_NATS_URL"
	// RedisServerEnv is the path of a redis-server binary, for tests
	// that run their own.
	RedisServerEnv = "HERALD_TEST_REDIS_SERVER"
	// NATSServerEnv is the path of a nats-server binary, for tests that
	// run their own.
	NATSServerEnv = "HERALD_TEST_NATS_SERVER"
)

func need(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("%s not set: this test needs %s; run `bash .ci/run`, or set %s (see scripts/test)", env, what, env)
	}
	return v
}

// RedisURL returns the shared Redis's URL, or skips t.
func RedisURL(t testing.TB) string { return need(t, RedisURLEnv, "a Redis server") }

// NATSURL returns the shared NATS server's URL, or skips t.
func NATSURL(t testing.TB) string { return need(t, NATSURLEnv, "a NATS server with JetStream") }

// Server is a broker server of the test's own, on a free port, keeping
// its data in a temporary directory across Stop and Start.
type Server struct {
	// URL is where clients reach it.
	URL string

	t     testing.TB
	bin   string
	args  []string
	ready func() error
	cmd   *exec.Cmd
	exit  chan struct{}
}

// StartRedis starts a private redis-server that writes every command to
// its append-only file before answering (so an acknowledged write
// survives a kill), or skips t.
func StartRedis(t testing.TB) *Server {
	t.Helper()
	bin := need(t, RedisServerEnv, "a redis-server binary to run")
	dir, port := t.TempDir(), freePort(t)
	s := &Server{t: t, bin: bin, URL: fmt.Sprintf("redis://127.0.0.1:%d", port),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", dir + "/redis.log"}}
	s.ready = func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("PING answered %q", line)
		}
		return nil
	}
	s.Start()
	return s
}

// StartNATS starts a private nats-server with JetStream storing on disk,
// or skips t.
func StartNATS(t testing.TB) *Server {
	t.Helper()
	bin := need(t, NATSServerEnv, "a nats-server binary to run")
	dir, port, mon := t.TempDir(), freePort(t), freePort(t)
	s := &Server{t: t, bin: bin, URL: fmt.Sprintf("nats://127.0.0.1:%d", port),
		args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon), "-js", "-sd", dir, "-l", dir + "/nats.log"}}
	s.ready = func() error {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", mon))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	}
	s.Start()
	return s
}

// Start (re)starts the server on its port and data, and waits until it
// serves.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("servicetest: %s already running", s.bin)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("servicetest: start %s: %v", s.bin, err)
	}
	s.cmd, s.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) { cmd.Wait(); close(exit) }(s.exit)
	s.t.Cleanup(s.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.ready()
		if err == nil {
			return
		}
		select {
		case <-s.exit:
			s.t.Fatalf("servicetest: %s %s exited at start", s.bin, strings.Join(s.args, " "))
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("servicetest: %s not ready after 30 s: %v", s.bin, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we cannot be notified by
	}
}

// Stop kills the server, as a crash would, and waits until it is gone.
// It is a no-op if the server is stopped.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
