package tidelog

import "sync"

// guard keeps a C handle alive while calls use it: calls hold it shared, and closing takes
// it exclusively, so a handle is freed only once no call is running on it, and calls that
// come later see it closed instead of touching freed memory. A waiting close holds off new
// calls, so it cannot be starved.
type guard struct {
	mu     sync.RWMutex
	closed bool
}

// enter reports whether the handle is open; if so, the caller must leave.
func (g *guard) enter() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *guard) leave() { g.mu.RUnlock() }

// close runs free once, after every call in flight has left; it reports whether it ran.
func (g *guard) close(free func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	free()
	return true
}
