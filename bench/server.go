package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// serverProbe measures the server: its processes' RSS from /proc when it
// runs on this machine, its goroutines (and RSS) from /metrics when it
// serves Prometheus metrics.
type serverProbe struct {
	pids       []int
	metricsURL string
	client     *http.Client
}

// serverSample is one measurement; zero fields were not available.
type serverSample struct {
	rss        int64
	goroutines int64
	metricsRSS int64
}

func newServerProbe(ctx context.Context, p *plan) (*serverProbe, []string) {
	var notes []string
	sp := &serverProbe{
		metricsURL: (&url.URL{Scheme: p.streamURL.Scheme, Host: p.streamURL.Host, Path: "/metrics"}).String(),
		client:     &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	switch {
	case len(p.cfg.ServerPIDs) > 0:
		sp.pids = p.cfg.ServerPIDs
	case !isLocal(p.target.Addr()):
		notes = append(notes, "server RSS not measured: the target is not on this machine")
	default:
		pids, err := listeningPIDs(p.target)
		switch {
		case err != nil:
			notes = append(notes, "server RSS not measured: "+err.Error())
		case len(pids) == 0:
			notes = append(notes, fmt.Sprintf("server RSS not measured: no process of ours found listening on port %d (use --server-pid)", p.target.Port()))
		}
		sp.pids = pids
	}
	for _, pid := range sp.pids {
		if pid == os.Getpid() {
			notes = append(notes, "the server runs in this process: its RSS includes the client's")
		}
	}
	return sp, notes
}

// sample reads the server's RSS and /metrics now.
func (sp *serverProbe) sample(ctx context.Context) serverSample {
	var s serverSample
	for _, pid := range sp.pids {
		if rss, err := readRSS(pid); err == nil {
			s.rss += rss
		}
	}
	s.goroutines, s.metricsRSS = sp.scrape(ctx)
	return s
}

// settle samples the server until its RSS stops moving (two samples
// 200 ms apart within 64 KiB), for at most two seconds.
func (sp *serverProbe) settle(ctx context.Context) serverSample {
	s := sp.sample(ctx)
	if len(sp.pids) == 0 {
		return s
	}
	for range 10 {
		select {
		case <-ctx.Done():
			return s
		case <-time.After(200 * time.Millisecond):
		}
		n := sp.sample(ctx)
		d := n.rss - s.rss
		s = n
		if d < 64<<10 && d > -64<<10 {
			break
		}
	}
	return s
}

// scrape reads go_goroutines and process_resident_memory_bytes from the
// target's /metrics, if it serves them.
func (sp *serverProbe) scrape(ctx context.Context) (goroutines, rss int64) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sp.metricsURL, nil)
	if err != nil {
		return 0, 0
	}
	resp, err := sp.client.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0
	}
	return parseMetrics(io.LimitReader(resp.Body, 8<<20))
}

// parseMetrics reads two gauges from the Prometheus text format.
func parseMetrics(r io.Reader) (goroutines, rss int64) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			goroutines = int64(v)
		case "process_resident_memory_bytes":
			rss = int64(v)
		}
	}
	return goroutines, rss
}

// readRSS returns a process's resident set size from /proc.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(v))
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// isLocal reports whether a is an address of this machine.
func isLocal(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// listeningPIDs finds the processes with a socket listening on target's
// port at target's address or a wildcard: several with SO_REUSEPORT.
func listeningPIDs(target netip.AddrPort) ([]int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		r, err := os.Open(f)
		if err != nil {
			continue
		}
		for _, ino := range listenInodes(r, target) {
			inodes[ino] = true
		}
		r.Close()
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue // another user's, or gone
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// listenInodes returns the inodes of sockets in a /proc/net/tcp{,6} table
// that listen on target's port, at its address or a wildcard. It reads in
// large pieces because the kernel walks the socket table from the start
// for every read call, and skips other sockets cheaply: tens of thousands
// of TIME_WAIT ones may be listed after a big run.
func listenInodes(table io.Reader, target netip.AddrPort) []string {
	var inodes []string
	sc := bufio.NewScanner(table)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Scan() // header
	for sc.Scan() {
		line := sc.Bytes()
		// The state column is the only one that can read " 0A "
		// (TCP_LISTEN): the others are hex with colons, or decimal.
		if !bytes.Contains(line, []byte(" 0A ")) {
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || uint16(port) != target.Port() {
			continue
		}
		a, ok := parseProcAddr(hexAddr)
		if !ok || !(a.IsUnspecified() || a.Unmap() == target.Addr()) {
			continue
		}
		inodes = append(inodes, f[9])
	}
	return inodes
}

// parseProcAddr decodes an address as /proc/net/tcp prints it: 32-bit
// words in host (little-endian on our platforms) byte order.
func parseProcAddr(s string) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return a, true
}
