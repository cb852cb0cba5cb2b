package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"fmt"
	"io"
	"runtime/cgo"
	"unsafe"
)

// SnapshotInfo says what a snapshot held.
type SnapshotInfo struct {
	// FromSeq is the first sequence the snapshot covers.
	FromSeq uint64
	// LastSeq is the stream's last sequence when it was taken.
	LastSeq  uint64
	Messages uint64
	// Bytes is the snapshot's size.
	Bytes uint64
}

func snapInfo(i *C.tidelog_snapshot_info) SnapshotInfo {
	return SnapshotInfo{FromSeq: uint64(i.from_seq), LastSeq: uint64(i.last_seq), Messages: uint64(i.messages), Bytes: uint64(i.bytes)}
}

// transfer is what a snapshot or restore callback works with; the library passes its
// cgo.Handle back to the callbacks, so no Go pointer reaches C.
type transfer struct {
	w io.Writer
	r io.Reader
	// err is the host error that stopped the transfer.
	err error
	// pending is a read error to report after the bytes that came with it.
	pending error
	eof     bool
	// panicked is a callback's panic, raised again once the library call returned.
	panicked any
}

func (t *transfer) result(st cstatus, c *call) error {
	if t.panicked != nil {
		panic(t.panicked)
	}
	if st == C.TIDELOG_STATUS_OK {
		return nil
	}
	err := c.fail(st)
	if e, ok := err.(*Error); ok && t.err != nil {
		e.Cause = t.err
	}
	return err
}

//export tlSnapshotWrite
func tlSnapshotWrite(user C.uintptr_t, buf *C.uint8_t, n C.size_t) (code C.int32_t) {
	t := cgo.Handle(user).Value().(*transfer)
	defer func() {
		if p := recover(); p != nil {
			t.panicked, code = p, 1
		}
	}()
	if n == 0 {
		return 0
	}
	if _, err := t.w.Write(unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))); err != nil {
		t.err = err
		return 1
	}
	return 0
}

// A reader that keeps returning nothing and no error is taken as stuck after this many calls.
const maxEmptyReads = 100

//export tlRestoreRead
func tlRestoreRead(user C.uintptr_t, buf *C.uint8_t, capacity C.size_t, n *C.size_t) (code C.int32_t) {
	t := cgo.Handle(user).Value().(*transfer)
	defer func() {
		if p := recover(); p != nil {
			t.panicked, code = p, 1
		}
	}()
	*n = 0
	if t.pending != nil {
		t.err = t.pending
		return 1
	}
	if t.eof || capacity == 0 {
		return 0
	}
	p := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(capacity))
	for range maxEmptyReads {
		k, err := t.r.Read(p)
		if k > 0 {
			*n = C.size_t(k)
			switch {
			case err == io.EOF:
				t.eof = true
			case err != nil:
				t.pending = err
			}
			return 0
		}
		if err == io.EOF {
			t.eof = true
			return 0
		}
		if err != nil {
			t.err = err
			return 1
		}
	}
	t.err = io.ErrNoProgress
	return 1
}

// Snapshot writes a snapshot of the stream's live messages from fromSeq on, with its config
// and consumers, to w. Store.Restore reads it back. If w fails, the error matches
// ErrCallback and wraps w's error.
func (s *Stream) Snapshot(w io.Writer, fromSeq uint64) (SnapshotInfo, error) {
	t := &transfer{w: w}
	h := cgo.NewHandle(t)
	defer h.Delete()
	c := getCall()
	defer c.put()
	var info C.tidelog_snapshot_info
	var st cstatus
	if err := s.enter(); err != nil {
		return SnapshotInfo{}, err
	}
	st = C.tl_snapshot(s.ptr, C.uint64_t(fromSeq), C.uintptr_t(h), &info, c.err)
	s.leave()
	if err := t.result(st, c); err != nil {
		return SnapshotInfo{}, err
	}
	return snapInfo(&info), nil
}

// SnapshotFile writes a snapshot to a new file at path, synced before it returns.
func (s *Stream) SnapshotFile(path string, fromSeq uint64) (SnapshotInfo, error) {
	c := getCall()
	defer c.put()
	off, err := c.cstr(path, "path")
	if err != nil {
		return SnapshotInfo{}, err
	}
	var info C.tidelog_snapshot_info
	err = s.exec(c, func() cstatus {
		return C.tidelog_stream_snapshot_file(s.ptr, c.ptr(off), C.uint64_t(fromSeq), &info, c.err)
	})
	if err != nil {
		return SnapshotInfo{}, err
	}
	return snapInfo(&info), nil
}

// Restore reads a snapshot from r into the stream it names (created if absent, continued if
// present) and returns a handle to that stream.
func (st *Store) Restore(r io.Reader) (*Stream, SnapshotInfo, error) {
	t := &transfer{r: r}
	h := cgo.NewHandle(t)
	defer h.Delete()
	c := getCall()
	defer c.put()
	var info C.tidelog_snapshot_info
	var out *C.tidelog_stream
	if err := st.enter(); err != nil {
		return nil, SnapshotInfo{}, err
	}
	status := C.tl_restore(st.ptr, C.uintptr_t(h), &out, &info, c.err)
	st.g.leave()
	if err := t.result(status, c); err != nil {
		return nil, SnapshotInfo{}, err
	}
	return st.restored(out, &info)
}

// RestoreFile restores the snapshot in the file at path.
func (st *Store) RestoreFile(path string) (*Stream, SnapshotInfo, error) {
	if err := st.enter(); err != nil {
		return nil, SnapshotInfo{}, err
	}
	c := getCall()
	defer c.put()
	off, err := c.cstr(path, "path")
	if err != nil {
		st.g.leave()
		return nil, SnapshotInfo{}, err
	}
	var info C.tidelog_snapshot_info
	var out *C.tidelog_stream
	status := C.tidelog_store_restore_file(st.ptr, c.ptr(off), &out, &info, c.err)
	st.g.leave()
	if status != C.TIDELOG_STATUS_OK {
		return nil, SnapshotInfo{}, c.fail(status)
	}
	return st.restored(out, &info)
}

func (st *Store) restored(p *C.tidelog_stream, info *C.tidelog_snapshot_info) (*Stream, SnapshotInfo, error) {
	s := newStream(st, p, "")
	if err := s.nameFromConfig(); err != nil {
		s.Close()
		return nil, SnapshotInfo{}, fmt.Errorf("tidelog: restored stream: %w", err)
	}
	return s, snapInfo(info), nil
}
