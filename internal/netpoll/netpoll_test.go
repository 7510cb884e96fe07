//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// waitEvent runs Wait until key reports an event containing want.
func waitEvent(t *testing.T, p *Poller, key uint64, want Events) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(done); p.Close() })
	defer timer.Stop()
	for {
		var got Events
		if err := p.Wait(func(k uint64, ev Events) {
			if k == key {
				got |= ev
			}
		}); err != nil {
			select {
			case <-done:
				t.Fatalf("no %b event for key %d within 5 s", want, key)
			default:
				t.Fatal(err)
			}
		}
		if got&want == want {
			return
		}
	}
}

func TestPollerReportsDataWritableAndHangup(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client, server := pair(t)
	rc, ok := RawConn(server)
	if !ok {
		t.Fatal("RawConn refused a TCP connection")
	}
	fd, err := FD(rc)
	if err != nil {
		t.Fatal(err)
	}
	const key = 1<<40 + 7 // uses both halves of epoll's data word
	if err := p.Add(fd, key); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, p, key, Writable) // a fresh socket has room

	buf := make([]byte, 16)
	if _, err := Read(fd, buf); err != ErrWouldBlock {
		t.Fatalf("ReadNow on an empty socket: %v, want ErrWouldBlock", err)
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, p, key, Readable)
	if n, err := Read(fd, buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("ReadNow = %q, %v", buf[:n], err)
	}

	// Fill the socket: WriteNow must come up short, not block.
	big := make([]byte, 1<<20)
	var total int
	for {
		n, err := Write(fd, big)
		total += n
		if err == ErrWouldBlock {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total == 0 {
		t.Fatal("nothing written before the socket filled")
	}
	// Reading on the other side makes room: Writable again.
	go io.CopyN(io.Discard, client, int64(total))
	waitEvent(t, p, key, Writable)

	client.SetLinger(0)
	client.Close()
	waitEvent(t, p, key, Hangup)
	for {
		_, err := Read(fd, buf)
		if err == ErrWouldBlock {
			continue
		}
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("ReadNow after a reset: %v, want a connection error", err)
		}
		break
	}
	if err := p.Delete(fd); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWakesWait(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		for {
			if err := p.Wait(func(uint64, Events) {}); err != nil {
				errc <- err
				return
			}
		}
	}()
	p.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Fatalf("Wait after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
}

func TestRawConnRefusesWrappedConns(t *testing.T) {
	c, _ := pair(t)
	type wrapped struct{ net.Conn }
	if _, ok := RawConn(wrapped{c}); ok {
		t.Fatal("RawConn accepted a wrapper that hides the socket")
	}
}
