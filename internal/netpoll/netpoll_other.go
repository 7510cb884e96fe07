//go:build !linux

package netpoll

import (
	"net"
	"syscall"
)

// Detach returns ErrUnsupported on this platform.
func Detach(c net.Conn) (int, error) { return -1, ErrUnsupported }

// CloseFD returns ErrUnsupported on this platform.
func CloseFD(fd int, reset bool) error { return ErrUnsupported }

// Supported reports whether this platform has a Poller.
const Supported = false

// Poller is unavailable on this platform: New always fails.
type Poller struct{}

// New returns ErrUnsupported on this platform.
func New() (*Poller, error) { return nil, ErrUnsupported }

// Add returns ErrUnsupported on this platform.
func (p *Poller) Add(fd int, key uint64) error { return ErrUnsupported }

// Delete returns ErrUnsupported on this platform.
func (p *Poller) Delete(fd int) error { return ErrUnsupported }

// Wait returns ErrUnsupported on this platform.
func (p *Poller) Wait(handle func(key uint64, ev Events)) error { return ErrUnsupported }

// Close does nothing on this platform.
func (p *Poller) Close() error { return nil }

// FD returns ErrUnsupported on this platform.
func FD(rc syscall.RawConn) (int, error) { return -1, ErrUnsupported }

// Read returns ErrUnsupported on this platform.
func Read(fd int, b []byte) (int, error) { return 0, ErrUnsupported }

// Write returns ErrUnsupported on this platform.
func Write(fd int, b []byte) (int, error) { return 0, ErrUnsupported }
