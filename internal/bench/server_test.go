package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestListenInodes(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0
   2: 0200007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0
   4: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0
`
	got := listenInodes(strings.NewReader(table), netip.MustParseAddrPort("127.0.0.1:8080"))
	if want := map[string][]int{"111": {0}, "222": {0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("inodes %v, want %v (wildcard and exact LISTEN sockets on port 8080)", got, want)
	}
	// The nodes of a cluster: one port each, and a wildcard socket
	// serving two targets.
	got = listenInodes(strings.NewReader(table), netip.MustParseAddrPort("127.0.0.2:8080"), netip.MustParseAddrPort("127.0.0.1:8081"),
		netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("127.0.0.1:8082"))
	if want := map[string][]int{"111": {0, 2}, "222": {2}, "333": {0}, "555": {1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("cluster inodes %v, want %v", got, want)
	}
	table6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0
`
	if got := listenInodes(strings.NewReader(table6), netip.MustParseAddrPort("[::1]:8080")); !reflect.DeepEqual(got, map[string][]int{"666": {0}, "777": {0}}) {
		t.Errorf("tcp6 inodes %v", got)
	}
}

func TestListeningPIDsFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	unused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	none := netip.MustParseAddrPort(unused.Addr().String())
	unused.Close()
	pids, missing, err := listeningPIDs(netip.MustParseAddrPort(ln.Addr().String()), netip.MustParseAddrPort(ln2.Addr().String()), none)
	if err != nil || !slices.Equal(pids, []int{os.Getpid()}) || !slices.Equal(missing, []netip.AddrPort{none}) {
		t.Errorf("pids %v, missing %v, %v; want this process once, and %v missing", pids, missing, err, none)
	}
	rss, err := readRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("RSS %d, %v", rss, err)
	}
}

func TestServerMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 1234\n"+
			"go_goroutines_other 5\nprocess_resident_memory_bytes 5.24288e+07\n")
	}))
	defer srv.Close()
	p, err := newPlan(context.Background(), Config{URL: srv.URL + "/events", Streams: 1, PublishURL: PublishNone, ServerPIDs: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	probe, _ := newServerProbe(context.Background(), p)
	s := probe.sample(context.Background())
	if s.goroutines != 1234 || s.metricsRSS != 52428800 || s.rss == 0 {
		t.Errorf("sample %+v", s)
	}
	r := serverResult(probe, serverSample{goroutines: 34, metricsRSS: 1 << 20}, s, 600)
	if r.Source != "proc" || r.GoroutinesPerStream != 2 || r.RSSAfterBytes != s.rss {
		t.Errorf("result %+v", r)
	}
	probe.pids = nil
	r = serverResult(probe, serverSample{goroutines: 34, metricsRSS: 1 << 20}, s, 1000)
	if r.Source != "metrics" || r.RSSPerStreamKiB != (52428800.0-(1<<20))/1024/1000 {
		t.Errorf("result from metrics only %+v", r)
	}
	if r := serverResult(probe, serverSample{}, serverSample{}, 10); r != nil {
		t.Errorf("nothing measured, yet %+v", r)
	}
	if g, rss := parseMetrics(strings.NewReader("garbage\ngo_goroutines{x=\"y\"} 7 1700000000\n")); g != 7 || rss != 0 {
		t.Errorf("labels and timestamps: %d %d", g, rss)
	}
}
