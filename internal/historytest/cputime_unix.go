//go:build unix

package historytest

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process used so far (user and system, all
// threads): unlike the wall clock, other processes on a loaded machine
// do not add to it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
