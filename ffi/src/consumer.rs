//! Consumers: configs, handles, batched fetch and batched acknowledgements.

use std::ffi::c_char;

use engine::{AckOutcome, AckPolicy, Consumer, ConsumerConfig, DeliverPolicy, Delivery};

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, cstrs, free, give, items, millis, out_ptr, put};
use crate::message::tidelog_msg_view;
use crate::stream::tidelog_stream;
use crate::strings::tidelog_string;

/// A consumer of a stream. Thread-safe: any number of threads may fetch and acknowledge
/// through one handle at once.
#[allow(non_camel_case_types)]
pub struct tidelog_consumer(Consumer);

/// A consumer configuration under construction. Not thread-safe. Setters return
/// `TIDELOG_STATUS_NULL_ARGUMENT` for NULL and `TIDELOG_STATUS_INVALID_ARGUMENT` for an unknown
/// enum value; the values are checked when the consumer is created.
#[allow(non_camel_case_types)]
pub struct tidelog_consumer_config(ConsumerConfig);

/// Where a new consumer starts.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_deliver {
    All = 0,
    Last = 1,
    LastPerSubject = 2,
    New = 3,
    /// From the stream sequence given with it.
    ByStartSeq = 4,
    /// From the first message stored at or after the time given with it (ns).
    ByStartTime = 5,
}

/// What the host must acknowledge.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_ack_policy {
    None = 0,
    All = 1,
    Explicit = 2,
}

/// An acknowledgement kind, for `tidelog_consumer_ack_batch`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_ack_kind {
    Ack = 0,
    /// Redeliver, after the given delay (0: at the next fetch).
    Nak = 1,
    /// Never redeliver.
    Term = 2,
    /// Restart the ack wait.
    InProgress = 3,
}

/// What an acknowledgement did.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_ack_outcome {
    Done = 0,
    /// The message was not pending (never delivered, acknowledged already, or removed).
    NotPending = 1,
}

/// One delivered message: its fields, and how often it has been delivered.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tidelog_delivery {
    pub msg: tidelog_msg_view,
    pub delivery_count: u64,
    /// The consumer's own sequence of this delivery.
    pub delivery_seq: u64,
}

/// The messages of one fetch, owned until `tidelog_deliveries_free`. Immutable, so
/// thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_deliveries {
    _held: Vec<Delivery>,
    items: Vec<tidelog_delivery>,
}

// SAFETY: the views point into `_held`, which is owned and never changed.
unsafe impl Send for tidelog_deliveries {}
unsafe impl Sync for tidelog_deliveries {}

/// A (stream sequence, consumer sequence) pair.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_seq_pair {
    pub stream_seq: u64,
    pub consumer_seq: u64,
}

/// A consumer's state.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_consumer_state {
    pub delivered: tidelog_seq_pair,
    pub ack_floor: tidelog_seq_pair,
    /// Matching messages not yet delivered.
    pub num_pending: u64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting_redelivery: u64,
    /// Messages that reached max_deliver unacknowledged.
    pub num_max_delivered: u64,
}

/// A new consumer config named `name`: deliver all, explicit acks, 30 s ack wait, at most
/// 1,000 unacknowledged. Free with
/// `tidelog_consumer_config_free`.
///
/// # Safety
/// `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_new(
    name: *const c_char,
    out: *mut *mut tidelog_consumer_config,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let name = cstr(name, "name")?;
        let out = out_ptr(out, "out")?;
        give(out, tidelog_consumer_config(ConsumerConfig::new(name)));
        Ok(())
    })
}

/// Frees a consumer config; NULL is ignored.
///
/// # Safety
/// `cfg` NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_free(cfg: *mut tidelog_consumer_config) {
    free(cfg);
}

unsafe fn set_cfg(
    cfg: *mut tidelog_consumer_config,
    f: impl FnOnce(&mut ConsumerConfig) -> Result<(), Fail>,
) -> tidelog_status {
    match cfg.as_mut() {
        Some(c) => call(std::ptr::null_mut(), || f(&mut c.0)),
        None => tidelog_status::NullArgument,
    }
}

/// The subject filters the consumer takes (none: every message).
///
/// # Safety
/// `cfg` NULL or live; `filters` `n` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_set_filters(
    cfg: *mut tidelog_consumer_config,
    filters: *const *const c_char,
    n: usize,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.filters = cstrs(filters, n, "filters")?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(())
    })
}

/// A `tidelog_deliver` value; `start` is the sequence or time it needs.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_set_deliver(
    cfg: *mut tidelog_consumer_config,
    deliver: u32,
    start: i64,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.deliver = match deliver {
            0 => DeliverPolicy::All,
            1 => DeliverPolicy::Last,
            2 => DeliverPolicy::LastPerSubject,
            3 => DeliverPolicy::New,
            4 => DeliverPolicy::ByStartSeq(start.max(0) as u64),
            5 => DeliverPolicy::ByStartTime(start),
            v => return Err(Fail::invalid(format!("deliver {v}"))),
        };
        Ok(())
    })
}

/// The ack policy (a `tidelog_ack_policy` value), the ack wait, and the largest number of
/// deliveries (0: unlimited) and of unacknowledged messages (0: the default).
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_set_ack(
    cfg: *mut tidelog_consumer_config,
    policy: u32,
    ack_wait_ms: u64,
    max_deliver: u64,
    max_ack_pending: u64,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.ack = match policy {
            0 => AckPolicy::None,
            1 => AckPolicy::All,
            2 => AckPolicy::Explicit,
            v => return Err(Fail::invalid(format!("ack policy {v}"))),
        };
        if ack_wait_ms > 0 {
            c.ack_wait = millis(ack_wait_ms);
        }
        c.max_deliver = (max_deliver > 0).then_some(max_deliver);
        if max_ack_pending > 0 {
            c.max_ack_pending = max_ack_pending;
        }
        Ok(())
    })
}

/// Redelivery delays by delivery count, replacing the ack wait for redeliveries.
///
/// # Safety
/// `cfg` NULL or live; `backoff_ms` `n` values.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_set_backoff(
    cfg: *mut tidelog_consumer_config,
    backoff_ms: *const u64,
    n: usize,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.backoff = items(backoff_ms, n, "backoff_ms")?
            .iter()
            .map(|&ms| millis(ms))
            .collect();
        Ok(())
    })
}

/// Creates a consumer (`TIDELOG_STATUS_CONSUMER_EXISTS` if the name is taken). `cfg` is not
/// consumed. Free `*out` with `tidelog_consumer_free`.
///
/// # Safety
/// `stream`, `cfg` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_create_consumer(
    stream: *const tidelog_stream,
    cfg: *const tidelog_consumer_config,
    out: *mut *mut tidelog_consumer,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let cfg = arg(cfg, "cfg")?;
        let out = out_ptr(out, "out")?;
        let c = s.0.create_consumer(cfg.0.clone())?;
        give(out, tidelog_consumer(c));
        Ok(())
    })
}

/// Opens an existing consumer (`TIDELOG_STATUS_CONSUMER_NOT_FOUND` if there is none).
///
/// # Safety
/// `stream` NULL or live; `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_open_consumer(
    stream: *const tidelog_stream,
    name: *const c_char,
    out: *mut *mut tidelog_consumer,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let name = cstr(name, "name")?;
        let out = out_ptr(out, "out")?;
        let c = s.0.consumer(name)?;
        give(out, tidelog_consumer(c));
        Ok(())
    })
}

/// Deletes a consumer; its handles return `TIDELOG_STATUS_CONSUMER_DELETED` afterwards.
///
/// # Safety
/// `stream` NULL or live; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_delete_consumer(
    stream: *const tidelog_stream,
    name: *const c_char,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        Ok(s.0.delete_consumer(cstr(name, "name")?)?)
    })
}

/// Frees a consumer handle; NULL is ignored. The consumer stays.
///
/// # Safety
/// `consumer` NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_free(consumer: *mut tidelog_consumer) {
    free(consumer);
}

/// Up to `max_msgs` messages (and about `max_bytes` of payload, 0: no bound) due for
/// delivery: redeliveries first, then new ones. Never blocks; an empty result is OK. Free
/// `*out` with `tidelog_deliveries_free`.
///
/// # Safety
/// `consumer` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_fetch(
    consumer: *const tidelog_consumer,
    max_msgs: usize,
    max_bytes: usize,
    out: *mut *mut tidelog_deliveries,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let c = arg(consumer, "consumer")?;
        let out = out_ptr(out, "out")?;
        let held = c.0.fetch(max_msgs, max_bytes)?;
        let items = held
            .iter()
            .map(|d| tidelog_delivery {
                msg: tidelog_msg_view::of(&d.message),
                delivery_count: d.delivery_count,
                delivery_seq: d.delivery_seq,
            })
            .collect();
        give(out, tidelog_deliveries { _held: held, items });
        Ok(())
    })
}

/// The deliveries of a fetch: `*len` of them, valid until it is freed (NULL and 0 for NULL).
///
/// # Safety
/// `deliveries` NULL or live; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_deliveries_items(
    deliveries: *const tidelog_deliveries,
    len: *mut usize,
) -> *const tidelog_delivery {
    let (p, n) = deliveries
        .as_ref()
        .map_or((std::ptr::null(), 0), |d| (d.items.as_ptr(), d.items.len()));
    put(len, n);
    p
}

/// Frees a fetch result; NULL is ignored.
///
/// # Safety
/// `deliveries` NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_deliveries_free(deliveries: *mut tidelog_deliveries) {
    free(deliveries);
}

fn apply(
    c: &Consumer,
    kind: tidelog_ack_kind,
    seq: u64,
    delay_ms: u64,
) -> Result<AckOutcome, Fail> {
    Ok(match kind {
        tidelog_ack_kind::Ack => c.ack(seq)?,
        tidelog_ack_kind::Nak => c.nak(seq, (delay_ms > 0).then(|| millis(delay_ms)))?,
        tidelog_ack_kind::Term => c.term(seq)?,
        tidelog_ack_kind::InProgress => c.in_progress(seq)?,
    })
}

fn ack_kind(v: u32) -> Result<tidelog_ack_kind, Fail> {
    Ok(match v {
        0 => tidelog_ack_kind::Ack,
        1 => tidelog_ack_kind::Nak,
        2 => tidelog_ack_kind::Term,
        3 => tidelog_ack_kind::InProgress,
        v => return Err(Fail::invalid(format!("ack kind {v}"))),
    })
}

fn outcome(o: AckOutcome) -> tidelog_ack_outcome {
    match o {
        AckOutcome::Done => tidelog_ack_outcome::Done,
        _ => tidelog_ack_outcome::NotPending,
    }
}

unsafe fn ack_one(
    consumer: *const tidelog_consumer,
    kind: tidelog_ack_kind,
    seq: u64,
    delay_ms: u64,
    out: *mut tidelog_ack_outcome,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let c = arg(consumer, "consumer")?;
        put(out, outcome(apply(&c.0, kind, seq, delay_ms)?));
        Ok(())
    })
}

/// Acknowledges stream sequence `seq`. `out` (optional) says whether it was pending.
///
/// # Safety
/// `consumer` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_ack(
    consumer: *const tidelog_consumer,
    seq: u64,
    out: *mut tidelog_ack_outcome,
    err: *mut tidelog_error,
) -> tidelog_status {
    ack_one(consumer, tidelog_ack_kind::Ack, seq, 0, out, err)
}

/// Asks for `seq` to be redelivered after `delay_ms` (0: at the next fetch).
///
/// # Safety
/// As `tidelog_consumer_ack`.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_nak(
    consumer: *const tidelog_consumer,
    seq: u64,
    delay_ms: u64,
    out: *mut tidelog_ack_outcome,
    err: *mut tidelog_error,
) -> tidelog_status {
    ack_one(consumer, tidelog_ack_kind::Nak, seq, delay_ms, out, err)
}

/// Never redeliver `seq`; it counts as acknowledged.
///
/// # Safety
/// As `tidelog_consumer_ack`.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_term(
    consumer: *const tidelog_consumer,
    seq: u64,
    out: *mut tidelog_ack_outcome,
    err: *mut tidelog_error,
) -> tidelog_status {
    ack_one(consumer, tidelog_ack_kind::Term, seq, 0, out, err)
}

/// Restarts `seq`'s ack wait: the host is still working on it.
///
/// # Safety
/// As `tidelog_consumer_ack`.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_in_progress(
    consumer: *const tidelog_consumer,
    seq: u64,
    out: *mut tidelog_ack_outcome,
    err: *mut tidelog_error,
) -> tidelog_status {
    ack_one(consumer, tidelog_ack_kind::InProgress, seq, 0, out, err)
}

/// Applies one acknowledgement kind (a `tidelog_ack_kind` value) to each of `n` sequences,
/// in order, in one call; `delay_ms` is the nak delay. `*applied` (optional) gets how many
/// were pending. On a failure the sequences before the failing one (the error's `index`)
/// stay applied.
///
/// # Safety
/// `consumer` NULL or live; `seqs` `n` values; `applied` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_ack_batch(
    consumer: *const tidelog_consumer,
    kind: u32,
    seqs: *const u64,
    n: usize,
    delay_ms: u64,
    applied: *mut usize,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let c = arg(consumer, "consumer")?;
        let kind = ack_kind(kind)?;
        let mut done = 0;
        for (i, &seq) in items(seqs, n, "seqs")?.iter().enumerate() {
            let o = apply(&c.0, kind, seq, delay_ms).map_err(|mut f| {
                f.info.index = i as u64;
                f
            })?;
            done += usize::from(o == AckOutcome::Done);
        }
        put(applied, done);
        Ok(())
    })
}

/// The consumer's state.
///
/// # Safety
/// `consumer` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_get_state(
    consumer: *const tidelog_consumer,
    out: *mut tidelog_consumer_state,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let c = arg(consumer, "consumer")?;
        let out = out_ptr(out, "out")?;
        let st = c.0.state()?;
        let pair = |p: engine::SeqPair| tidelog_seq_pair {
            stream_seq: p.stream_seq,
            consumer_seq: p.consumer_seq,
        };
        *out = tidelog_consumer_state {
            delivered: pair(st.delivered),
            ack_floor: pair(st.ack_floor),
            num_pending: st.num_pending,
            num_ack_pending: st.num_ack_pending,
            num_redelivered: st.num_redelivered,
            num_waiting_redelivery: st.num_waiting_redelivery,
            num_max_delivered: st.num_max_delivered,
        };
        Ok(())
    })
}

/// The consumer's config as JSON. Free `*out` with `tidelog_string_free`.
///
/// # Safety
/// `consumer` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_consumer_config_json(
    consumer: *const tidelog_consumer,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let c = arg(consumer, "consumer")?;
        let out = out_ptr(out, "out")?;
        let json = serde_json::to_string(c.0.config())
            .map_err(|e| Fail::new(tidelog_status::Config, e.to_string()))?;
        give(out, tidelog_string::new(json)?);
        Ok(())
    })
}
