package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"time"
)

// Storage says where a stream keeps its messages.
type Storage uint32

const (
	// FileStorage keeps messages in block files (the default).
	FileStorage Storage = 0
	// MemoryStorage keeps them in memory only.
	MemoryStorage Storage = 1
)

// Durability says when an append counts as stored.
type Durability uint32

const (
	// DurabilityAlways returns after fdatasync, shared by concurrent appenders (the default).
	DurabilityAlways Durability = 0
	// DurabilityInterval syncs at least every StreamConfig.DurabilityInterval.
	DurabilityInterval Durability = 1
	// DurabilityNone syncs only at checkpoints (and Stream.Sync).
	DurabilityNone Durability = 2
)

// Discard says what happens when an append would break a limit.
type Discard uint32

const (
	// DiscardOld removes the oldest messages (the default).
	DiscardOld Discard = 0
	// DiscardNew refuses the append with ErrLimitReached (or ErrStorageFull at the store's
	// budget), changing nothing.
	DiscardNew Discard = 1
	// DiscardNewPerSubject refuses an append to a subject at its MaxMsgsPerSubject.
	DiscardNewPerSubject Discard = 2
)

// Retention says when messages leave besides limits, TTLs and removals.
type Retention uint32

const (
	// LimitsRetention keeps messages until a limit removes them (the default).
	LimitsRetention Retention = 0
	// InterestRetention removes a message once every consumer it interests acknowledged it.
	InterestRetention Retention = 1
	// WorkQueueRetention removes a message once its consumer acknowledged it.
	WorkQueueRetention Retention = 2
)

// ReplicaOptions say what raw (replicated) appends apply of the origin's messages. The zero
// value applies both rollups and TTLs, as the origin did.
type ReplicaOptions struct {
	// IgnoreRollups stores rolled-up messages as plain ones, keeping what they replaced.
	IgnoreRollups bool
	// IgnoreTTLs stores messages without their TTL, to live by this stream's limits.
	IgnoreTTLs bool
}

// Dedup configures duplicate detection by message id. A zero Window turns it off.
type Dedup struct {
	// Window is how long an id is remembered (counted in whole milliseconds).
	Window time.Duration
	// MaxIDs bounds how many ids are remembered (required with a Window).
	MaxIDs uint64
	// ForgetOnPurge forgets the ids of purged messages.
	ForgetOnPurge bool
}

// Limits are a stream's own limits; zero values mean none of that kind.
type Limits struct {
	MaxMsgs           uint64
	MaxBytes          uint64
	MaxAge            time.Duration
	MaxMsgsPerSubject uint64
	Discard           Discard
}

// StreamConfig describes a stream to create. The zero value of every field but Name is the
// library's default: file storage, durable appends, no limits of the stream's own (the
// store's budget bounds it), discard old, limits retention. Durations are passed in whole
// milliseconds, rounded up.
type StreamConfig struct {
	Name string
	// Subjects are the subjects or filters the stream accepts; none accepts any subject.
	Subjects []string

	Storage    Storage
	Durability Durability
	// DurabilityInterval is the sync interval of DurabilityInterval.
	DurabilityInterval time.Duration

	// BlockSize is the block file size in bytes (0: the default, 8 MiB).
	BlockSize uint64
	// MaxMsgSize is the largest headers + payload accepted (0: the default, 1 MiB).
	MaxMsgSize uint32

	MaxMsgs           uint64
	MaxBytes          uint64
	MaxAge            time.Duration
	MaxMsgsPerSubject uint64
	Discard           Discard

	// AllowMsgTTL lets appends carry a per-message TTL.
	AllowMsgTTL bool
	// SubjectDeleteMarkerTTL, when set, makes the removal of a subject's last message by
	// max_age or TTL append a delete marker that lives this long (needs AllowMsgTTL).
	SubjectDeleteMarkerTTL time.Duration
	// RemovalMarkers also leaves markers for removals and purges (needs
	// SubjectDeleteMarkerTTL).
	RemovalMarkers bool

	Retention Retention
	// AllowRollup lets appends carry a rollup.
	AllowRollup bool
	Replica     ReplicaOptions
	Dedup       Dedup
}

// Limits returns the limits part of the config.
func (cfg StreamConfig) Limits() Limits {
	return Limits{
		MaxMsgs: cfg.MaxMsgs, MaxBytes: cfg.MaxBytes, MaxAge: cfg.MaxAge,
		MaxMsgsPerSubject: cfg.MaxMsgsPerSubject, Discard: cfg.Discard,
	}
}

// millis converts a duration for the ABI: whole milliseconds rounded up, so that a small
// positive duration never becomes 0 ("none").
func millis(d time.Duration, what string) (C.uint64_t, error) {
	if d < 0 {
		return 0, newError(StatusConfig, what+" is negative")
	}
	return C.uint64_t((d + time.Millisecond - 1) / time.Millisecond), nil
}

// toC builds the library's config; the caller frees it.
func (cfg StreamConfig) toC(c *call) (*C.tidelog_stream_config, error) {
	off, err := c.cstr(cfg.Name, "stream name")
	if err != nil {
		return nil, err
	}
	subjects, n, err := c.cstrs(cfg.Subjects, "subject")
	if err != nil {
		return nil, err
	}
	var out *C.tidelog_stream_config
	if st := C.tidelog_stream_config_new(c.ptr(off), &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	var packed *C.char
	if n > 0 {
		packed = c.ptr(subjects)
	}
	if err := cfg.fill(out, packed, n); err != nil {
		C.tidelog_stream_config_free(out)
		return nil, err
	}
	return out, nil
}

func (cfg StreamConfig) fill(out *C.tidelog_stream_config, subjects *C.char, n C.size_t) error {
	interval, err := millis(cfg.DurabilityInterval, "durability interval")
	if err != nil {
		return err
	}
	markerTTL, err := millis(cfg.SubjectDeleteMarkerTTL, "subject delete marker TTL")
	if err != nil {
		return err
	}
	window, err := millis(cfg.Dedup.Window, "dedup window")
	if err != nil {
		return err
	}
	if n > 0 {
		if err := statusErr(C.tl_stream_config_set_subjects(out, subjects, n), "subjects"); err != nil {
			return err
		}
	}
	if err := statusErr(C.tidelog_stream_config_set_storage(out, C.uint32_t(cfg.Storage)), "storage"); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_durability(out, C.uint32_t(cfg.Durability), interval), "durability"); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_sizes(out, C.uint64_t(cfg.BlockSize), C.uint32_t(cfg.MaxMsgSize)), "sizes"); err != nil {
		return err
	}
	if err := setLimits(out, cfg.Limits()); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_ttl(out, C.bool(cfg.AllowMsgTTL), markerTTL, C.bool(cfg.RemovalMarkers)), "TTL"); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_retention(out, C.uint32_t(cfg.Retention)), "retention"); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_allow_rollup(out, C.bool(cfg.AllowRollup)), "rollup"); err != nil {
		return err
	}
	if err := statusErr(C.tidelog_stream_config_set_replica(out, C.bool(!cfg.Replica.IgnoreRollups), C.bool(!cfg.Replica.IgnoreTTLs)), "replica"); err != nil {
		return err
	}
	if window > 0 {
		if err := statusErr(C.tidelog_stream_config_set_dedup(out, window, C.uint64_t(cfg.Dedup.MaxIDs), C.bool(cfg.Dedup.ForgetOnPurge)), "dedup"); err != nil {
			return err
		}
	}
	return nil
}

func setLimits(out *C.tidelog_stream_config, l Limits) error {
	age, err := millis(l.MaxAge, "max age")
	if err != nil {
		return err
	}
	return statusErr(C.tidelog_stream_config_set_limits(out, C.uint64_t(l.MaxMsgs), C.uint64_t(l.MaxBytes),
		age, C.uint64_t(l.MaxMsgsPerSubject), C.uint32_t(l.Discard)), "limits")
}

// DeliverPolicy says where a new consumer starts.
type DeliverPolicy uint32

const (
	DeliverAll            DeliverPolicy = 0
	DeliverLast           DeliverPolicy = 1
	DeliverLastPerSubject DeliverPolicy = 2
	DeliverNew            DeliverPolicy = 3
	// DeliverByStartSeq starts at ConsumerConfig.StartSeq.
	DeliverByStartSeq DeliverPolicy = 4
	// DeliverByStartTime starts at the first message stored at or after
	// ConsumerConfig.StartTime.
	DeliverByStartTime DeliverPolicy = 5
)

// AckPolicy says what the host must acknowledge. The zero value is AckExplicit, the
// library's default.
type AckPolicy uint32

const (
	// AckExplicit: every message is acknowledged on its own.
	AckExplicit AckPolicy = iota
	// AckAll: an acknowledgement covers every message up to it.
	AckAll
	// AckNone: nothing is acknowledged; a delivery counts as done.
	AckNone
)

func (p AckPolicy) c() (C.uint32_t, error) {
	switch p {
	case AckExplicit:
		return C.TIDELOG_ACK_POLICY_EXPLICIT, nil
	case AckAll:
		return C.TIDELOG_ACK_POLICY_ALL, nil
	case AckNone:
		return C.TIDELOG_ACK_POLICY_NONE, nil
	}
	return 0, newError(StatusInvalidArgument, "unknown ack policy")
}

// ConsumerConfig describes a consumer to create. Zero values are the library's defaults:
// deliver all, explicit acks, a 30 s ack wait, unlimited deliveries, at most 1,000
// unacknowledged messages.
type ConsumerConfig struct {
	Name string
	// Filters are the subject filters the consumer takes; none takes every message.
	Filters []string

	Deliver   DeliverPolicy
	StartSeq  uint64
	StartTime time.Time

	AckPolicy AckPolicy
	// AckWait is how long a delivery waits for its acknowledgement before redelivery.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message (0: unlimited).
	MaxDeliver uint64
	// MaxAckPending bounds unacknowledged messages (0: the default).
	MaxAckPending uint64
	// Backoff gives redelivery delays by delivery count, replacing AckWait for redeliveries.
	Backoff []time.Duration
}

func (cfg ConsumerConfig) toC(c *call) (*C.tidelog_consumer_config, error) {
	policy, err := cfg.AckPolicy.c()
	if err != nil {
		return nil, err
	}
	wait, err := millis(cfg.AckWait, "ack wait")
	if err != nil {
		return nil, err
	}
	backoff := make([]C.uint64_t, len(cfg.Backoff))
	for i, d := range cfg.Backoff {
		if backoff[i], err = millis(d, "backoff"); err != nil {
			return nil, err
		}
	}
	var start C.int64_t
	switch cfg.Deliver {
	case DeliverByStartSeq:
		start = C.int64_t(cfg.StartSeq)
	case DeliverByStartTime:
		start = C.int64_t(cfg.StartTime.UnixNano())
	}
	off, err := c.cstr(cfg.Name, "consumer name")
	if err != nil {
		return nil, err
	}
	filters, n, err := c.cstrs(cfg.Filters, "filter")
	if err != nil {
		return nil, err
	}
	var out *C.tidelog_consumer_config
	if st := C.tidelog_consumer_config_new(c.ptr(off), &out, c.err); st != C.TIDELOG_STATUS_OK {
		return nil, c.fail(st)
	}
	fail := func(err error) (*C.tidelog_consumer_config, error) {
		C.tidelog_consumer_config_free(out)
		return nil, err
	}
	if n > 0 {
		if err := statusErr(C.tl_consumer_config_set_filters(out, c.ptr(filters), n), "filters"); err != nil {
			return fail(err)
		}
	}
	if err := statusErr(C.tidelog_consumer_config_set_deliver(out, C.uint32_t(cfg.Deliver), start), "deliver policy"); err != nil {
		return fail(err)
	}
	if err := statusErr(C.tidelog_consumer_config_set_ack(out, policy, wait, C.uint64_t(cfg.MaxDeliver), C.uint64_t(cfg.MaxAckPending)), "ack policy"); err != nil {
		return fail(err)
	}
	if len(backoff) > 0 {
		if err := statusErr(C.tidelog_consumer_config_set_backoff(out, &backoff[0], C.size_t(len(backoff))), "backoff"); err != nil {
			return fail(err)
		}
	}
	return out, nil
}
