package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverProbe measures the server: its processes' RSS from /proc when it
// runs on this machine, its goroutines (and RSS) from /metrics when it
// serves Prometheus metrics. With several targets (a cluster) it measures
// them all and adds up: the RSS of every process listening on a target
// port, the gauges of every target's /metrics.
type serverProbe struct {
	pids        []int
	ports       []uint16 // the target ports pids were found listening on
	metricsURLs []string // one per distinct target address
	client      *http.Client
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
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	// The distinct target addresses, and a /metrics URL for each.
	var targets []netip.AddrPort
	var remote []string
	for i, t := range p.targets {
		if slices.Contains(targets, t.Addr) {
			continue
		}
		targets = append(targets, t.Addr)
		u := p.streamURLs[i]
		sp.metricsURLs = append(sp.metricsURLs, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/metrics"}).String())
		if !isLocal(t.Addr.Addr()) {
			remote = append(remote, t.Addr.String())
		}
	}
	switch {
	case len(p.cfg.ServerPIDs) > 0:
		sp.pids = p.cfg.ServerPIDs
	case len(remote) == 1 && len(targets) == 1:
		notes = append(notes, "server RSS not measured: the target is not on this machine")
	case len(remote) == len(targets):
		notes = append(notes, "server RSS not measured: no target is on this machine")
	case len(remote) > 0:
		notes = append(notes, fmt.Sprintf("server RSS not measured: targets %s are not on this machine (use --server-pid for the local ones)", strings.Join(remote, ", ")))
	default:
		pids, missing, err := listeningPIDs(targets...)
		switch {
		case err != nil:
			notes = append(notes, "server RSS not measured: "+err.Error())
		case len(missing) > 0:
			// A sum over some of the nodes, divided by every stream,
			// would mislead.
			ports := make([]string, len(missing))
			for i, m := range missing {
				ports[i] = strconv.Itoa(int(m.Port()))
			}
			notes = append(notes, fmt.Sprintf("server RSS not measured: no process of ours found listening on port %s (use --server-pid)", strings.Join(ports, ", ")))
		default:
			sp.pids = pids
			for _, t := range targets {
				if !slices.Contains(sp.ports, t.Port()) {
					sp.ports = append(sp.ports, t.Port())
				}
			}
		}
	}
	for _, pid := range sp.pids {
		if pid == os.Getpid() {
			notes = append(notes, "the server runs in this process: its RSS includes the client's")
		}
	}
	return sp, notes
}

// sample reads the server's RSS and /metrics now: sums over its
// processes and over the targets' /metrics. A gauge that some target does
// not serve is left out (zero), as a partial sum would mislead.
func (sp *serverProbe) sample(ctx context.Context) serverSample {
	var s serverSample
	for _, pid := range sp.pids {
		if rss, err := readRSS(pid); err == nil {
			s.rss += rss
		}
	}
	gauges := make([][2]int64, len(sp.metricsURLs))
	var wg sync.WaitGroup
	for i, u := range sp.metricsURLs {
		wg.Go(func() { gauges[i][0], gauges[i][1] = sp.scrape(ctx, u) })
	}
	wg.Wait()
	for i, g := range gauges {
		if i == 0 || s.goroutines > 0 && g[0] > 0 {
			s.goroutines += g[0]
		} else {
			s.goroutines = 0
		}
		if i == 0 || s.metricsRSS > 0 && g[1] > 0 {
			s.metricsRSS += g[1]
		} else {
			s.metricsRSS = 0
		}
	}
	return s
}

// shared reports whether some target port is served by several of the
// measured processes (SO_REUSEPORT), so that its /metrics answer is one
// process's and the goroutines counted are not all of the server's.
func (sp *serverProbe) shared() bool { return len(sp.pids) > len(sp.metricsURLs) }

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

// scrape reads go_goroutines and process_resident_memory_bytes from a
// target's /metrics, if it serves them.
func (sp *serverProbe) scrape(ctx context.Context, metricsURL string) (goroutines, rss int64) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
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

// listeningPIDs finds the processes with a socket listening on a target's
// port at the target's address or a wildcard: several per target with
// SO_REUSEPORT, one per target for the nodes of a cluster. pids lists
// each process once; missing are the targets no process of ours listens
// on.
func listeningPIDs(targets ...netip.AddrPort) (pids []int, missing []netip.AddrPort, err error) {
	inodes := map[string][]int{} // socket inode → indexes in targets
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		r, err := os.Open(f)
		if err != nil {
			continue
		}
		maps.Copy(inodes, listenInodes(r, targets...))
		r.Close()
	}
	found := make([]bool, len(targets))
	if len(inodes) > 0 {
		if pids, err = inodePIDs(inodes, found); err != nil {
			return nil, nil, err
		}
	}
	for i, t := range targets {
		if !found[i] {
			missing = append(missing, t)
		}
	}
	return pids, missing, nil
}

// inodePIDs finds the processes holding the sockets of inodes, marking in
// found the targets they listen for.
func inodePIDs(inodes map[string][]int, found []bool) ([]int, error) {
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
			ino, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			if ts, ok := inodes[strings.TrimSuffix(ino, "]")]; ok {
				for _, t := range ts {
					found[t] = true
				}
				if !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids, nil
}

// listenInodes returns the inodes of sockets in a /proc/net/tcp{,6} table
// that listen on a target's port, at its address or a wildcard, each with
// the indexes of the targets it serves. It reads in large pieces because
// the kernel walks the socket table from the start for every read call,
// and skips other sockets cheaply: tens of thousands of TIME_WAIT ones
// may be listed after a big run.
func listenInodes(table io.Reader, targets ...netip.AddrPort) map[string][]int {
	inodes := map[string][]int{}
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
		if err != nil {
			continue
		}
		a, ok := parseProcAddr(hexAddr)
		if !ok {
			continue
		}
		for i, t := range targets {
			if uint16(port) == t.Port() && (a.IsUnspecified() || a.Unmap() == t.Addr()) {
				inodes[f[9]] = append(inodes[f[9]], i)
			}
		}
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
