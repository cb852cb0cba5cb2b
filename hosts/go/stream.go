package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"encoding/json"
	"math"
	"runtime"
	"strconv"
	"time"
	"unsafe"
)

// TTLNever is the TTL of a message never removed by age (exempt from max_age too).
const TTLNever time.Duration = math.MaxInt64

// Rollup says what a message replaces when it is stored.
type Rollup uint32

const (
	// RollupNone replaces nothing.
	RollupNone Rollup = 0
	// RollupSubject replaces every earlier message of the message's subject.
	RollupSubject Rollup = 1
	// RollupAll replaces every earlier message of the stream.
	RollupAll Rollup = 2
)

// Expect makes an append conditional, checked atomically with it. A failed check is an
// error matching ErrWrongLastSequence or ErrWrongLastSubjectSequence, with the current
// sequence in Error.Current. The zero value expects nothing.
type Expect struct {
	// LastSeq, when CheckLastSeq is set, must be the stream's last sequence.
	CheckLastSeq bool
	LastSeq      uint64
	// LastSubjectSeq, when CheckLastSubjectSeq is set, must be the last sequence of the
	// message's subject, or of Filter when that is set.
	CheckLastSubjectSeq bool
	LastSubjectSeq      uint64
	Filter              string
}

func (e Expect) bits() C.uint32_t {
	var b C.uint32_t
	if e.CheckLastSeq {
		b |= C.TIDELOG_EXPECT_LAST_SEQ
	}
	if e.CheckLastSubjectSeq {
		b |= C.TIDELOG_EXPECT_LAST_SUBJECT_SEQ
	}
	return b
}

// Message is a message to append. Its bytes are copied by the call; the caller may reuse
// them afterwards.
type Message struct {
	Subject string
	Headers []byte
	Payload []byte
	// TTL is the message's own time to live, in whole seconds (the stream must allow
	// message TTLs); 0 leaves it to the stream's rules, TTLNever exempts it from age.
	TTL time.Duration
	// Rollup makes the message replace earlier ones (the stream must allow rollups; not in
	// batches).
	Rollup Rollup
	// MsgID identifies the message for duplicate detection (1-255 bytes), or is empty.
	MsgID  string
	Expect Expect
}

// ttlC converts a TTL for the ABI.
func ttlC(d time.Duration) (C.uint64_t, error) {
	switch {
	case d == 0:
		return 0, nil
	case d == TTLNever:
		return C.TIDELOG_TTL_NEVER, nil
	case d < 0 || d%time.Second != 0:
		return 0, newError(StatusInvalidTTL, "TTL "+d.String()+" is not a positive whole number of seconds")
	}
	return C.uint64_t(d / time.Second), nil
}

// Appended says where an append went.
type Appended struct {
	Seq  uint64
	Time time.Time
	// Duplicate says the message id was seen within the duplicate window: nothing was
	// stored and Seq is the original's.
	Duplicate bool
}

// BatchAppended says where a batch went: sequences FirstSeq through LastSeq, one time.
type BatchAppended struct {
	FirstSeq, LastSeq uint64
	Time              time.Time
}

// Msg is a stored message, copied into Go memory.
type Msg struct {
	Seq     uint64
	Time    time.Time
	Subject string
	Headers []byte
	Payload []byte
	// TTL is the message's own TTL (0: none; TTLNever).
	TTL time.Duration
	// Marker says the store wrote the message as a delete marker (its reason is in the
	// headers).
	Marker bool
	Rollup Rollup
	MsgID  string
}

// Header returns the value of the first header line "name: value" of a NATS-style header
// block, or "".
func (m *Msg) Header(name string) string {
	h := m.Headers
	for len(h) > 0 {
		end := indexCRLF(h)
		line := h[:end]
		if len(line) > len(name)+1 && string(line[:len(name)]) == name && line[len(name)] == ':' {
			v := line[len(name)+1:]
			for len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			return string(v)
		}
		if end+2 > len(h) {
			break
		}
		h = h[end+2:]
	}
	return ""
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return len(b)
}

func ttlFromC(v C.uint64_t) time.Duration {
	switch {
	case v == 0:
		return 0
	case v == C.TIDELOG_TTL_NEVER || uint64(v) > uint64(math.MaxInt64/int64(time.Second)):
		return TTLNever
	}
	return time.Duration(v) * time.Second
}

// newMsg builds a Msg over buf, which holds subject, headers, payload and id back to back.
func newMsg(m *Msg, v *C.tidelog_msg_view, buf []byte) {
	sl, hl, pl, il := int(v.subject_len), int(v.headers_len), int(v.payload_len), int(v.msg_id_len)
	m.Seq = uint64(v.seq)
	m.Time = nsTime(v.ts)
	m.TTL = ttlFromC(v.ttl)
	m.Marker = bool(v.marker)
	m.Rollup = Rollup(v.rollup)
	if sl > 0 {
		m.Subject = unsafe.String(&buf[0], sl)
	}
	if hl > 0 {
		m.Headers = buf[sl : sl+hl : sl+hl]
	}
	if pl > 0 {
		m.Payload = buf[sl+hl : sl+hl+pl : sl+hl+pl]
	} else {
		m.Payload = []byte{}
	}
	if il > 0 {
		m.MsgID = unsafe.String(&buf[sl+hl+pl], il)
	}
}

// viewLen is the number of bytes a view's fields take back to back.
func viewLen(v *C.tidelog_msg_view) int {
	return int(v.subject_len) + int(v.headers_len) + int(v.payload_len) + int(v.msg_id_len)
}

// copyView copies a view's fields from C memory into buf, back to back.
func copyView(buf []byte, v *C.tidelog_msg_view) {
	n := copy(buf, cBytes(unsafe.Pointer(v.subject), v.subject_len))
	n += copy(buf[n:], cBytes(unsafe.Pointer(v.headers), v.headers_len))
	n += copy(buf[n:], cBytes(unsafe.Pointer(v.payload), v.payload_len))
	copy(buf[n:], cBytes(unsafe.Pointer(v.msg_id), v.msg_id_len))
}

func cBytes(p unsafe.Pointer, n C.size_t) []byte {
	if n == 0 || p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

// takeMsg turns the message a tl_load or tl_watcher_next left in c into a Msg: from the
// scratch buffer when the C side copied it there, or from the C message, which it frees.
func (c *call) takeMsg() *Msg {
	n := viewLen(&c.view)
	buf := make([]byte, n)
	if c.msg == nil {
		copy(buf, c.scratch[:n])
	} else {
		copyView(buf, &c.view)
		C.tidelog_msg_free(c.msg)
		c.msg = nil
	}
	m := new(Msg)
	newMsg(m, &c.view, buf)
	return m
}

// Stream is a handle to a stream of a store. It is safe for concurrent use. Close frees the
// handle (the stream stays in the store); it waits for calls in flight on the handle, and
// later calls return ErrClosed. A handle that becomes unreachable is freed by the garbage
// collector.
type Stream struct {
	store   *Store
	g       guard
	ptr     *C.tidelog_stream
	name    string
	id      uint64
	cleanup runtime.Cleanup
}

func newStream(store *Store, p *C.tidelog_stream, name string) *Stream {
	s := &Stream{store: store, ptr: p, name: name}
	id, open := track(store, s, (*Stream).close)
	s.id = id
	s.cleanup = runtime.AddCleanup(s, func(f freed[*C.tidelog_stream]) {
		f.handles.drop(f.id)
		C.tidelog_stream_free(f.ptr)
	}, freed[*C.tidelog_stream]{p, &store.handles, id})
	if !open {
		s.close()
	}
	return s
}

// enter admits a call: the store and the handle are open until leave.
func (s *Stream) enter() error {
	if !s.store.g.enter() {
		return errClosed("store")
	}
	if !s.g.enter() {
		s.store.g.leave()
		return errClosed("stream handle")
	}
	return nil
}

func (s *Stream) leave() {
	s.g.leave()
	s.store.g.leave()
}

// exec makes one call with a prepared call scratch c (strings already in it).
func (s *Stream) exec(c *call, f func() cstatus) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if st := f(); st != C.TIDELOG_STATUS_OK {
		return c.fail(st)
	}
	return nil
}

// run makes one call that needs no strings.
func (s *Stream) run(f func(c *call) cstatus) error {
	c := getCall()
	defer c.put()
	return s.exec(c, func() cstatus { return f(c) })
}

// withFilter makes one call that takes a NUL-terminated filter.
func (s *Stream) withFilter(filter string, f func(c *call, filter *C.char) cstatus) error {
	c := getCall()
	defer c.put()
	off, err := c.cstr(filter, "filter")
	if err != nil {
		return err
	}
	return s.exec(c, func() cstatus { return f(c, c.ptr(off)) })
}

// Name is the stream's name.
func (s *Stream) Name() string { return s.name }

// Store is the store the stream belongs to.
func (s *Stream) Store() *Store { return s.store }

// Close frees the handle. The stream stays in the store. Closing twice does nothing.
func (s *Stream) Close() error {
	s.close()
	return nil
}

func (s *Stream) close() {
	s.g.close(func() {
		s.cleanup.Stop()
		s.store.handles.drop(s.id)
		C.tidelog_stream_free(s.ptr)
		s.ptr = nil
	})
}

// Append appends one message without headers. Under DurabilityAlways it returns once the
// message is on stable storage.
func (s *Stream) Append(subject string, payload []byte) (Appended, error) {
	return s.AppendWithHeaders(subject, nil, payload)
}

// AppendWithHeaders appends one message with a header block.
func (s *Stream) AppendWithHeaders(subject string, headers, payload []byte) (Appended, error) {
	if err := s.enter(); err != nil {
		return Appended{}, err
	}
	defer s.leave()
	c := getCall()
	defer c.put()
	st := C.tidelog_stream_append(s.ptr, strPtr(subject), C.size_t(len(subject)),
		bytePtr(headers), C.size_t(len(headers)), bytePtr(payload), C.size_t(len(payload)),
		&c.appended, c.err)
	if st != C.TIDELOG_STATUS_OK {
		return Appended{}, c.fail(st)
	}
	return Appended{Seq: uint64(c.appended.seq), Time: nsTime(c.appended.ts), Duplicate: bool(c.appended.duplicate)}, nil
}

// AppendMsg appends one message with everything Message can say: headers, TTL, rollup,
// message id and expectations.
func (s *Stream) AppendMsg(m Message) (Appended, error) {
	c := getCall()
	defer c.put()
	if err := s.appendMsg(c, m, false, 0, 0); err != nil {
		return Appended{}, err
	}
	return Appended{Seq: uint64(c.appended.seq), Time: nsTime(c.appended.ts), Duplicate: bool(c.appended.duplicate)}, nil
}

// AppendRaw stores m under the sequence and time the caller gives (replicas and mirrors):
// seq must be after the stream's last sequence, and a gap becomes skipped sequences. The
// TTL and rollup apply as at the origin unless the stream's ReplicaOptions say otherwise.
func (s *Stream) AppendRaw(seq uint64, ts time.Time, m Message) error {
	c := getCall()
	defer c.put()
	return s.appendMsg(c, m, true, seq, ts.UnixNano())
}

func (s *Stream) appendMsg(c *call, m Message, raw bool, seq uint64, ts int64) error {
	ttl, err := ttlC(m.TTL)
	if err != nil {
		return err
	}
	var rawFlag C.int
	if raw {
		rawFlag = 1
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	st := C.tl_append_msg(s.ptr, rawFlag, C.uint64_t(seq), C.int64_t(ts),
		strPtr(m.Subject), C.size_t(len(m.Subject)), bytePtr(m.Headers), C.size_t(len(m.Headers)),
		bytePtr(m.Payload), C.size_t(len(m.Payload)), ttl, C.uint32_t(m.Rollup),
		(*C.uint8_t)(unsafe.Pointer(strPtr(m.MsgID))), C.size_t(len(m.MsgID)),
		m.Expect.bits(), C.uint64_t(m.Expect.LastSeq), C.uint64_t(m.Expect.LastSubjectSeq),
		strPtr(m.Expect.Filter), C.size_t(len(m.Expect.Filter)), &c.appended, c.err)
	if st != C.TIDELOG_STATUS_OK {
		return c.fail(st)
	}
	return nil
}

// load runs one of the tl_load operations.
func (s *Stream) load(op C.int, filter string, seq uint64) (*Msg, error) {
	c := getCall()
	defer c.put()
	var f *C.char
	if op != C.TL_LOAD {
		off, err := c.cstr(filter, "filter")
		if err != nil {
			return nil, err
		}
		f = c.ptr(off)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	st := C.tl_load(s.ptr, op, f, C.uint64_t(seq), &c.msg, &c.view,
		bytePtr(c.scratch), C.size_t(len(c.scratch)), c.err)
	if st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	return c.takeMsg(), nil
}

// Load reads message seq (ErrNotFound if it is not stored).
func (s *Stream) Load(seq uint64) (*Msg, error) { return s.load(C.TL_LOAD, "", seq) }

// LoadNext reads the first message at or after fromSeq matching filter (ErrNotFound when
// none does).
func (s *Stream) LoadNext(filter string, fromSeq uint64) (*Msg, error) {
	return s.load(C.TL_LOAD_NEXT, filter, fromSeq)
}

// LoadPrev reads the last message at or before fromSeq matching filter.
func (s *Stream) LoadPrev(filter string, fromSeq uint64) (*Msg, error) {
	return s.load(C.TL_LOAD_PREV, filter, fromSeq)
}

// LoadLast reads the newest message of a subject, or matching a filter.
func (s *Stream) LoadLast(subjectOrFilter string) (*Msg, error) {
	return s.load(C.TL_LOAD_LAST, subjectOrFilter, 0)
}

// Remove removes message seq (ErrNotFound if it is not stored).
func (s *Stream) Remove(seq uint64) error {
	return s.run(func(c *call) cstatus { return C.tidelog_stream_remove(s.ptr, C.uint64_t(seq), c.err) })
}

// Erase removes message seq and overwrites its bytes on disk.
func (s *Stream) Erase(seq uint64) error {
	return s.run(func(c *call) cstatus { return C.tidelog_stream_erase(s.ptr, C.uint64_t(seq), c.err) })
}

// count runs a call that reports a count in c.u64.
func (s *Stream) count(f func(c *call) cstatus) (uint64, error) {
	var n uint64
	err := s.run(func(c *call) cstatus {
		st := f(c)
		n = uint64(c.u64)
		return st
	})
	return n, err
}

// Purge removes every message and returns how many went.
func (s *Stream) Purge() (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_purge(s.ptr, &c.u64, c.err) })
}

// PurgeFiltered removes the messages matching filter below upToSeq (0: all of them),
// keeping the newest keep of every matching subject, and returns how many went.
func (s *Stream) PurgeFiltered(filter string, upToSeq, keep uint64) (uint64, error) {
	var n uint64
	err := s.withFilter(filter, func(c *call, f *C.char) cstatus {
		st := C.tidelog_stream_purge_filtered(s.ptr, f, C.uint64_t(upToSeq), C.uint64_t(keep), &c.u64, c.err)
		n = uint64(c.u64)
		return st
	})
	return n, err
}

// Compact removes every message below seq and returns how many went.
func (s *Stream) Compact(seq uint64) (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_compact(s.ptr, C.uint64_t(seq), &c.u64, c.err) })
}

// Truncate removes every message after seq (the next append gets seq+1) and returns how
// many went.
func (s *Stream) Truncate(seq uint64) (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_truncate(s.ptr, C.uint64_t(seq), &c.u64, c.err) })
}

// Skip marks the next count sequences as skipped and returns the last of them.
func (s *Stream) Skip(count uint64) (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_skip(s.ptr, C.uint64_t(count), &c.u64, c.err) })
}

// Sync makes everything appended so far durable, whatever the durability mode.
func (s *Stream) Sync() error {
	return s.run(func(c *call) cstatus { return C.tidelog_stream_sync(s.ptr, c.err) })
}

// Checkpoint writes a checkpoint now (hosts with manual maintenance call it periodically).
func (s *Stream) Checkpoint() error {
	return s.run(func(c *call) cstatus { return C.tidelog_stream_checkpoint(s.ptr, c.err) })
}

// EnforceLimits applies limits, max_age and due TTLs now (the background maintenance does
// this on its own; with manual maintenance and a ManualClock the host calls it).
func (s *Stream) EnforceLimits() error {
	return s.run(func(c *call) cstatus { return C.tidelog_stream_enforce_limits(s.ptr, c.err) })
}

// ExpireNow removes every message due now by its TTL or the stream's MaxAge, leaving the
// delete markers the stream's config asks for, as the background maintenance does every
// tick, and returns how many went. Hosts with manual maintenance or a ManualClock call it
// (EnforceLimits does this and applies the other limits too).
func (s *Stream) ExpireNow() (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_expire_now(s.ptr, &c.u64, c.err) })
}

// Reclaim rewrites blocks that are mostly removed messages and frees retired ones now, and
// returns how many blocks it rewrote or freed.
func (s *Stream) Reclaim() (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_reclaim(s.ptr, &c.u64, c.err) })
}

// UpdateLimits replaces the stream's limits and applies them at once.
func (s *Stream) UpdateLimits(l Limits) error {
	age, err := millis(l.MaxAge, "max age")
	if err != nil {
		return err
	}
	c := getCall()
	defer c.put()
	off, err := c.cstr(s.name, "name")
	if err != nil {
		return err
	}
	return s.exec(c, func() cstatus {
		var cfg *C.tidelog_stream_config
		if st := C.tidelog_stream_config_new(c.ptr(off), &cfg, c.err); st != C.TIDELOG_STATUS_OK {
			return st
		}
		defer C.tidelog_stream_config_free(cfg)
		if st := C.tidelog_stream_config_set_limits(cfg, C.uint64_t(l.MaxMsgs), C.uint64_t(l.MaxBytes), age,
			C.uint64_t(l.MaxMsgsPerSubject), C.uint32_t(l.Discard)); st != C.TIDELOG_STATUS_OK {
			return st
		}
		return C.tidelog_stream_update_limits(s.ptr, cfg, c.err)
	})
}

// BoundBy says which limit bounds a stream's bytes.
type BoundBy uint32

const (
	// BoundByStream: the stream's own MaxBytes.
	BoundByStream BoundBy = 0
	// BoundByStore: the store's budget.
	BoundByStore BoundBy = 1
)

// StreamState is a stream's state at one moment.
type StreamState struct {
	Messages uint64
	// Bytes of the stored records.
	Bytes     uint64
	FirstSeq  uint64
	FirstTime time.Time
	LastSeq   uint64
	LastTime  time.Time
	// NumDeleted counts removed sequences between FirstSeq and LastSeq.
	NumDeleted  uint64
	NumSubjects uint64
	Blocks      uint64
	// MaxBytes is the byte bound in force, and BoundBy where it comes from.
	MaxBytes uint64
	BoundBy  BoundBy
	// DiskBytes is what the stream's files take on disk.
	DiskBytes uint64
	// Poisoned says writes are refused until the stream heals.
	Poisoned bool
}

// State reports the stream's state.
func (s *Stream) State() (StreamState, error) {
	var o C.tidelog_stream_state
	err := s.run(func(c *call) cstatus { return C.tidelog_stream_get_state(s.ptr, &o, c.err) })
	if err != nil {
		return StreamState{}, err
	}
	return StreamState{
		Messages: uint64(o.messages), Bytes: uint64(o.bytes),
		FirstSeq: uint64(o.first_seq), FirstTime: nsTime(o.first_ts),
		LastSeq: uint64(o.last_seq), LastTime: nsTime(o.last_ts),
		NumDeleted: uint64(o.num_deleted), NumSubjects: uint64(o.num_subjects), Blocks: uint64(o.blocks),
		MaxBytes: uint64(o.max_bytes), BoundBy: BoundBy(o.bound_by), DiskBytes: uint64(o.disk_bytes),
		Poisoned: bool(o.poisoned),
	}, nil
}

// NumPending counts the messages at or after fromSeq matching filter; with lastPerSubject,
// the matching subjects whose last message is at or after fromSeq.
func (s *Stream) NumPending(fromSeq uint64, filter string, lastPerSubject bool) (uint64, error) {
	var n uint64
	err := s.withFilter(filter, func(c *call, f *C.char) cstatus {
		st := C.tidelog_stream_num_pending(s.ptr, C.uint64_t(fromSeq), f, C.bool(lastPerSubject), &c.u64, c.err)
		n = uint64(c.u64)
		return st
	})
	return n, err
}

// SubjectState is one subject's figures.
type SubjectState struct {
	Subject           string
	Messages          uint64
	FirstSeq, LastSeq uint64
}

// SubjectsState lists every subject matching filter with its count and first and last
// sequence, sorted by subject.
func (s *Stream) SubjectsState(filter string) ([]SubjectState, error) {
	var out []SubjectState
	err := s.withFilter(filter, func(c *call, f *C.char) cstatus {
		var res *C.tidelog_subjects
		if st := C.tidelog_stream_subjects_state(s.ptr, f, &res, c.err); st != C.TIDELOG_STATUS_OK {
			return st
		}
		defer C.tidelog_subjects_free(res)
		var n C.size_t
		p := C.tidelog_subjects_items(res, &n)
		if n == 0 {
			return C.TIDELOG_STATUS_OK
		}
		items := unsafe.Slice(p, int(n))
		out = make([]SubjectState, len(items))
		for i := range items {
			it := &items[i]
			out[i] = SubjectState{
				Subject:  C.GoStringN(it.subject, C.int(it.subject_len)),
				Messages: uint64(it.messages), FirstSeq: uint64(it.first_seq), LastSeq: uint64(it.last_seq),
			}
		}
		return C.TIDELOG_STATUS_OK
	})
	return out, err
}

// MultiLastSeqs returns the last sequence at or below upToSeq (0: the stream's last) of
// every subject matching any of filters, ascending; more than max results is an error
// matching ErrTooManyResults.
func (s *Stream) MultiLastSeqs(filters []string, upToSeq uint64, max int) ([]uint64, error) {
	seqs := make([]C.uint64_t, max)
	var got int
	c := getCall()
	defer c.put()
	off, n, err := c.cstrs(filters, "filter")
	if err != nil {
		return nil, err
	}
	err = s.exec(c, func() cstatus {
		var packed *C.char
		if n > 0 {
			packed = c.ptr(off)
		}
		var first *C.uint64_t
		if max > 0 {
			first = &seqs[0]
		}
		st := C.tl_multi_last_seqs(s.ptr, packed, n, C.uint64_t(upToSeq), first, C.size_t(max), &c.size, c.err)
		got = int(c.size)
		return st
	})
	if err != nil {
		return nil, err
	}
	out := make([]uint64, got)
	for i := range out {
		out[i] = uint64(seqs[i])
	}
	return out, nil
}

// SeqForTime returns the first sequence stored at or after t; the last sequence + 1 if none
// is.
func (s *Stream) SeqForTime(t time.Time) (uint64, error) {
	return s.count(func(c *call) cstatus {
		return C.tidelog_stream_seq_for_time(s.ptr, C.int64_t(t.UnixNano()), &c.u64, c.err)
	})
}

// StateDigest is a hash of everything a read of the stream can see: its first and last
// sequence, its count, and every live message's sequence, time, subject, headers, payload,
// id, TTL and rollup (not how they are stored, nor the marker flag). Two streams with equal
// digests answer every read the same way, so a replica can be compared with its origin
// without reading both. It takes time in proportion to the messages, and appends wait while
// it runs.
func (s *Stream) StateDigest() (uint64, error) {
	return s.count(func(c *call) cstatus { return C.tidelog_stream_state_digest(s.ptr, &c.u64, c.err) })
}

// SeqRange is an inclusive range of sequences.
type SeqRange struct {
	First, Last uint64
}

// UnmarshalJSON reads the library's [first, last] pair.
func (r *SeqRange) UnmarshalJSON(b []byte) error {
	var pair [2]uint64
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	r.First, r.Last = pair[0], pair[1]
	return nil
}

// VerifyReport is what Stream.Verify found.
type VerifyReport struct {
	// Checked counts the live messages read.
	Checked uint64 `json:"checked"`
	// Damaged lists the sequences whose records fail their checksum.
	Damaged []SeqRange `json:"damaged"`
	// DamagedBlocks lists the blocks whose header or trailer fails its checksum (Repair
	// rewrites them).
	DamagedBlocks []uint64 `json:"damaged_blocks"`
}

// Verify reads every stored record and checks its checksum. Damage is reported, not an
// error.
func (s *Stream) Verify() (VerifyReport, error) {
	var r VerifyReport
	err := s.jsonCall(&r, "verify report", func(c *call, out **C.tidelog_string) cstatus {
		return C.tidelog_stream_verify_json(s.ptr, out, c.err)
	})
	return r, err
}

// RepairReport is what Stream.Repair did.
type RepairReport struct {
	// Checked counts the live messages read before the repair.
	Checked uint64 `json:"checked"`
	// Removed lists the damaged sequences removed.
	Removed []SeqRange `json:"removed"`
	// RewrittenBlocks lists the block files rewritten without damaged records.
	RewrittenBlocks []uint64 `json:"rewritten_blocks"`
}

// Repair removes the messages Verify finds damaged and rewrites the blocks that held them
// (or that recovery found damaged), keeping every good record. A sound stream is left
// untouched.
func (s *Stream) Repair() (RepairReport, error) {
	var r RepairReport
	err := s.jsonCall(&r, "repair report", func(c *call, out **C.tidelog_string) cstatus {
		return C.tidelog_stream_repair_json(s.ptr, out, c.err)
	})
	return r, err
}

// RecoveryReport is what recovery found and did when the stream was opened.
type RecoveryReport struct {
	// Lost lists the sequences of damaged records that are gone (a range may include
	// sequences that never held a message when the damage hid a record's header).
	Lost []SeqRange `json:"lost"`
	// TornBytes were cut from the end of the log (a torn write or an incomplete batch).
	TornBytes uint64 `json:"torn_bytes"`
	// ReplayedRecords and ReplayedBytes were read after the checkpoint.
	ReplayedRecords uint64 `json:"replayed_records"`
	ReplayedBytes   uint64 `json:"replayed_bytes"`
	// UsedCheckpoint says recovery started from a checkpoint; CheckpointError says why an
	// existing one could not be used.
	UsedCheckpoint  bool   `json:"used_checkpoint"`
	CheckpointError string `json:"checkpoint_error"`
	// LeaseError says why the lease file could not be read, if it could not: recovery then
	// skipped one lease span of sequences, so none is reused (Repair writes a sound one).
	LeaseError string `json:"lease_error"`
	// DamagedBlocks lists block files damaged beyond single records (missing, bad trailer,
	// bad header).
	DamagedBlocks []uint64 `json:"damaged_blocks"`
	// Duration is the time recovery took, Index the part of it spent rebuilding the subject
	// index.
	Duration time.Duration `json:"-"`
	Index    time.Duration `json:"-"`
}

// RecoveryReport reports what recovery found when the stream was opened (an empty report for
// a stream created in this run).
func (s *Stream) RecoveryReport() (RecoveryReport, error) {
	var r struct {
		RecoveryReport
		DurationUS uint64 `json:"duration_us"`
		IndexUS    uint64 `json:"index_us"`
	}
	err := s.jsonCall(&r, "recovery report", func(c *call, out **C.tidelog_string) cstatus {
		return C.tidelog_stream_recovery_report_json(s.ptr, out, c.err)
	})
	if err != nil {
		return RecoveryReport{}, err
	}
	r.Duration = time.Duration(r.DurationUS) * time.Microsecond
	r.Index = time.Duration(r.IndexUS) * time.Microsecond
	return r.RecoveryReport, nil
}

// jsonCall runs a call that returns a JSON string and decodes it into v.
func (s *Stream) jsonCall(v any, what string, f func(c *call, out **C.tidelog_string) cstatus) error {
	var js []byte
	err := s.run(func(c *call) cstatus {
		var str *C.tidelog_string
		if st := f(c, &str); st != C.TIDELOG_STATUS_OK {
			return st
		}
		js = C.GoBytes(unsafe.Pointer(C.tidelog_string_ptr(str)), C.int(C.tidelog_string_len(str)))
		C.tidelog_string_free(str)
		return C.TIDELOG_STATUS_OK
	})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(js, v); err != nil {
		return newError(StatusCorrupt, what+" JSON: "+err.Error())
	}
	return nil
}

// ConsumerNames lists the stream's consumers.
func (s *Stream) ConsumerNames() ([]string, error) {
	var out []string
	err := s.run(func(c *call) cstatus {
		var list *C.tidelog_strings
		if st := C.tidelog_stream_consumer_names(s.ptr, &list, c.err); st != C.TIDELOG_STATUS_OK {
			return st
		}
		out = goStrings(list)
		C.tidelog_strings_free(list)
		return C.TIDELOG_STATUS_OK
	})
	return out, err
}

// ConfigJSON returns the stream's config in the library's JSON form.
func (s *Stream) ConfigJSON() (string, error) {
	var out string
	err := s.run(func(c *call) cstatus {
		var str *C.tidelog_string
		if st := C.tidelog_stream_config_json(s.ptr, &str, c.err); st != C.TIDELOG_STATUS_OK {
			return st
		}
		out = C.GoStringN(C.tidelog_string_ptr(str), C.int(C.tidelog_string_len(str)))
		C.tidelog_string_free(str)
		return C.TIDELOG_STATUS_OK
	})
	return out, err
}

// nameFromConfig reads the stream's name from its config (for handles whose name the
// caller did not give, such as restored streams).
func (s *Stream) nameFromConfig() error {
	js, err := s.ConfigJSON()
	if err != nil {
		return err
	}
	var cfg struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		return newError(StatusCorrupt, "stream config JSON: "+err.Error())
	}
	s.name = cfg.Name
	return nil
}

func (s *Stream) String() string { return "tidelog.Stream(" + strconv.Quote(s.name) + ")" }
