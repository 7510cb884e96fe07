package main

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported tells whether --reuseport works on this platform.
const reusePortSupported = true

// setReusePort is a net.ListenConfig Control function that sets
// SO_REUSEPORT on the socket before it is bound, so several processes (of
// the same user) can listen on one port and the kernel spreads new
// connections among them. (The syscall package lacks the constant on
// amd64, 386 and arm, hence x/sys/unix.)
func setReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
