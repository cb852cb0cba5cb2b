//! Shared by the model-based test files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use tidelog::io::{CrashKind, Fault, FaultPlan, FaultyVfs, MemVfs, Vfs};
use tidelog::{
    Clock, ConsumerConfig, ConsumerError, Durability, LoadError, ManualClock, Storage, Store,
    StoreOptions, StoredMessage, Stream, StreamConfig, StreamState,
};

// Used by the consumer model files only.
#[allow(dead_code)]
pub mod consumer_model;

pub const DIR: &str = "/db";

/// A message as generated; `subject` indexes the test file's subject list.
#[derive(Clone, Debug)]
pub struct GenMsg {
    pub subject: usize,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A sequence argument, resolved against the model when the op runs: a live message, or any
/// sequence around the live range.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub live: bool,
    pub idx: u32,
}

pub fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.7), any::<u32>()).prop_map(|(live, idx)| Pick { live, idx })
}

/// A message on a subject index from `subject`, with headers (up to `max_headers` bytes) in a
/// `headers` share of them, and a payload of up to `max_payload` bytes (`model_ttl.rs` makes its
/// own, with TTLs).
#[allow(dead_code)]
pub fn gen_msg(
    subject: impl Strategy<Value = usize>,
    headers: f64,
    max_headers: usize,
    max_payload: usize,
) -> impl Strategy<Value = GenMsg> {
    (
        subject,
        proptest::option::weighted(headers, vec(any::<u8>(), 0..max_headers)),
        vec(any::<u8>(), 0..max_payload),
    )
        .prop_map(|(subject, h, payload)| GenMsg {
            subject,
            headers: h.unwrap_or_default(),
            payload,
        })
}

/// A small deterministic generator (xorshift; runs must be reproducible from their seed, which
/// must not be 0). Not every file that includes this module uses it.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// `s` refuses every config of `cfgs` with `ConsumerError::Config`, and has no consumer after.
#[allow(dead_code)]
pub fn assert_configs_refused(s: &Stream, cfgs: impl IntoIterator<Item = ConsumerConfig>) {
    for cfg in cfgs {
        assert!(
            matches!(
                s.create_consumer(cfg.clone()),
                Err(ConsumerError::Config(_))
            ),
            "{cfg:?}"
        );
    }
    assert!(s.consumer_names().is_empty());
}

/// First live sequence of a model log (`last_seq + 1` when empty).
pub fn first_seq<T>(msgs: &BTreeMap<u64, T>, last_seq: u64) -> u64 {
    msgs.keys().next().copied().unwrap_or(last_seq + 1)
}

/// Sequences between the first and the last that hold no message.
pub fn num_deleted<T>(msgs: &BTreeMap<u64, T>, last_seq: u64) -> u64 {
    last_seq + 1 - first_seq(msgs, last_seq) - msgs.len() as u64
}

/// (messages, first_seq, last_seq, num_deleted) of a model log, to compare with
/// [`stream_counts`].
pub fn counts<T>(msgs: &BTreeMap<u64, T>, last_seq: u64) -> (u64, u64, u64, u64) {
    (
        msgs.len() as u64,
        first_seq(msgs, last_seq),
        last_seq,
        num_deleted(msgs, last_seq),
    )
}

pub fn stream_counts(st: &StreamState) -> (u64, u64, u64, u64) {
    (st.messages, st.first_seq, st.last_seq, st.num_deleted)
}

/// The sequence `p` stands for in a model log.
pub fn pick_seq<T>(msgs: &BTreeMap<u64, T>, last_seq: u64, p: Pick) -> u64 {
    if p.live && !msgs.is_empty() {
        let i = p.idx as usize % msgs.len();
        return *msgs.keys().nth(i).expect("index in range");
    }
    let lo = first_seq(msgs, last_seq).saturating_sub(2);
    let span = last_seq + 4 - lo;
    lo + p.idx as u64 % span
}

/// Proptest settings of the model tests: `TIDELOG_MODEL_CASES` overrides the number of cases,
/// and failures are reported, not written into the source tree.
pub fn model_config(default_cases: u32) -> Config {
    Config {
        cases: std::env::var("TIDELOG_MODEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// A failure message: `what`, then the last steps of the case.
pub fn failure(what: &str, trace: &[String]) -> String {
    let tail = &trace[trace.len().saturating_sub(40)..];
    let mut s = format!("{what}\n--- trace (last {} steps) ---\n", tail.len());
    for t in tail {
        s.push_str(t);
        s.push('\n');
    }
    s
}

/// Prints a case's steps when `TIDELOG_MODEL_TRACE` is set.
pub fn print_trace(trace: &[String]) {
    if std::env::var_os("TIDELOG_MODEL_TRACE").is_some() {
        eprintln!("---- case ----\n{}", trace.join("\n"));
    }
}

/// `compact(seq)` on a model log: drops every message below `seq` (a floor past the end moves
/// the last sequence up). Returns how many went, or `None` for the invalid `seq == 0`.
pub fn compact_log<T>(msgs: &mut BTreeMap<u64, T>, last_seq: &mut u64, seq: u64) -> Option<u64> {
    if seq == 0 {
        return None;
    }
    let keep = msgs.split_off(&seq);
    let n = msgs.len() as u64;
    *msgs = keep;
    if seq > *last_seq + 1 {
        *last_seq = seq - 1;
    }
    Some(n)
}

/// `truncate(seq)` on a model log: drops every message above `seq`, which becomes the last
/// sequence. Returns how many went, or `None` when `seq` is not below the last sequence.
pub fn truncate_log<T>(msgs: &mut BTreeMap<u64, T>, last_seq: &mut u64, seq: u64) -> Option<u64> {
    if seq >= *last_seq {
        return None;
    }
    let gone = msgs.split_off(&(seq + 1));
    *last_seq = seq;
    Some(gone.len() as u64)
}

/// Of the sequences in `probe` and around the ends of a model log that hold no model message,
/// the first the stream does not report `NotFound`, with what it returned.
pub fn first_not_absent<T>(
    s: &Stream,
    msgs: &BTreeMap<u64, T>,
    last_seq: u64,
    mut probe: BTreeSet<u64>,
) -> Option<(u64, Result<StoredMessage, LoadError>)> {
    probe.extend([
        0,
        1,
        first_seq(msgs, last_seq).saturating_sub(1),
        last_seq + 1,
    ]);
    for q in probe {
        if msgs.contains_key(&q) {
            continue;
        }
        match s.load(q) {
            Err(LoadError::NotFound(x)) if x == q => {}
            other => return Some((q, other)),
        }
    }
    None
}

/// (storage, durability) of every write path: group commit (`Always` on files), the inline
/// paths of `Interval` and `None`, and memory streams.
#[allow(dead_code)]
pub fn variants() -> Vec<(Storage, Durability)> {
    vec![
        (Storage::File, Durability::Always),
        (Storage::File, Durability::Interval(Duration::from_secs(60))),
        (Storage::File, Durability::None),
        (Storage::Memory, Durability::None),
    ]
}

/// Store options of the model tests: the test drives all upkeep by hand; `clock` is the time
/// source if given (else the system clock).
pub fn store_options(clock: Option<Arc<ManualClock>>) -> StoreOptions {
    StoreOptions {
        clock: clock.map(|c| c as Arc<dyn Clock>),
        manual_maintenance: true,
        ..Default::default()
    }
}

/// A store with one stream on an in-memory disk that can be restarted and crashed. Every I/O
/// of the store goes through `fv`, whose plan a test may arm to fault a coming I/O.
pub struct Db {
    pub fv: FaultyVfs,
    mem: MemVfs,
    opts: StoreOptions,
    name: String,
    store: Option<Store>,
    stream: Option<Stream>,
}

impl Db {
    /// Creates the stream of `cfg` on an empty disk, as a memory stream if `memory`.
    pub fn create(opts: StoreOptions, cfg: StreamConfig, memory: bool) -> Db {
        let mem = MemVfs::new();
        let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
        let store =
            Store::open_with_vfs(DIR, Arc::new(fv.clone()), opts.clone()).expect("open store");
        let name = cfg.name.clone();
        let storage = if memory {
            Storage::Memory
        } else {
            Storage::File
        };
        let stream = store
            .create_stream(cfg.storage(storage))
            .expect("create stream");
        if !memory {
            // Work around a MemVfs limitation (see
            // `memvfs_power_loss_after_create_stream_keeps_stream` in model.rs): `rename` of a
            // directory moves its files but not their durable directory entries, so a
            // simulated power loss right after `create_stream` would lose the stream's config
            // (a real file system keeps the files of a renamed directory). Make the entries
            // under the final name durable here.
            mem.sync_dir(&Path::new(DIR).join("streams").join(&name))
                .expect("sync stream dir");
        }
        Db {
            fv,
            mem,
            opts,
            name,
            store: Some(store),
            stream: Some(stream),
        }
    }

    pub fn stream(&self) -> &Stream {
        self.stream.as_ref().expect("stream open")
    }

    fn open(&mut self) -> Result<(), String> {
        let store = Store::open_with_vfs(DIR, Arc::new(self.fv.clone()), self.opts.clone())
            .map_err(|e| format!("open: {e:?}"))?;
        let stream = store
            .stream(&self.name)
            .map_err(|e| format!("stream after reopen: {e:?}"))?;
        self.store = Some(store);
        self.stream = Some(stream);
        Ok(())
    }

    /// Closes the store cleanly; `restart` or `crash` opens it again.
    pub fn close(&mut self) -> Result<(), String> {
        self.stream = None;
        let store = self.store.take().expect("store open");
        store.close().map_err(|e| format!("close: {e:?}"))
    }

    /// A clean close and reopen.
    pub fn restart(&mut self) -> Result<(), String> {
        self.close()?;
        self.open()
    }

    /// Kills the process and reopens on the disk a crash of `kind` leaves.
    pub fn crash(&mut self, kind: CrashKind) -> Result<(), String> {
        // The old store dies without reaching any disk: nothing it does on the way out may
        // count as having happened before the crash.
        *self.fv.plan().lock() = FaultPlan::at(0, Fault::Crash);
        let disk = self.mem.after_crash(kind);
        self.stream = None;
        self.store = None;
        self.mem = disk;
        self.fv = FaultyVfs::new(Arc::new(self.mem.clone()), FaultPlan::new());
        self.open()
    }
}

// Only the files whose models group messages by subject use these.
#[allow(dead_code)]
pub mod by_subject {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use tidelog::subject::{matches, validate_filter};

    use super::{pick, Pick};

    pub trait HasSubject {
        fn subject(&self) -> &'static str;
    }

    /// A `purge_filtered` as generated: `filter` indexes the test file's filter list, `up_to`
    /// is resolved against the model when the op runs.
    #[derive(Clone, Copy, Debug)]
    pub struct Purge {
        pub filter: usize,
        pub up_to: Option<Pick>,
        pub keep: u64,
    }

    /// Purges of one of `filters` filters, bounded by `up_to` with probability `bounded`.
    pub fn purge(filters: usize, bounded: f64) -> impl Strategy<Value = Purge> {
        (
            0..filters,
            proptest::option::weighted(bounded, pick()),
            prop_oneof![2 => Just(0u64), 1 => 1u64..3],
        )
            .prop_map(|(filter, up_to, keep)| Purge {
                filter,
                up_to,
                keep,
            })
    }

    impl Purge {
        /// The call's (filter, up_to, keep), with `up_to` resolved by `pick`.
        pub fn args(
            &self,
            filters: &[&'static str],
            pick: impl Fn(Pick) -> u64,
        ) -> (&'static str, Option<u64>, u64) {
            (
                filters[self.filter % filters.len()],
                self.up_to.map(pick),
                self.keep,
            )
        }
    }

    /// The sequences of `subject`'s messages, oldest first.
    pub fn seqs_of<T: HasSubject>(msgs: &BTreeMap<u64, T>, subject: &str) -> Vec<u64> {
        msgs.iter()
            .filter(|(_, m)| m.subject() == subject)
            .map(|(q, _)| *q)
            .collect()
    }

    pub fn subjects<T: HasSubject>(msgs: &BTreeMap<u64, T>) -> BTreeSet<&'static str> {
        msgs.values().map(|m| m.subject()).collect()
    }

    /// Removes each subject's oldest messages beyond `per`, of the subjects in `only` (`None`:
    /// of every subject).
    pub fn limit<T: HasSubject>(
        msgs: &mut BTreeMap<u64, T>,
        per: u64,
        only: Option<&[&'static str]>,
    ) {
        let list: BTreeSet<&'static str> = match only {
            Some(l) => l.iter().copied().collect(),
            None => subjects(msgs),
        };
        for s in list {
            let seqs = seqs_of(msgs, s);
            let over = (seqs.len() as u64).saturating_sub(per) as usize;
            for q in &seqs[..over] {
                msgs.remove(q);
            }
        }
    }

    /// The sequences `purge_filtered(filter, up_to, keep)` removes, in order; `None` for an
    /// invalid filter.
    pub fn purge_filtered<T: HasSubject>(
        msgs: &BTreeMap<u64, T>,
        filter: &str,
        up_to: Option<u64>,
        keep: u64,
    ) -> Option<Vec<u64>> {
        validate_filter(filter).ok()?;
        let bound = up_to.unwrap_or(u64::MAX);
        let mut gone = Vec::new();
        for s in subjects(msgs) {
            if !matches(filter, s) {
                continue;
            }
            let seqs = seqs_of(msgs, s);
            let keep_from = (seqs.len() as u64).saturating_sub(keep) as usize;
            gone.extend(seqs[..keep_from].iter().copied().filter(|&q| q < bound));
        }
        gone.sort_unstable();
        Some(gone)
    }
}

/// Bytes a directory tree occupies on disk, as `du` counts them (allocated blocks).
#[allow(dead_code)]
pub fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = std::fs::metadata(dir)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            allocated_bytes(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}
