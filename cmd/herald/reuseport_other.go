//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// reusePortSupported tells whether --reuseport works on this platform.
const reusePortSupported = false

// setReusePort is never called where reusePortSupported is false: serve
// refuses --reuseport before listening.
func setReusePort(network, address string, c syscall.RawConn) error {
	return errors.New("SO_REUSEPORT is not supported on this platform")
}
