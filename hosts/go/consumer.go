package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// Consumer is a handle to a consumer of a stream. It is safe for concurrent use: any number
// of goroutines may fetch and acknowledge through one handle. Close frees the handle (the
// consumer stays); it waits for calls in flight, and later calls return ErrClosed. A
// handle that becomes unreachable is freed by the garbage collector.
type Consumer struct {
	store   *Store
	g       guard
	ptr     *C.tidelog_consumer
	name    string
	id      uint64
	cleanup runtime.Cleanup
}

// Delivery is one delivered message and how often it has been delivered.
type Delivery struct {
	Msg
	// DeliveryCount is 1 on the first delivery.
	DeliveryCount uint64
	// DeliverySeq is the consumer's own sequence of this delivery.
	DeliverySeq uint64
}

// AckOutcome says what an acknowledgement did.
type AckOutcome uint32

const (
	// AckDone: the acknowledgement applied.
	AckDone AckOutcome = 0
	// AckNotPending: the message was not pending (never delivered, acknowledged already, or
	// removed).
	AckNotPending AckOutcome = 1
)

// AckKind is a kind of acknowledgement, for ApplyBatch.
type AckKind uint32

const (
	// KindAck acknowledges.
	KindAck AckKind = 0
	// KindNak redelivers after the given delay.
	KindNak AckKind = 1
	// KindTerm never redelivers.
	KindTerm AckKind = 2
	// KindInProgress restarts the ack wait.
	KindInProgress AckKind = 3
)

// SeqPair is a (stream sequence, consumer sequence) pair.
type SeqPair struct {
	StreamSeq, ConsumerSeq uint64
}

// ConsumerState is a consumer's state.
type ConsumerState struct {
	Delivered SeqPair
	AckFloor  SeqPair
	// NumPending counts matching messages not yet delivered.
	NumPending           uint64
	NumAckPending        uint64
	NumRedelivered       uint64
	NumWaitingRedelivery uint64
	// NumMaxDelivered counts messages that reached MaxDeliver unacknowledged.
	NumMaxDelivered uint64
}

// CreateConsumer creates a consumer (ErrConsumerExists if the name is taken) and returns a
// handle to it.
func (s *Stream) CreateConsumer(cfg ConsumerConfig) (*Consumer, error) {
	c := getCall()
	defer c.put()
	ccfg, err := cfg.toC(c)
	if err != nil {
		return nil, err
	}
	defer C.tidelog_consumer_config_free(ccfg)
	var out *C.tidelog_consumer
	err = s.exec(c, func() cstatus {
		return C.tidelog_stream_create_consumer(s.ptr, ccfg, &out, c.err)
	})
	if err != nil {
		return nil, err
	}
	return newConsumer(s.store, out, cfg.Name), nil
}

// Consumer opens a handle to an existing consumer (ErrConsumerNotFound if there is none).
func (s *Stream) Consumer(name string) (*Consumer, error) {
	c := getCall()
	defer c.put()
	off, err := c.cstr(name, "consumer name")
	if err != nil {
		return nil, err
	}
	var out *C.tidelog_consumer
	err = s.exec(c, func() cstatus {
		return C.tidelog_stream_open_consumer(s.ptr, c.ptr(off), &out, c.err)
	})
	if err != nil {
		return nil, err
	}
	return newConsumer(s.store, out, name), nil
}

// DeleteConsumer deletes a consumer; its handles return ErrConsumerDeleted afterwards.
func (s *Stream) DeleteConsumer(name string) error {
	c := getCall()
	defer c.put()
	off, err := c.cstr(name, "consumer name")
	if err != nil {
		return err
	}
	return s.exec(c, func() cstatus {
		return C.tidelog_stream_delete_consumer(s.ptr, c.ptr(off), c.err)
	})
}

func newConsumer(store *Store, p *C.tidelog_consumer, name string) *Consumer {
	c := &Consumer{store: store, ptr: p, name: name}
	id, open := track(store, c, (*Consumer).close)
	c.id = id
	c.cleanup = runtime.AddCleanup(c, func(f freed[*C.tidelog_consumer]) {
		f.handles.drop(f.id)
		C.tidelog_consumer_free(f.ptr)
	}, freed[*C.tidelog_consumer]{p, &store.handles, id})
	if !open {
		c.close()
	}
	return c
}

// Name is the consumer's name.
func (k *Consumer) Name() string { return k.name }

// Close frees the handle. The consumer stays. Closing twice does nothing.
func (k *Consumer) Close() error {
	k.close()
	return nil
}

func (k *Consumer) close() {
	k.g.close(func() {
		k.cleanup.Stop()
		k.store.handles.drop(k.id)
		C.tidelog_consumer_free(k.ptr)
		k.ptr = nil
	})
}

func (k *Consumer) enter() error {
	if !k.store.g.enter() {
		return errClosed("store")
	}
	if !k.g.enter() {
		k.store.g.leave()
		return errClosed("consumer handle")
	}
	return nil
}

func (k *Consumer) leave() {
	k.g.leave()
	k.store.g.leave()
}

// Fetch returns up to max messages due for delivery: redeliveries first, then new ones. It
// never blocks; an empty result is not an error.
func (k *Consumer) Fetch(max int) ([]Delivery, error) { return k.FetchBytes(max, 0) }

// FetchBytes is Fetch bounded also by about maxBytes of payload (0: no bound). The whole
// batch is one call into the library, and its messages are copied into one Go allocation
// (so a retained Delivery keeps its batch's bytes alive).
func (k *Consumer) FetchBytes(max, maxBytes int) ([]Delivery, error) {
	if max < 0 || maxBytes < 0 {
		return nil, newError(StatusInvalidArgument, "negative fetch bound")
	}
	if err := k.enter(); err != nil {
		return nil, err
	}
	defer k.leave()
	c := getCall()
	defer c.put()
	st := C.tl_fetch(k.ptr, C.size_t(max), C.size_t(maxBytes), &c.deliv, &c.items, &c.size, c.err)
	if st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	n := int(c.size)
	if n == 0 {
		return nil, nil
	}
	defer C.tidelog_deliveries_free(c.deliv)
	items := unsafe.Slice(c.items, n)
	total := 0
	for i := range items {
		total += viewLen(&items[i].msg)
	}
	buf := make([]byte, total)
	out := make([]Delivery, n)
	at := 0
	for i := range items {
		it := &items[i]
		l := viewLen(&it.msg)
		b := buf[at : at+l : at+l]
		copyView(b, &it.msg)
		newMsg(&out[i].Msg, &it.msg, b)
		out[i].DeliveryCount = uint64(it.delivery_count)
		out[i].DeliverySeq = uint64(it.delivery_seq)
		at += l
	}
	return out, nil
}

func (k *Consumer) ack(kind AckKind, seq uint64, delay time.Duration) (AckOutcome, error) {
	var ms C.uint64_t
	if kind == KindNak {
		var err error
		if ms, err = millis(delay, "nak delay"); err != nil {
			return 0, err
		}
	}
	if err := k.enter(); err != nil {
		return 0, err
	}
	defer k.leave()
	c := getCall()
	defer c.put()
	var st cstatus
	switch kind {
	case KindAck:
		st = C.tidelog_consumer_ack(k.ptr, C.uint64_t(seq), &c.ack, c.err)
	case KindNak:
		st = C.tidelog_consumer_nak(k.ptr, C.uint64_t(seq), ms, &c.ack, c.err)
	case KindTerm:
		st = C.tidelog_consumer_term(k.ptr, C.uint64_t(seq), &c.ack, c.err)
	default:
		st = C.tidelog_consumer_in_progress(k.ptr, C.uint64_t(seq), &c.ack, c.err)
	}
	if st != C.TIDELOG_STATUS_OK {
		return 0, c.fail(st)
	}
	return AckOutcome(c.ack), nil
}

// Ack acknowledges stream sequence seq.
func (k *Consumer) Ack(seq uint64) (AckOutcome, error) { return k.ack(KindAck, seq, 0) }

// Nak asks for seq to be redelivered after delay (0: at the next fetch).
func (k *Consumer) Nak(seq uint64, delay time.Duration) (AckOutcome, error) {
	return k.ack(KindNak, seq, delay)
}

// Term stops redelivery of seq; it counts as acknowledged.
func (k *Consumer) Term(seq uint64) (AckOutcome, error) { return k.ack(KindTerm, seq, 0) }

// InProgress restarts seq's ack wait: the host is still working on it.
func (k *Consumer) InProgress(seq uint64) (AckOutcome, error) {
	return k.ack(KindInProgress, seq, 0)
}

// AckBatch acknowledges every sequence of seqs in one call and returns how many were
// pending. On a failure the sequences before the failing one (the error's Index) stay
// acknowledged.
func (k *Consumer) AckBatch(seqs []uint64) (int, error) { return k.ApplyBatch(KindAck, seqs, 0) }

// ApplyBatch applies one kind of acknowledgement to every sequence of seqs, in order, in one
// call; nakDelay is the delay of KindNak. It returns how many were pending.
func (k *Consumer) ApplyBatch(kind AckKind, seqs []uint64, nakDelay time.Duration) (int, error) {
	ms, err := millis(nakDelay, "nak delay")
	if err != nil {
		return 0, err
	}
	var first *C.uint64_t
	if len(seqs) > 0 {
		first = (*C.uint64_t)(unsafe.Pointer(&seqs[0]))
	}
	if err := k.enter(); err != nil {
		return 0, err
	}
	defer k.leave()
	c := getCall()
	defer c.put()
	st := C.tidelog_consumer_ack_batch(k.ptr, C.uint32_t(kind), first, C.size_t(len(seqs)), ms, &c.size, c.err)
	if st != C.TIDELOG_STATUS_OK {
		return 0, c.fail(st)
	}
	return int(c.size), nil
}

// State reports the consumer's state.
func (k *Consumer) State() (ConsumerState, error) {
	if err := k.enter(); err != nil {
		return ConsumerState{}, err
	}
	defer k.leave()
	c := getCall()
	defer c.put()
	var o C.tidelog_consumer_state
	if st := C.tidelog_consumer_get_state(k.ptr, &o, c.err); st != C.TIDELOG_STATUS_OK {
		return ConsumerState{}, c.fail(st)
	}
	return ConsumerState{
		Delivered:            SeqPair{uint64(o.delivered.stream_seq), uint64(o.delivered.consumer_seq)},
		AckFloor:             SeqPair{uint64(o.ack_floor.stream_seq), uint64(o.ack_floor.consumer_seq)},
		NumPending:           uint64(o.num_pending),
		NumAckPending:        uint64(o.num_ack_pending),
		NumRedelivered:       uint64(o.num_redelivered),
		NumWaitingRedelivery: uint64(o.num_waiting_redelivery),
		NumMaxDelivered:      uint64(o.num_max_delivered),
	}, nil
}

// ConfigJSON returns the consumer's config in the library's JSON form.
func (k *Consumer) ConfigJSON() (string, error) {
	if err := k.enter(); err != nil {
		return "", err
	}
	defer k.leave()
	c := getCall()
	defer c.put()
	var str *C.tidelog_string
	if st := C.tidelog_consumer_config_json(k.ptr, &str, c.err); st != C.TIDELOG_STATUS_OK {
		return "", c.fail(st)
	}
	defer C.tidelog_string_free(str)
	return C.GoStringN(C.tidelog_string_ptr(str), C.int(C.tidelog_string_len(str))), nil
}
