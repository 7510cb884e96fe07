//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Supported reports whether this platform has a Poller.
const Supported = true

// epollET is EPOLLET as an unsigned flag; syscall declares it as a negative
// int.
const epollET = 1 << 31

// wakeKey marks the Poller's own wake-up pipe among the events.
const wakeKey = ^uint64(0)

// Poller is an edge-triggered epoll set. One goroutine calls Wait; any
// goroutine may Add, Delete or Close.
type Poller struct {
	epfd    int
	wakeR   int
	wakeW   int
	closed  atomic.Bool
	release sync.Once
	events  []syscall.EpollEvent
}

// New returns an empty Poller.
func New() (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &Poller{epfd: epfd, wakeR: pipe[0], wakeW: pipe[1], events: make([]syscall.EpollEvent, 256)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setKey(&ev, wakeKey)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wakeR, &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return p, nil
}

// Add watches fd, reporting its events under key. Events are
// edge-triggered: each is reported once per change, so after Readable the
// caller reads until ErrWouldBlock, and after a short write it waits for
// Writable. A socket is writable when added, so the first Wait reports it.
// Keys must be unique among the Poller's live sockets; never reusing one
// makes a late event for a deleted socket harmless.
func (p *Poller) Add(fd int, key uint64) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET}
	setKey(&ev, key)
	return os.NewSyscallError("epoll_ctl", syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev))
}

// Delete stops watching fd. Call it before closing the socket: the number
// may be reused at once by another connection.
func (p *Poller) Delete(fd int) error {
	return os.NewSyscallError("epoll_ctl", syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil))
}

// Wait blocks until sockets have events, then calls handle for each, in
// the calling goroutine. Only one goroutine may call Wait. It returns
// ErrClosed once Close was called, and then releases the epoll set.
func (p *Poller) Wait(handle func(key uint64, ev Events)) error {
	for {
		if p.closed.Load() {
			// Released here, not in Close: only the waiting goroutine
			// knows it is no longer inside epoll_wait on these numbers.
			p.release.Do(p.closeFDs)
			return ErrClosed
		}
		n, err := syscall.EpollWait(p.epfd, p.events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("epoll_wait", err)
		}
		for i := range p.events[:n] {
			e := &p.events[i]
			key := getKey(e)
			if key == wakeKey {
				continue // Close's wake-up; checked at the top
			}
			var ev Events
			if e.Events&(syscall.EPOLLIN) != 0 {
				ev |= Readable
			}
			if e.Events&syscall.EPOLLOUT != 0 {
				ev |= Writable
			}
			if e.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				ev |= Hangup
			}
			handle(key, ev)
		}
		if n > 0 && !p.closed.Load() {
			return nil
		}
	}
}

// Close wakes Wait, which returns ErrClosed and releases the epoll set.
// Sockets still registered are not closed. A Poller that is closed while
// no goroutine waits keeps its descriptors until Wait is called once more.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	_, _ = syscall.Write(p.wakeW, []byte{1})
	return nil
}

func (p *Poller) closeFDs() {
	syscall.Close(p.epfd)
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
}

func setKey(ev *syscall.EpollEvent, key uint64) {
	ev.Fd = int32(uint32(key))
	ev.Pad = int32(uint32(key >> 32))
}

func getKey(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Detach takes c's socket away from Go's runtime poller and returns it as
// a descriptor of the caller's own, non-blocking, to be closed with
// CloseFD. c is closed; the connection stays open through the returned
// descriptor. Go's netFD, its addresses and its runtime poll descriptor
// (about 300 B) are freed, and the socket's events wake only the Poller
// it is added to instead of Go's as well.
func Detach(c net.Conn) (int, error) {
	rc, ok := RawConn(c)
	if !ok {
		return -1, errors.New("netpoll: not a plain socket connection")
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		// F_DUPFD_CLOEXEC: the copy must not leak into child processes.
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = os.NewSyscallError("fcntl", errno)
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	// Closing Go's descriptor does not shut the connection down: the
	// duplicate still refers to the socket. O_NONBLOCK belongs to the
	// shared open file, so the duplicate stays non-blocking.
	c.Close()
	return fd, nil
}

// CloseFD closes a descriptor from Detach. With reset, unsent data is
// discarded and the peer gets an RST instead of a FIN queued behind it.
func CloseFD(fd int, reset bool) error {
	if reset {
		_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	}
	return os.NewSyscallError("close", syscall.Close(fd))
}

// FD returns the descriptor of rc, for Add and Delete.
func FD(rc syscall.RawConn) (int, error) {
	fd := -1
	err := rc.Control(func(s uintptr) { fd = int(s) })
	return fd, err
}

// Read reads what has arrived on fd without waiting. It returns
// ErrWouldBlock when nothing has, and io.EOF when the peer closed. The
// caller must keep fd open until Read returns (hold whatever lock guards
// closing it): a number closed under it may already be another socket.
// Going to the descriptor directly, rather than through
// syscall.RawConn's callback, saves the callback's allocations on a path
// taken once per write.
func Read(fd int, b []byte) (int, error) {
	n, err := ignoringEINTR(func() (int, error) { return syscall.Read(fd, b) })
	switch {
	case err == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes as much of b as fd takes now. It returns ErrWouldBlock when
// it takes nothing; a short count means the send buffer filled, and the
// Poller reports Writable when it has room again. The same rule about
// keeping fd open applies as for Read.
func Write(fd int, b []byte) (int, error) {
	n, err := ignoringEINTR(func() (int, error) { return syscall.Write(fd, b) })
	switch {
	case err == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("write", err)
	}
	return n, nil
}

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != syscall.EINTR {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}
