package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"math"
	"strconv"
	"sync"
)

// packer lays a batch out as tidelog_stream_append_packed takes it: every message's bytes
// (subject, headers, payload, id, expectation filter) back to back in one Go buffer, and a Go
// slice of fixed-size entries with the lengths and the numbers. Neither holds a pointer, so
// both may be handed to C as they are. Packers are pooled, so a steady stream of batches
// reuses the same buffers.
type packer struct {
	buf     []byte
	entries []C.tidelog_packed_message
}

// Buffers that grew past these are dropped rather than pooled.
const (
	maxPooledBatchBytes   = 32 << 20
	maxPooledBatchEntries = 1 << 16
)

var packers = sync.Pool{New: func() any { return new(packer) }}

func (p *packer) release() {
	if cap(p.buf) > maxPooledBatchBytes || cap(p.entries) > maxPooledBatchEntries {
		return
	}
	p.buf = p.buf[:0]
	p.entries = p.entries[:0]
	packers.Put(p)
}

func batchErr(st Status, i int, what string) error {
	return &Error{Status: st, Index: uint64(i), Message: "message " + strconv.Itoa(i) + ": " + what}
}

// pack lays msgs out in p. What the packed layout cannot say fails here, naming the message
// as the library does: a rollup (not allowed in a batch), a field over 4 GiB, a TTL that is
// not whole seconds.
func (p *packer) pack(msgs []Message) error {
	total := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Rollup != RollupNone {
			return batchErr(StatusNotAllowed, i, "rollups are not allowed in a batch")
		}
		for _, n := range [...]int{len(m.Subject), len(m.Headers), len(m.Payload), len(m.MsgID), len(m.Expect.Filter)} {
			if n > math.MaxUint32 {
				return batchErr(StatusTooLarge, i, "a field is over 4 GiB")
			}
		}
		total += len(m.Subject) + len(m.Headers) + len(m.Payload) + len(m.MsgID) + len(m.Expect.Filter)
	}
	if cap(p.buf) < total {
		p.buf = make([]byte, 0, total)
	}
	if cap(p.entries) < len(msgs) {
		p.entries = make([]C.tidelog_packed_message, 0, len(msgs))
	}
	buf := p.buf[:total]
	entries := p.entries[:len(msgs)]
	at := 0
	for i := range msgs {
		m := &msgs[i]
		ttl, err := ttlC(m.TTL)
		if err != nil {
			return batchErr(StatusInvalidTTL, i, err.(*Error).Message)
		}
		at += copy(buf[at:], m.Subject)
		at += copy(buf[at:], m.Headers)
		at += copy(buf[at:], m.Payload)
		at += copy(buf[at:], m.MsgID)
		at += copy(buf[at:], m.Expect.Filter)
		entries[i] = C.tidelog_packed_message{
			subject_len:             C.uint32_t(len(m.Subject)),
			headers_len:             C.uint32_t(len(m.Headers)),
			payload_len:             C.uint32_t(len(m.Payload)),
			msg_id_len:              C.uint32_t(len(m.MsgID)),
			expect_filter_len:       C.uint32_t(len(m.Expect.Filter)),
			expect:                  m.Expect.bits(),
			ttl:                     ttl,
			expect_last_seq:         C.uint64_t(m.Expect.LastSeq),
			expect_last_subject_seq: C.uint64_t(m.Expect.LastSubjectSeq),
		}
	}
	p.buf, p.entries = buf, entries
	return nil
}

// AppendBatch appends msgs atomically: all are stored with consecutive sequences and one
// time, or none is. When one message is at fault (a bad subject, filter or id, too large, a
// subject outside the stream, a TTL or rollup not allowed, a duplicate id), the error's Index
// names it; a failed expectation carries Expected and Current but no Index (the library
// leaves it 0). Under DurabilityAlways the whole batch costs one fdatasync. Rollups are not
// allowed in a batch; expectations are, each checked against the stream as the messages
// before it in the batch leave it. The batch crosses into the library in one call, as one
// buffer.
func (s *Stream) AppendBatch(msgs []Message) (BatchAppended, error) {
	p := packers.Get().(*packer)
	defer p.release()
	if err := p.pack(msgs); err != nil {
		return BatchAppended{}, err
	}
	var entries *C.tidelog_packed_message
	if len(p.entries) > 0 {
		entries = &p.entries[0]
	}
	if err := s.enter(); err != nil {
		return BatchAppended{}, err
	}
	defer s.leave()
	c := getCall()
	defer c.put()
	st := C.tidelog_stream_append_packed(s.ptr, bytePtr(p.buf), C.size_t(len(p.buf)), entries,
		C.size_t(len(msgs)), &c.batch, c.err)
	if st != C.TIDELOG_STATUS_OK {
		return BatchAppended{}, c.fail(st)
	}
	return BatchAppended{FirstSeq: uint64(c.batch.first_seq), LastSeq: uint64(c.batch.last_seq), Time: nsTime(c.batch.ts)}, nil
}
