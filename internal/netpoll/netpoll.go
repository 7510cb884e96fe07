// Package netpoll watches many sockets from one goroutine, so an idle
// connection costs no goroutine and no buffer: the stream engine and
// `herald bench` hand their sockets to a Poller and react to its events
// instead of parking a goroutine in Read or Write per connection.
//
// Only Linux (epoll) is supported; elsewhere [Supported] is false and
// callers use ordinary blocking I/O.
package netpoll

import (
	"errors"
	"net"
	"syscall"
)

// Events says what happened on a socket.
type Events uint32

const (
	// Readable: bytes (or the end of the stream) can be read.
	Readable Events = 1 << iota
	// Writable: the socket's send buffer has room again.
	Writable
	// Hangup: the peer closed or reset the connection, or the socket
	// failed. A read tells which, and is how a caller confirms it.
	Hangup
)

// Errors returned by the non-blocking helpers and the Poller.
var (
	// ErrWouldBlock means the operation could not make progress now; the
	// Poller reports the socket when it can.
	ErrWouldBlock = errors.New("netpoll: would block")
	// ErrClosed is returned by Wait once the Poller is closed.
	ErrClosed = errors.New("netpoll: poller closed")
	// ErrUnsupported means this platform has no Poller.
	ErrUnsupported = errors.New("netpoll: not supported on this platform")
)

// RawConn returns the raw socket under c when c is a plain socket
// connection (TCP or Unix) that a Poller can watch. It reports false for
// anything that transforms the bytes (TLS) or hides the socket.
func RawConn(c net.Conn) (syscall.RawConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		rc, err := c.SyscallConn()
		return rc, err == nil
	case *net.UnixConn:
		rc, err := c.SyscallConn()
		return rc, err == nil
	}
	return nil, false
}
