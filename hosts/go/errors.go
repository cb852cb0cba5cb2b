package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// Status is the outcome code of a library call (tidelog_status).
type Status uint32

// The statuses of the C ABI, with the same values.
const (
	StatusOK                       Status = 0
	StatusNullArgument             Status = 1
	StatusInvalidArgument          Status = 2
	StatusPanic                    Status = 3
	StatusConfig                   Status = 4
	StatusInvalidName              Status = 5
	StatusInvalidSubject           Status = 6
	StatusInvalidFilter            Status = 7
	StatusNotFound                 Status = 8
	StatusStreamNotFound           Status = 9
	StatusStreamExists             Status = 10
	StatusConsumerNotFound         Status = 11
	StatusConsumerExists           Status = 12
	StatusConsumerDeleted          Status = 13
	StatusTooLarge                 Status = 14
	StatusSubjectNotInStream       Status = 15
	StatusSequenceNotAfterLast     Status = 16
	StatusEmptyBatch               Status = 17
	StatusWrongLastSequence        Status = 18
	StatusWrongLastSubjectSequence Status = 19
	StatusNotAllowed               Status = 20
	StatusInvalidMsgID             Status = 21
	StatusDuplicate                Status = 22
	StatusInvalidTTL               Status = 23
	StatusLimitReached             Status = 24
	StatusStorageFull              Status = 25
	StatusIO                       Status = 26
	StatusPoisoned                 Status = 27
	StatusCorrupt                  Status = 28
	StatusLocked                   Status = 29
	StatusClosed                   Status = 30
	StatusTimeout                  Status = 31
	StatusTooManyResults           Status = 32
	StatusInvalidSequence          Status = 33
	StatusCallback                 Status = 34
)

// String is the status's C name, such as "TIDELOG_STATUS_STORAGE_FULL".
func (s Status) String() string {
	return C.GoString(C.tidelog_status_name(C.uint32_t(s)))
}

// Error is a failed call: its status, the library's one-line description, and the numbers
// the library attached (those that do not apply to the status are zero).
//
// errors.Is(err, ErrX) compares statuses, so it matches any failure with the status of the
// sentinel ErrX. When the failure carries an errno, errors.Is(err, syscall.ENOSPC) and the
// like work too; a failed snapshot writer or restore reader is the cause of an error with
// StatusCallback, reachable with errors.Is and errors.As.
type Error struct {
	Status  Status
	Message string
	// OSCode is the errno behind an I/O failure, or 0.
	OSCode syscall.Errno
	// Seq is the sequence the failure names (not found, corrupt, duplicate of).
	Seq uint64
	// Index is the position in a batch of the message at fault, for the failures one
	// message causes (see Stream.AppendBatch) and Consumer.ApplyBatch's; 0 otherwise.
	Index uint64
	// Expected and Current are the sequences of a failed expectation.
	Expected, Current uint64
	// Need, Used and Limit are the budget figures of a StatusStorageFull from the budget
	// (zero for a full device).
	Need, Used, Limit uint64
	// Cause is the host-side error behind a StatusCallback failure, if any.
	Cause error
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "tidelog: " + e.Status.String()
	}
	return "tidelog: " + e.Message
}

// Is reports whether target is the sentinel of e's status (or an *Error with that status and
// no message of its own).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case sentinel:
		return Status(t) == e.Status
	case *Error:
		return t.Message == "" && t.Status == e.Status
	}
	return false
}

// Unwrap returns the host error behind a callback failure, or the errno of an I/O failure.
func (e *Error) Unwrap() error {
	if e.Cause != nil {
		return e.Cause
	}
	if e.OSCode != 0 {
		return e.OSCode
	}
	return nil
}

// sentinel is the type of the exported ErrX values: comparable, and matched by (*Error).Is.
type sentinel Status

func (s sentinel) Error() string { return "tidelog: " + Status(s).String() }

// Sentinels for errors.Is, one per status.
var (
	ErrNullArgument             error = sentinel(StatusNullArgument)
	ErrInvalidArgument          error = sentinel(StatusInvalidArgument)
	ErrPanic                    error = sentinel(StatusPanic)
	ErrConfig                   error = sentinel(StatusConfig)
	ErrInvalidName              error = sentinel(StatusInvalidName)
	ErrInvalidSubject           error = sentinel(StatusInvalidSubject)
	ErrInvalidFilter            error = sentinel(StatusInvalidFilter)
	ErrNotFound                 error = sentinel(StatusNotFound)
	ErrStreamNotFound           error = sentinel(StatusStreamNotFound)
	ErrStreamExists             error = sentinel(StatusStreamExists)
	ErrConsumerNotFound         error = sentinel(StatusConsumerNotFound)
	ErrConsumerExists           error = sentinel(StatusConsumerExists)
	ErrConsumerDeleted          error = sentinel(StatusConsumerDeleted)
	ErrTooLarge                 error = sentinel(StatusTooLarge)
	ErrSubjectNotInStream       error = sentinel(StatusSubjectNotInStream)
	ErrSequenceNotAfterLast     error = sentinel(StatusSequenceNotAfterLast)
	ErrEmptyBatch               error = sentinel(StatusEmptyBatch)
	ErrWrongLastSequence        error = sentinel(StatusWrongLastSequence)
	ErrWrongLastSubjectSequence error = sentinel(StatusWrongLastSubjectSequence)
	ErrNotAllowed               error = sentinel(StatusNotAllowed)
	ErrInvalidMsgID             error = sentinel(StatusInvalidMsgID)
	ErrDuplicate                error = sentinel(StatusDuplicate)
	ErrInvalidTTL               error = sentinel(StatusInvalidTTL)
	ErrLimitReached             error = sentinel(StatusLimitReached)
	ErrStorageFull              error = sentinel(StatusStorageFull)
	ErrIO                       error = sentinel(StatusIO)
	ErrPoisoned                 error = sentinel(StatusPoisoned)
	ErrCorrupt                  error = sentinel(StatusCorrupt)
	ErrLocked                   error = sentinel(StatusLocked)
	ErrClosed                   error = sentinel(StatusClosed)
	ErrTimeout                  error = sentinel(StatusTimeout)
	ErrTooManyResults           error = sentinel(StatusTooManyResults)
	ErrInvalidSequence          error = sentinel(StatusInvalidSequence)
	ErrCallback                 error = sentinel(StatusCallback)
)

// cstatus is a tidelog_status as cgo gives it for the functions returning one.
type cstatus = uint32

// newError is a failure found on the Go side, before any call.
func newError(st Status, msg string) *Error {
	return &Error{Status: st, Message: msg}
}

func errClosed(what string) error {
	return newError(StatusClosed, what+" is closed")
}

// call is the per-call scratch of a library call: the caller-owned error object, output
// slots, and buffers for NUL-terminated strings and for small messages. One goroutine owns
// it between get and put, so no two concurrent calls share an error object; pooling them
// keeps the hot path free of allocations and of extra cgo calls.
type call struct {
	err *C.tidelog_error

	appended C.tidelog_appended
	batch    C.tidelog_batch_appended
	u64      C.uint64_t
	size     C.size_t
	ack      uint32
	msg      *C.tidelog_msg
	view     C.tidelog_msg_view
	deliv    *C.tidelog_deliveries
	items    *C.tidelog_delivery

	strs    []byte
	scratch []byte
}

// A message whose bytes fit here is copied out by the C side and freed in the same call.
const scratchSize = 16 << 10

// Buffers that grew past this are dropped rather than pooled.
const maxPooledStrs = 64 << 10

var calls = sync.Pool{New: newCall}

func newCall() any {
	c := &call{
		err:     C.tidelog_error_new(),
		scratch: make([]byte, scratchSize),
		strs:    make([]byte, 0, 256),
	}
	// A pooled call dropped by the garbage collector frees its error object.
	runtime.AddCleanup(c, func(e *C.tidelog_error) { C.tidelog_error_free(e) }, c.err)
	return c
}

func getCall() *call { return calls.Get().(*call) }

func (c *call) put() {
	c.msg = nil
	c.deliv = nil
	c.items = nil
	if cap(c.strs) > maxPooledStrs {
		c.strs = make([]byte, 0, 256)
	} else {
		c.strs = c.strs[:0]
	}
	calls.Put(c)
}

// fail turns a non-OK status into an *Error from the details in c's error object.
func (c *call) fail(st cstatus) error {
	e := &Error{Status: Status(st)}
	if c.err == nil {
		return e
	}
	var info C.tidelog_error_info
	msg := C.tl_error(c.err, &info)
	e.Message = C.GoString(msg)
	e.OSCode = syscall.Errno(info.os_code)
	e.Seq = uint64(info.seq)
	e.Index = uint64(info.index)
	e.Expected = uint64(info.expected)
	e.Current = uint64(info.current)
	e.Need = uint64(info.need)
	e.Used = uint64(info.used)
	e.Limit = uint64(info.limit)
	return e
}

// statusErr is a failure of a call that takes no error object (the config setters).
func statusErr(st cstatus, what string) error {
	if st == C.TIDELOG_STATUS_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: what + ": " + Status(st).String()}
}

// cstr appends s with a NUL to c.strs and returns its offset there; ptr turns offsets into
// pointers once every string of the call is in (appending may move the buffer).
func (c *call) cstr(s string, what string) (int, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return 0, newError(StatusInvalidArgument, what+" holds a NUL byte")
		}
	}
	off := len(c.strs)
	c.strs = append(c.strs, s...)
	c.strs = append(c.strs, 0)
	return off, nil
}

func (c *call) ptr(off int) *C.char {
	return (*C.char)(unsafe.Pointer(&c.strs[off]))
}

// cstrs packs strings for the tl_split helpers and returns the offset of the first.
func (c *call) cstrs(list []string, what string) (int, C.size_t, error) {
	first := len(c.strs)
	for _, s := range list {
		if _, err := c.cstr(s, what); err != nil {
			return 0, 0, err
		}
	}
	return first, C.size_t(len(list)), nil
}
