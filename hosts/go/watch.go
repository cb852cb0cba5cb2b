package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"context"
	"iter"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// WatchFrom says where a feed starts.
type WatchFrom struct {
	kind C.uint32_t
	seq  uint64
}

// FromSeq starts a feed with every matching message from sequence seq on.
func FromSeq(seq uint64) WatchFrom { return WatchFrom{kind: C.TIDELOG_WATCH_FROM_SEQ, seq: seq} }

// FromLastPerSubject starts a feed with the newest message of every matching subject.
func FromLastPerSubject() WatchFrom { return WatchFrom{kind: C.TIDELOG_WATCH_FROM_LAST_PER_SUBJECT} }

// FromNew starts a feed with the first message appended after the watch begins.
func FromNew() WatchFrom { return WatchFrom{kind: C.TIDELOG_WATCH_FROM_NEW} }

// liveFeeds counts C watchers not yet freed (tests check that none leaks).
var liveFeeds atomic.Int64

// How long a feed without a descriptor blocks in the library before it looks at its
// context again.
const feedPollTimeout = 50 * time.Millisecond

// feed is one C watcher, read by one goroutine at a time. It waits for messages on the
// watcher's eventfd through the Go netpoller, so an idle feed holds no thread and its
// context's end wakes it at once.
type feed struct {
	store *Store
	ptr   *C.tidelog_watcher
	c     *call
	file  *os.File
	rc    syscall.RawConn
	stop  func() bool
}

func (s *Stream) newFeed(ctx context.Context, filter string, from WatchFrom) (*feed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := getCall()
	off, err := c.cstr(filter, "filter")
	if err != nil {
		c.put()
		return nil, err
	}
	var ptr *C.tidelog_watcher
	var fd C.int32_t
	var fdErr cstatus = C.TIDELOG_STATUS_OK
	err = s.exec(c, func() cstatus {
		st := C.tidelog_stream_watch(s.ptr, c.ptr(off), from.kind, C.uint64_t(from.seq), &ptr, c.err)
		if st == C.TIDELOG_STATUS_OK {
			fdErr = C.tidelog_watcher_fd(ptr, &fd, nil)
		}
		return st
	})
	if err != nil {
		c.put()
		return nil, err
	}
	liveFeeds.Add(1)
	f := &feed{store: s.store, ptr: ptr, c: c}
	if fdErr == C.TIDELOG_STATUS_OK {
		// Without a descriptor the feed still works, by waiting in the library in slices.
		f.file, f.rc = pollable(int(fd))
	}
	if f.rc != nil {
		file := f.file
		f.stop = context.AfterFunc(ctx, func() { _ = file.SetReadDeadline(time.Unix(1, 0)) })
	}
	return f, nil
}

// pollable wraps a duplicate of the watcher's eventfd (which the watcher owns and closes)
// for the netpoller; nil if that fails.
func pollable(fd int) (*os.File, syscall.RawConn) {
	syscall.ForkLock.RLock()
	dup, err := syscall.Dup(fd)
	if err == nil {
		syscall.CloseOnExec(dup)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil
	}
	file := os.NewFile(uintptr(dup), "tidelog-watcher")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, nil
	}
	return file, rc
}

// poll asks the watcher for its next message, waiting up to timeout; nil, nil when none.
func (f *feed) poll(timeout time.Duration) (*Msg, error) {
	if !f.store.g.enter() {
		return nil, errClosed("store")
	}
	defer f.store.g.leave()
	c := f.c
	st := C.tl_watcher_next(f.ptr, C.uint32_t(timeout/time.Millisecond), &c.msg, &c.view,
		bytePtr(c.scratch), C.size_t(len(c.scratch)), c.err)
	switch st {
	case C.TIDELOG_STATUS_OK:
		return c.takeMsg(), nil
	case C.TIDELOG_STATUS_TIMEOUT:
		return nil, nil
	}
	return nil, c.fail(st)
}

// next waits for the feed's next message until ctx ends.
func (f *feed) next(ctx context.Context) (*Msg, error) {
	if f.rc == nil {
		for {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if m, err := f.poll(feedPollTimeout); m != nil || err != nil {
				return m, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var m *Msg
	var err error
	// The look runs inside Read, after the poller's readiness was reset: a look that finds
	// nothing leaves the eventfd unreadable, and any change after it makes it readable
	// again and wakes the wait, so no message can slip between the look and the wait.
	rerr := f.rc.Read(func(uintptr) bool {
		m, err = f.poll(0)
		return m != nil || err != nil
	})
	if rerr != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, rerr
	}
	return m, err
}

func (f *feed) close() {
	if f.stop != nil {
		f.stop()
	}
	if f.file != nil {
		f.file.Close()
	}
	C.tidelog_watcher_free(f.ptr)
	f.ptr = nil
	f.c.put()
	liveFeeds.Add(-1)
}

// Watch is a running feed of a stream's messages: C delivers them in sequence order,
// markers included, and is closed when the feed ends.
type Watch struct {
	// C delivers the feed's messages.
	C <-chan *Msg

	mu  sync.Mutex
	err error
}

// Err reports why the feed ended once C is closed: the context's error when it was
// cancelled, an error matching ErrClosed when the store was closed or the stream deleted.
// It is nil while the feed runs.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch starts a feed of the messages matching filter, beginning where from says, then
// waiting for new ones. The feed runs in a goroutine until ctx ends, the store is closed or
// the stream deleted; it then frees its library resources and closes C. Cancel ctx to stop
// a feed whose channel is no longer read.
func (s *Stream) Watch(ctx context.Context, filter string, from WatchFrom) (*Watch, error) {
	f, err := s.newFeed(ctx, filter, from)
	if err != nil {
		return nil, err
	}
	ch := make(chan *Msg, 64)
	w := &Watch{C: ch}
	go func() {
		var err error
		for err == nil {
			var m *Msg
			if m, err = f.next(ctx); err != nil {
				break
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		f.close()
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(ch)
	}()
	return w, nil
}

// Feed is Watch as an iterator, run in the caller's goroutine: it yields the feed's
// messages until ctx ends (which ends the loop quietly), the loop breaks, or the feed
// fails, which it yields as a final (nil, err). The library resources are freed when the
// loop ends.
func (s *Stream) Feed(ctx context.Context, filter string, from WatchFrom) iter.Seq2[*Msg, error] {
	return func(yield func(*Msg, error) bool) {
		f, err := s.newFeed(ctx, filter, from)
		if err != nil {
			if ctx.Err() == nil {
				yield(nil, err)
			}
			return
		}
		defer f.close()
		for {
			m, err := f.next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					yield(nil, err)
				}
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}
