//go:build !linux

package bench

import "errors"

// supported reports whether this platform can run the engine.
const supported = false

var errUnsupported = errors.New("bench: the load generator needs Linux (epoll)")

type engine struct{ changed chan struct{} }

func startEngine(cfg engineConfig) (*engine, error) { return nil, errUnsupported }
func (e *engine) snapshot(hists bool) stats         { return newStats() }
func (e *engine) minSeq() uint64                    { return 0 }
func (e *engine) stop() stats                       { return newStats() }

func fdLimit() (uint64, bool) { return 0, false }
