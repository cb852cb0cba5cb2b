package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"time"
	"unsafe"
	"weak"
)

// IOChoice says how a store's writes reach the disk.
type IOChoice uint32

const (
	// IOAuto uses io_uring when the kernel and the seccomp profile allow it, pwrite otherwise.
	IOAuto IOChoice = 0
	// IOUring uses io_uring, or fails at open.
	IOUring IOChoice = 1
	// IOPwrite uses pwrite and fdatasync.
	IOPwrite IOChoice = 2
)

// IOBackend is the I/O back end an open store uses.
type IOBackend uint32

const (
	// BackendIOUring writes through io_uring.
	BackendIOUring IOBackend = 0
	// BackendPwrite writes with pwrite and syncs with fdatasync.
	BackendPwrite IOBackend = 1
	// BackendMemory keeps no files (tests).
	BackendMemory IOBackend = 2
)

func (b IOBackend) String() string {
	switch b {
	case BackendIOUring:
		return "io_uring"
	case BackendPwrite:
		return "pwrite"
	case BackendMemory:
		return "memory"
	}
	return "unknown"
}

// Option configures Open.
type Option func(*options)

type options struct {
	budgetPercent    uint8
	budgetMax        uint64
	budgetReserve    uint64
	budgetBytes      bool
	io               IOChoice
	manual           bool
	readOnly         bool
	clock            *ManualClock
	budgetPercentSet bool
}

// WithBudgetPercent bounds the store to percent (1-100) of the size of its file system (the
// default is 75%).
func WithBudgetPercent(percent uint8) Option {
	return func(o *options) {
		o.budgetPercent, o.budgetPercentSet, o.budgetBytes = percent, true, false
	}
}

// WithBudgetBytes bounds the store to maxBytes on disk (at least 1 MiB), of which reserve
// (less than half) is kept from appends for checkpoints, consumer state and removals.
func WithBudgetBytes(maxBytes, reserve uint64) Option {
	return func(o *options) {
		o.budgetMax, o.budgetReserve, o.budgetBytes, o.budgetPercentSet = maxBytes, reserve, true, false
	}
}

// WithIOBackend chooses the I/O back end (the default is IOAuto).
func WithIOBackend(c IOChoice) Option { return func(o *options) { o.io = c } }

// WithManualMaintenance runs no background thread: the host calls Stream.Checkpoint,
// Stream.EnforceLimits and Stream.Reclaim itself.
func WithManualMaintenance() Option { return func(o *options) { o.manual = true } }

// WithReadOnly opens an existing store without ever changing its directory: recovery,
// expiry, appends and checkpoints work on an in-memory copy of what they change, discarded
// at Close. Opening a directory that holds no store fails (StatusNotFound).
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithClock makes the store read time from c instead of the system clock (tests of TTLs,
// max_age and redelivery without sleeping).
func WithClock(c *ManualClock) Option { return func(o *options) { o.clock = c } }

// Store is an open store: a directory of streams, locked against other processes.
//
// A Store is safe for concurrent use. Close it when done: Close waits for calls in flight on
// the store and on its streams, consumers and watches, and every later call on any of them
// returns an error matching ErrClosed. A Store that becomes unreachable without Close is
// closed by the garbage collector, but only Close reports errors.
type Store struct {
	g       guard
	ptr     *C.tidelog_store
	cleanup runtime.Cleanup
	handles handles
}

// handles tracks a store's open stream and consumer handles so that Store.Close frees them:
// the library keeps a stream's files open until its last handle is freed. It holds them
// weakly, so a handle that becomes unreachable is still freed by the garbage collector.
type handles struct {
	mu     sync.Mutex
	next   uint64
	open   map[uint64]func()
	closed bool
}

// add registers closeFn, which closes a handle it must hold only weakly, and returns the
// handle's id for drop. It reports false once the store is closed: the caller closes the
// handle itself.
func (h *handles) add(closeFn func()) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, false
	}
	if h.open == nil {
		h.open = make(map[uint64]func())
	}
	h.next++
	h.open[h.next] = closeFn
	return h.next, true
}

// drop forgets a handle that was closed or collected.
func (h *handles) drop(id uint64) {
	h.mu.Lock()
	delete(h.open, id)
	h.mu.Unlock()
}

// closeAll closes every handle still open; handles registered later are closed by add's
// caller.
func (h *handles) closeAll() {
	h.mu.Lock()
	open := h.open
	h.open, h.closed = nil, true
	h.mu.Unlock()
	for _, closeFn := range open {
		closeFn()
	}
}

// track registers a handle with its store: close is called by Store.Close unless the handle
// is closed or collected first.
func track[T any](store *Store, handle *T, closeFn func(*T)) (uint64, bool) {
	w := weak.Make(handle)
	return store.handles.add(func() {
		if h := w.Value(); h != nil {
			closeFn(h)
		}
	})
}

// freed is what the garbage collector needs to free a handle nobody closed: the C object,
// and the entry to drop from its store's handles.
type freed[P any] struct {
	ptr     P
	handles *handles
	id      uint64
}

// Open opens the store in directory dir, creating it if needed.
func Open(dir string, opts ...Option) (*Store, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	c := getCall()
	defer c.put()
	off, err := c.cstr(dir, "dir")
	if err != nil {
		return nil, err
	}
	copts := C.tidelog_store_options_new()
	if copts == nil {
		return nil, newError(StatusPanic, "out of memory")
	}
	defer C.tidelog_store_options_free(copts)
	switch {
	case o.budgetBytes:
		err = statusErr(C.tidelog_store_options_set_budget_bytes(copts, C.uint64_t(o.budgetMax), C.uint64_t(o.budgetReserve)), "budget")
	case o.budgetPercentSet:
		err = statusErr(C.tidelog_store_options_set_budget_percent(copts, C.uint8_t(o.budgetPercent)), "budget")
	}
	if err != nil {
		return nil, err
	}
	if err := statusErr(C.tidelog_store_options_set_io_backend(copts, C.uint32_t(o.io)), "I/O back end"); err != nil {
		return nil, err
	}
	if o.manual {
		C.tidelog_store_options_set_manual_maintenance(copts, true)
	}
	if o.readOnly {
		C.tidelog_store_options_set_read_only(copts, true)
	}
	if o.clock != nil {
		if !o.clock.g.enter() {
			return nil, errClosed("clock")
		}
		C.tidelog_store_options_set_clock(copts, o.clock.ptr)
		o.clock.g.leave()
	}
	var out *C.tidelog_store
	if st := C.tidelog_store_open(c.ptr(off), copts, &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	s := &Store{ptr: out}
	s.cleanup = runtime.AddCleanup(s, func(p *C.tidelog_store) { C.tidelog_store_free(p) }, out)
	return s, nil
}

func (s *Store) enter() error {
	if !s.g.enter() {
		return errClosed("store")
	}
	return nil
}

// Close syncs and checkpoints every stream, saves every consumer and closes the store. It
// waits for calls in flight; watches of its streams end with ErrClosed. It then closes the
// store's stream and consumer handles (the library keeps a stream's files and I/O ring open
// until its last handle is freed): calls on them return ErrClosed, and their Close does
// nothing. Every call on the store itself returns ErrClosed afterwards too. Closing a closed
// store does nothing.
func (s *Store) Close() error {
	if !s.g.enter() {
		return nil
	}
	// Closed first while other calls may still run, so that they fail fast instead of
	// keeping the exclusive wait below long.
	c := getCall()
	var err error
	if st := C.tidelog_store_close(s.ptr, c.err); st != C.TIDELOG_STATUS_OK {
		err = c.fail(st)
	}
	c.put()
	s.g.leave()
	s.g.close(func() {
		s.cleanup.Stop()
		C.tidelog_store_free(s.ptr)
		s.ptr = nil
	})
	s.handles.closeAll()
	return err
}

// CreateStream creates a stream (ErrStreamExists if the name is taken; a config error, and
// nothing created, if cfg is invalid) and returns a handle to it.
func (s *Store) CreateStream(cfg StreamConfig) (*Stream, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	ccfg, err := cfg.toC(c)
	if err != nil {
		return nil, err
	}
	defer C.tidelog_stream_config_free(ccfg)
	var out *C.tidelog_stream
	if st := C.tidelog_store_create_stream(s.ptr, ccfg, &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	return newStream(s, out, cfg.Name), nil
}

// Stream opens a handle to an existing stream (ErrStreamNotFound if there is none).
func (s *Store) Stream(name string) (*Stream, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	off, err := c.cstr(name, "name")
	if err != nil {
		return nil, err
	}
	var out *C.tidelog_stream
	if st := C.tidelog_store_open_stream(s.ptr, c.ptr(off), &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	return newStream(s, out, name), nil
}

// DeleteStream deletes a stream with its files and consumers. Its open stream and consumer
// handles return ErrClosed afterwards (Close them: until then they keep the deleted files
// open), and its watches end.
func (s *Store) DeleteStream(name string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	off, err := c.cstr(name, "name")
	if err != nil {
		return err
	}
	if st := C.tidelog_store_delete_stream(s.ptr, c.ptr(off), c.err); st != C.TIDELOG_STATUS_OK {
		return c.fail(st)
	}
	return nil
}

// StreamNames lists the store's streams, sorted.
func (s *Store) StreamNames() ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	var out *C.tidelog_strings
	if st := C.tidelog_store_stream_names(s.ptr, &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	defer C.tidelog_strings_free(out)
	return goStrings(out), nil
}

// DamagedStream is a stream set aside at open because its metadata or files could not be
// read.
type DamagedStream struct {
	Name   string
	Reason string
}

// DamagedStreams lists the streams set aside at open.
func (s *Store) DamagedStreams() ([]DamagedStream, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	var names, reasons *C.tidelog_strings
	if st := C.tidelog_store_damaged_streams(s.ptr, &names, &reasons, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	defer C.tidelog_strings_free(names)
	defer C.tidelog_strings_free(reasons)
	n, r := goStrings(names), goStrings(reasons)
	out := make([]DamagedStream, len(n))
	for i := range n {
		out[i].Name = n[i]
		if i < len(r) {
			out[i].Reason = r[i]
		}
	}
	return out, nil
}

// Budget is a store's byte budget and its use, in bytes on disk.
type Budget struct {
	MaxBytes uint64
	// Reserve is the part of MaxBytes appends may not use.
	Reserve uint64
	Used    uint64
	// Retiring is bytes of blocks with no live message, freed at the next checkpoints.
	Retiring uint64
}

// Budget reports the store's budget and how much of it is in use.
func (s *Store) Budget() (Budget, error) {
	if err := s.enter(); err != nil {
		return Budget{}, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	var b C.tidelog_budget_info
	if st := C.tidelog_store_budget(s.ptr, &b, c.err); st != C.TIDELOG_STATUS_OK {
		return Budget{}, c.fail(st)
	}
	return Budget{MaxBytes: uint64(b.max_bytes), Reserve: uint64(b.reserve), Used: uint64(b.used), Retiring: uint64(b.retiring)}, nil
}

// IOBackend reports the I/O back end the store uses.
func (s *Store) IOBackend() (IOBackend, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	var b uint32
	if st := C.tidelog_store_io_backend(s.ptr, &b, c.err); st != C.TIDELOG_STATUS_OK {
		return 0, c.fail(st)
	}
	return IOBackend(b), nil
}

// Dir is the store's directory as given to Open.
func (s *Store) Dir() (string, error) {
	if err := s.enter(); err != nil {
		return "", err
	}
	defer s.g.leave()
	c := getCall()
	defer c.put()
	var out *C.tidelog_string
	if st := C.tidelog_store_dir(s.ptr, &out, c.err); st != C.TIDELOG_STATUS_OK {
		return "", c.fail(st)
	}
	defer C.tidelog_string_free(out)
	return C.GoStringN(C.tidelog_string_ptr(out), C.int(C.tidelog_string_len(out))), nil
}

func goStrings(list *C.tidelog_strings) []string {
	n := int(C.tidelog_strings_len(list))
	out := make([]string, n)
	for i := range out {
		out[i] = C.GoString(C.tidelog_strings_get(list, C.size_t(i)))
	}
	return out
}

// ManualClock is a clock moved by hand, for tests of TTLs, redelivery and max_age without
// sleeping. It is safe for concurrent use. A store opened with it keeps using it after the
// clock's Close.
type ManualClock struct {
	g       guard
	ptr     *C.tidelog_clock
	cleanup runtime.Cleanup
}

// NewManualClock returns a clock that reads start until it is advanced.
func NewManualClock(start time.Time) *ManualClock {
	p := C.tidelog_clock_new_manual(C.int64_t(start.UnixNano()))
	if p == nil {
		panic("tidelog: out of memory")
	}
	c := &ManualClock{ptr: p}
	c.cleanup = runtime.AddCleanup(c, func(p *C.tidelog_clock) { C.tidelog_clock_free(p) }, p)
	return c
}

// Set sets the clock to t, which may be before its current time (tests of clock skew).
// After Close it does nothing.
func (c *ManualClock) Set(t time.Time) {
	if !c.g.enter() {
		return
	}
	defer c.g.leave()
	C.tidelog_clock_set(c.ptr, C.int64_t(t.UnixNano()))
}

// Advance moves the clock forward by d. After Close it does nothing.
func (c *ManualClock) Advance(d time.Duration) {
	if !c.g.enter() {
		return
	}
	defer c.g.leave()
	C.tidelog_clock_advance(c.ptr, C.int64_t(d))
}

// Now is the clock's time (the zero Time after Close).
func (c *ManualClock) Now() time.Time {
	if !c.g.enter() {
		return time.Time{}
	}
	defer c.g.leave()
	return time.Unix(0, int64(C.tidelog_clock_now(c.ptr)))
}

// Close frees the clock handle; stores using the clock keep it.
func (c *ManualClock) Close() {
	c.g.close(func() {
		c.cleanup.Stop()
		C.tidelog_clock_free(c.ptr)
		c.ptr = nil
	})
}

// nsTime converts a library timestamp; 0 (none) is the zero Time.
func nsTime(ns C.int64_t) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns))
}

// bytePtr is the address of b's first byte for C, or nil when b is empty.
func bytePtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// strPtr is the address of s's bytes for C (not NUL-terminated), or nil when s is empty.
func strPtr(s string) *C.char {
	if len(s) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}
