//go:build race

package httpapi_test

// raceEnabled: the race detector slows the test's own 1,000 readers about
// tenfold, so load tests pace themselves to measure the server, not a
// starved client.
const raceEnabled = true
