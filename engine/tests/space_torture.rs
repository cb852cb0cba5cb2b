//! Fill-to-full torture: three streams of one store (durable, interval-synced with a consumer,
//! and unsynced discard-old) take random appends of mixed sizes and subjects (some with TTLs),
//! removals, purges and compactions, expiry under a manual clock, syncs, checkpoints,
//! reclamation, clean restarts and crash restarts, while the disk fills and frees at random
//! points and the store's byte budget runs out. A model of every acknowledged message checks,
//! at every step where it applies and after every restart:
//!
//! - a real `ENOSPC` on one stream never disables the others, and never permanently: once
//!   space is freed (and the 20 ms heal interval has passed), no stream's append fails with a
//!   durability error;
//! - under `Durability::Always` every acknowledged, not-removed message loads with exactly its
//!   payload, also while the stream is poisoned (reads keep working); an append that returned
//!   an error is never loadable once the stream has healed, nor after a restart; a removal that
//!   returned an error leaves the message in place once healed;
//! - under `Interval`/`None`, what a successful `sync()` covered survives (heals, restarts,
//!   crashes), and nothing that returned an error appears once healed;
//! - sequences only grow (no acknowledged sequence is handed out twice);
//! - `check_invariants()` passes, the store always opens (also on a full disk), and no stream
//!   or consumer is ever set aside as damaged.
//!
//! `torture_faulty_memvfs` runs everywhere (`FaultyVfs::set_full` over `MemVfs`, with crash
//! restarts from `MemVfs::after_crash`). `torture_tmpfs` mounts a 24 MiB tmpfs when running as
//! root and fills it for real with a ballast file (clean restarts only); without root or
//! `mount` it runs the in-memory variant with other seeds.
//!
//! Knobs: `TIDELOG_TORTURE_ROUNDS` (seeds per test, default 3), `TIDELOG_TORTURE_OPS` (ops per
//! seed, default 2000), `TIDELOG_TORTURE_SEED` (run just this seed, to reproduce a failure).
//! Seeds reproduce the operations exactly; when a heal runs depends on real time (20 ms), so a
//! failure reproduces with the same seed most, not necessarily all, of the time.

#[allow(dead_code)]
mod common;

use common::Rng;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidelog::io::{CrashKind, Fault, FaultPlan, FaultyVfs, MemVfs, Vfs};
use tidelog::{
    AckPolicy, AppendError, Clock, Consumer, ConsumerConfig, ConsumerError, Discard, Durability,
    DurabilityError, LoadError, ManualClock, NewMessage, Store, StoreOptions, StoredMessage,
    Stream, StreamConfig, Ttl, WriteError,
};

const DIR: &str = "/db";
const SUBJECTS: [&str; 5] = ["orders.eu", "orders.us", "events.a", "events.b.c", "logs"];
/// The manual clock starts on a whole second and moves in whole seconds, so a TTL's due
/// second is `ts / 1e9 + ttl`.
const START_NS: i64 = 1_700_000_000_000_000_000;
/// A poisoned stream heals at most every 20 ms: waiting this long after space is freed lets
/// the next write heal it.
const HEAL_WAIT: Duration = Duration::from_millis(25);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds(base: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("TIDELOG_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let rounds = env_u64("TIDELOG_TORTURE_ROUNDS", 3);
    (0..rounds)
        .map(|i| base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
        .collect()
}

fn ops_per_seed() -> usize {
    env_u64("TIDELOG_TORTURE_OPS", 2000) as usize
}

/// A message's payload: its id, then bytes derived from it, `len` (>= 10) in all.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    let mut x = id.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The id a payload was made from.
fn id_of(p: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(p.get(..8)?.try_into().ok()?))
}

/// The second in which a message stored at `ts` with a TTL of `secs` falls due.
fn due_second(ts: i64, secs: u64) -> u64 {
    let whole = ts.div_euclid(1_000_000_000);
    let part = i64::from(ts.rem_euclid(1_000_000_000) > 0);
    (whole + secs as i64 + part) as u64
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    durability: Durability,
    discard: Discard,
    block: u64,
    ttl: bool,
    consumer: bool,
}

impl Spec {
    fn always(&self) -> bool {
        self.durability == Durability::Always
    }
    fn config(&self) -> StreamConfig {
        StreamConfig::new(self.name)
            .durability(self.durability)
            .discard(self.discard)
            .block_size(self.block)
            .allow_msg_ttl(self.ttl)
    }
}

const SPECS: [Spec; 3] = [
    Spec {
        name: "strict",
        durability: Durability::Always,
        discard: Discard::New,
        block: 16 << 10,
        ttl: true,
        consumer: false,
    },
    Spec {
        name: "interval",
        durability: Durability::Interval(Duration::from_millis(5)),
        discard: Discard::New,
        block: 32 << 10,
        ttl: false,
        consumer: true,
    },
    Spec {
        name: "lossy",
        durability: Durability::None,
        discard: Discard::Old,
        block: 64 << 10,
        ttl: false,
        consumer: false,
    },
];

/// What the model knows about an acknowledged message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Must load with its payload (durable, not removed).
    Live,
    /// Must load once the stream is not poisoned (a removal that returned an error on an
    /// `Always` stream: applied in memory, undone by the heal); may be missing meanwhile.
    LiveIfHealed,
    /// Acknowledged, not yet covered by a successful sync (`Interval`/`None`): may be lost.
    Unsynced,
    /// Removed, the removal not yet covered by a successful sync: may come back.
    Removing,
    /// Unknown for good (a write that failed, a heal, a restart, a due TTL): may load or not,
    /// but if it loads, with its payload.
    Doubt,
    /// Must not load.
    Gone,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    len: usize,
    status: Status,
    /// Second in which its TTL falls due.
    due: Option<u64>,
}

struct Model {
    spec: Spec,
    msgs: BTreeMap<u64, Entry>,
    /// Ids of appends that returned an error.
    errored: HashSet<u64>,
    /// Highest acknowledged sequence.
    max_acked: u64,
}

impl Model {
    fn new(spec: Spec) -> Self {
        Model {
            spec,
            msgs: BTreeMap::new(),
            errored: HashSet::new(),
            max_acked: 0,
        }
    }

    /// A successful removal of `seq`.
    fn removed(&mut self, seq: u64) {
        let always = self.spec.always();
        if let Some(e) = self.msgs.get_mut(&seq) {
            if e.status != Status::Gone {
                e.status = if always {
                    Status::Gone
                } else {
                    Status::Removing
                };
            }
        }
    }

    /// A removal of `seq` that returned an error.
    fn remove_failed(&mut self, seq: u64) {
        let always = self.spec.always();
        if let Some(e) = self.msgs.get_mut(&seq) {
            e.status = match e.status {
                Status::Live if always => Status::LiveIfHealed,
                Status::Live | Status::Unsynced | Status::Removing => Status::Doubt,
                s => s,
            };
        }
    }

    fn seqs_below(&self, floor: u64) -> Vec<u64> {
        self.msgs.range(..floor).map(|(&q, _)| q).collect()
    }

    /// A successful sync: everything acknowledged and removed so far is durable.
    fn synced(&mut self) {
        for e in self.msgs.values_mut() {
            e.status = match e.status {
                Status::Unsynced => Status::Live,
                Status::Removing => Status::Gone,
                s => s,
            };
        }
    }

    /// A write failed, the stream was poisoned (and may heal), or the store restarted: what
    /// was not synced may be lost (acknowledged appends) or undone (removals).
    fn taint(&mut self) {
        for e in self.msgs.values_mut() {
            if matches!(e.status, Status::Unsynced | Status::Removing) {
                e.status = Status::Doubt;
            }
        }
    }

    fn live_seqs(&self) -> Vec<u64> {
        self.msgs
            .iter()
            .filter(|(_, e)| e.status != Status::Gone)
            .map(|(&q, _)| q)
            .collect()
    }
}

/// The device the store lives on, and how to fill and free it.
enum Disk {
    /// `FaultyVfs` over `MemVfs`: full is `FaultPlan::set_full`.
    Mem { mem: MemVfs, fv: FaultyVfs },
    /// A small real file system: full is a ballast file that takes every free block.
    Real { dir: PathBuf, ballast: PathBuf },
}

impl Disk {
    fn mem() -> Disk {
        let mem = MemVfs::new();
        let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
        Disk::Mem { mem, fv }
    }

    fn open(&self, opts: &StoreOptions) -> Result<Store, tidelog::StoreError> {
        match self {
            Disk::Mem { fv, .. } => {
                Store::open_with_vfs(DIR, Arc::new(fv.clone()) as Arc<dyn Vfs>, opts.clone())
            }
            Disk::Real { dir, .. } => Store::open(dir, opts.clone()),
        }
    }

    fn set_full(&mut self, full: bool) {
        match self {
            Disk::Mem { fv, .. } => fv.plan().lock().set_full(full),
            Disk::Real { ballast, .. } if full => fill(ballast),
            Disk::Real { ballast, .. } => match std::fs::remove_file(&*ballast) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("removing the ballast: {e}")
                }
                _ => {}
            },
        }
    }

    fn can_crash(&self) -> bool {
        matches!(self, Disk::Mem { .. })
    }

    /// The disk a crash of `kind` leaves; the dying store can no longer reach it.
    fn crash(&mut self, kind: CrashKind) {
        let Disk::Mem { mem, fv } = self else {
            unreachable!("crashes need the in-memory disk")
        };
        let full = fv.plan().lock().is_full();
        *fv.plan().lock() = FaultPlan::at(0, Fault::Crash);
        *mem = mem.after_crash(kind);
        let mut plan = FaultPlan::new();
        plan.set_full(full);
        *fv = FaultyVfs::new(Arc::new(mem.clone()), plan);
    }

    /// After `create_stream`: MemVfs moves a renamed directory's files but not their durable
    /// entries (see `Db::create` in `common`), so a power loss right after creation would lose
    /// the stream. Make its entries durable, as a real file system would have them.
    fn created(&self, name: &str) {
        if let Disk::Mem { mem, .. } = self {
            mem.sync_dir(&Path::new(DIR).join("streams").join(name))
                .expect("sync stream dir");
        }
    }

    /// Bytes the store's files occupy, as the file system counts them.
    fn usage(&self) -> u64 {
        match self {
            Disk::Mem { mem, .. } => mem_usage(mem, Path::new(DIR)),
            Disk::Real { dir, .. } => common::allocated_bytes(dir),
        }
    }
}

/// Writes a ballast file until the file system refuses more.
fn fill(ballast: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ballast)
        .expect("open ballast");
    for chunk in [256 << 10, 4 << 10, 512] {
        let buf = vec![0xA5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) if n == buf.len() => continue,
                _ => break,
            }
        }
    }
}

fn mem_usage(mem: &MemVfs, dir: &Path) -> u64 {
    let mut total = 4096;
    for name in mem.list(dir).unwrap_or_default() {
        let p = dir.join(&name);
        total += match mem.disk_bytes(&p) {
            Ok(b) => b,
            Err(_) => mem_usage(mem, &p),
        };
    }
    total
}

#[derive(Default, Debug)]
struct Stats {
    ops: u64,
    acked: u64,
    budget_full: u64,
    enospc: u64,
    poisoned_seen: u64,
    removes: u64,
    purges: u64,
    syncs_ok: u64,
    syncs_failed: u64,
    expired_rounds: u64,
    reclaimed_blocks: u64,
    fulls: u64,
    restarts: u64,
    crashes: u64,
    resumes: u64,
    max_used: u64,
    delivered: u64,
}

/// Which error a storage failure may show: the budget, or the file system's ENOSPC.
fn write_err_is_full(e: &WriteError) -> bool {
    matches!(e, WriteError::Durability(DurabilityError::StorageFull(_)))
}

struct Run {
    seed: u64,
    rng: Rng,
    disk: Disk,
    opts: StoreOptions,
    clock: Arc<ManualClock>,
    store: Option<Store>,
    streams: Vec<Stream>,
    consumer: Option<Consumer>,
    models: Vec<Model>,
    full: bool,
    next_id: u64,
    trace: Vec<String>,
    stats: Stats,
}

impl Run {
    fn new(seed: u64, disk: Disk, budget: (u64, u64)) -> Run {
        let clock = Arc::new(ManualClock::new(START_NS));
        let opts = StoreOptions {
            manual_maintenance: true,
            clock: Some(clock.clone() as Arc<dyn Clock>),
            ..StoreOptions::default()
        }
        .budget_bytes(budget.0, budget.1);
        let store = disk.open(&opts).expect("open a new store");
        let mut streams = Vec::new();
        let mut consumer = None;
        for spec in SPECS {
            let s = store.create_stream(spec.config()).expect("create stream");
            disk.created(spec.name);
            if spec.consumer {
                consumer = Some(
                    s.create_consumer(ConsumerConfig::new("c").ack(AckPolicy::Explicit))
                        .expect("create consumer"),
                );
            }
            streams.push(s);
        }
        Run {
            seed,
            rng: Rng(seed),
            disk,
            opts,
            clock,
            store: Some(store),
            streams,
            consumer,
            models: SPECS.iter().map(|&s| Model::new(s)).collect(),
            full: false,
            next_id: 1,
            trace: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn note(&mut self, s: String) {
        if self.trace.len() >= 400 {
            self.trace.drain(..200);
        }
        self.trace.push(s);
    }

    #[track_caller]
    fn fail(&self, what: String) -> ! {
        let tail = &self.trace[self.trace.len().saturating_sub(60)..];
        panic!(
            "seed {} (TIDELOG_TORTURE_SEED={}), after {} ops: {what}\n--- last {} steps ---\n{}",
            self.seed,
            self.seed,
            self.stats.ops,
            tail.len(),
            tail.join("\n")
        );
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    fn payload_len(&mut self) -> usize {
        match self.rng.below(10) {
            0..=3 => 10 + self.rng.below(190) as usize,
            4..=6 => 200 + self.rng.below(1800) as usize,
            _ => 2000 + self.rng.below(8192 - 2000 + 1) as usize,
        }
    }

    /// Checks a message a read returned at `seq` against the model.
    fn check_loaded(&self, i: usize, seq: u64, m: &StoredMessage, poisoned: bool, what: &str) {
        let model = &self.models[i];
        let name = model.spec.name;
        match model.msgs.get(&seq) {
            Some(e) if e.status == Status::Gone => self.fail(format!(
                "{name}: {what} returned message {seq} (id {}), which was removed for good",
                e.id
            )),
            Some(e) => {
                if m.payload() != payload(e.id, e.len).as_slice() {
                    self.fail(format!(
                        "{name}: {what} of {seq} returned a different payload: expected id {} \
                         ({} bytes), got id {:?} ({} bytes); status {:?}",
                        e.id,
                        e.len,
                        id_of(m.payload()),
                        m.payload().len(),
                        e.status
                    ));
                }
            }
            None => {
                let id = id_of(m.payload());
                let errored = id.is_some_and(|id| model.errored.contains(&id));
                // Before a heal, readers may see a record of a failed group (reads see the
                // buffer); once healed (or after a restart) never.
                if !(errored && poisoned) {
                    self.fail(format!(
                        "{name}: {what} returned message {seq} (payload id {id:?}, {} bytes) that \
                         was never acknowledged; its append returned an error: {errored}; \
                         stream poisoned: {poisoned}",
                        m.payload().len()
                    ));
                }
            }
        }
    }

    /// The model against the stream, everywhere.
    fn verify(&mut self, i: usize, label: &str) {
        let s = self.streams[i].clone();
        let name = SPECS[i].name;
        if let Err(e) = s.check_invariants() {
            self.fail(format!("{name}: invariants broken ({label}): {e}"));
        }
        let poisoned = s.is_poisoned();
        let mut promote = Vec::new();
        for (&seq, e) in &self.models[i].msgs {
            match (e.status, s.load(seq)) {
                (Status::Gone, Err(LoadError::NotFound(_))) => {}
                (_, Ok(m)) => {
                    self.check_loaded(i, seq, &m, poisoned, label);
                    if e.status == Status::LiveIfHealed && !poisoned {
                        promote.push(seq);
                    }
                }
                (Status::Live, Err(err)) => self.fail(format!(
                    "{name}: acknowledged message {seq} (id {}, {} bytes) does not load \
                     ({label}; poisoned: {poisoned}): {err:?}",
                    e.id, e.len
                )),
                (Status::LiveIfHealed, Err(err)) if !poisoned => self.fail(format!(
                    "{name}: message {seq} (id {}) whose removal failed is gone after the \
                     stream healed ({label}): {err:?}",
                    e.id
                )),
                (_, Err(LoadError::NotFound(_))) => {}
                (st, Err(err)) => self.fail(format!(
                    "{name}: load({seq}) ({label}, status {st:?}): {err:?}"
                )),
            }
        }
        for q in promote {
            if let Some(e) = self.models[i].msgs.get_mut(&q) {
                e.status = Status::Live;
            }
        }
        let st = s.state();
        if st.last_seq < self.models[i].max_acked {
            self.fail(format!(
                "{name}: last_seq {} went below the highest acknowledged sequence {} ({label})",
                st.last_seq, self.models[i].max_acked
            ));
        }
        // Every sequence the stream holds a message for (between the deleted ranges; skipped
        // sequences, e.g. a lease after a restart, are deleted ranges too).
        let mut from = st.first_seq;
        let gaps = st
            .deleted
            .iter()
            .copied()
            .chain([(st.last_seq + 1, u64::MAX)]);
        let mut held = 0;
        for (gap_first, gap_last) in gaps {
            for seq in from..gap_first.min(st.last_seq + 1) {
                held += 1;
                if self.models[i].msgs.contains_key(&seq) {
                    continue;
                }
                match s.load(seq) {
                    Ok(m) => self.check_loaded(i, seq, &m, poisoned, label),
                    Err(e) => self.fail(format!(
                        "{name}: load({seq}) ({label}): {e:?}, but the state counts it as held \
                         (deleted ranges {:?})",
                        st.deleted
                    )),
                }
            }
            from = from.max(gap_last.saturating_add(1));
        }
        if held != st.messages {
            self.fail(format!(
                "{name}: state says {} messages, its ranges hold {held} ({label}): {st:?}",
                st.messages
            ));
        }
        // Gone below the floor: nothing more to learn from them.
        let floor = st.first_seq;
        self.models[i]
            .msgs
            .retain(|&q, e| q >= floor || e.status != Status::Gone);
    }

    fn verify_all(&mut self, label: &str) {
        for i in 0..self.streams.len() {
            self.verify(i, label);
        }
    }

    /// After any operation on stream `i`: a poisoned stream may heal (dropping what was not
    /// synced); a discard-old stream may have dropped its oldest blocks; the budget holds.
    fn after_op(&mut self, i: usize, write_failed: bool) {
        let s = self.streams[i].clone();
        let poisoned = s.is_poisoned();
        if poisoned {
            self.stats.poisoned_seen += 1;
        }
        if SPECS[i].discard == Discard::Old {
            // Its appends drop its oldest blocks to make room (a removal like any other,
            // undone by a heal if it was not synced).
            let floor = s.state().first_seq;
            for q in self.models[i].seqs_below(floor) {
                self.models[i].removed(q);
            }
        }
        if write_failed || poisoned {
            self.models[i].taint();
        }
        let b = self.store().budget();
        self.stats.max_used = self.stats.max_used.max(b.used);
        if b.used.saturating_sub(b.retiring) > b.max_bytes || b.retiring > b.used {
            self.fail(format!(
                "budget accounting out of bounds after an op on {}: {b:?}",
                SPECS[i].name
            ));
        }
    }

    fn append(&mut self, i: usize, must_resume: bool) {
        let s = self.streams[i].clone();
        let spec = SPECS[i];
        let id = self.next_id;
        self.next_id += 1;
        let len = if must_resume { 16 } else { self.payload_len() };
        let subject = SUBJECTS[self.rng.below(SUBJECTS.len() as u64) as usize];
        let ttl = (spec.ttl && self.rng.chance(30)).then(|| 1 + self.rng.below(4));
        let p = payload(id, len);
        let mut m = NewMessage::new(subject, &p);
        if let Some(t) = ttl {
            m = m.with_ttl(Ttl::Secs(t));
        }
        let r = s.append_msg(&m);
        let name = spec.name;
        let mut write_failed = false;
        match r {
            Ok(a) => {
                self.note(format!(
                    "{name}: append id {id} ({len} B, {subject}, ttl {ttl:?}) -> seq {}",
                    a.seq
                ));
                let model = &self.models[i];
                if a.seq <= model.max_acked {
                    self.fail(format!(
                        "{name}: append got sequence {} but {} was already acknowledged",
                        a.seq, model.max_acked
                    ));
                }
                let status = if spec.always() {
                    Status::Live
                } else {
                    Status::Unsynced
                };
                let model = &mut self.models[i];
                model.max_acked = a.seq;
                model.msgs.insert(
                    a.seq,
                    Entry {
                        id,
                        len,
                        status,
                        due: ttl.map(|t| due_second(a.ts, t)),
                    },
                );
                match s.load(a.seq) {
                    Ok(got) if got.payload() == p.as_slice() => {}
                    other => self.fail(format!(
                        "{name}: acknowledged append {} does not read back: {:?}",
                        a.seq,
                        other.map(|m| id_of(m.payload()))
                    )),
                }
                self.stats.acked += 1;
            }
            Err(e) => {
                self.note(format!(
                    "{name}: append id {id} ({len} B, {subject}, ttl {ttl:?}) -> {e:?}"
                ));
                if !e.is_storage_full() {
                    self.fail(format!(
                        "{name}: append failed with an unexpected error: {e:?}"
                    ));
                }
                if must_resume && !matches!(e, AppendError::StorageFull { .. }) {
                    self.fail(format!(
                        "{name}: space was freed {} ms ago, yet the append still fails with a \
                         durability error: {e:?} (poisoned: {})",
                        HEAL_WAIT.as_millis(),
                        s.is_poisoned()
                    ));
                }
                self.models[i].errored.insert(id);
                if matches!(e, AppendError::StorageFull { .. }) {
                    self.stats.budget_full += 1;
                } else {
                    self.stats.enospc += 1;
                    write_failed = true;
                }
            }
        }
        self.after_op(i, write_failed);
    }

    /// A write error must be a full disk or budget; returns whether it was a failed write.
    fn check_write_err(&self, name: &str, what: &str, e: &WriteError) -> bool {
        if !write_err_is_full(e) {
            self.fail(format!(
                "{name}: {what} failed with an unexpected error: {e:?}"
            ));
        }
        true
    }

    fn remove(&mut self, i: usize) {
        let s = self.streams[i].clone();
        let name = SPECS[i].name;
        let live = self.models[i].live_seqs();
        let seq = if !live.is_empty() && self.rng.chance(85) {
            live[self.rng.below(live.len() as u64) as usize]
        } else {
            let st = s.state();
            st.first_seq.saturating_sub(2)
                + self
                    .rng
                    .below((st.last_seq + 6).saturating_sub(st.first_seq))
        };
        let before = self.models[i].msgs.get(&seq).copied();
        let r = s.remove(seq);
        self.note(format!(
            "{name}: remove {seq} (model {:?}) -> {r:?}",
            before.map(|e| e.status)
        ));
        let mut failed = false;
        match r {
            Ok(()) => {
                match before {
                    Some(e) if e.status != Status::Gone => {}
                    _ => self.fail(format!(
                        "{name}: remove({seq}) found a message the model does not have: {before:?}"
                    )),
                }
                self.models[i].removed(seq);
                self.stats.removes += 1;
            }
            Err(WriteError::NotFound(_)) => {
                if before.is_some_and(|e| e.status == Status::Live) {
                    self.fail(format!(
                        "{name}: remove({seq}): acknowledged message not found"
                    ));
                }
            }
            Err(e) => {
                failed = self.check_write_err(name, "remove", &e);
                self.models[i].remove_failed(seq);
            }
        }
        self.after_op(i, failed);
    }

    /// `compact(floor)` (or `purge()` with `floor` = None).
    fn compact(&mut self, i: usize, whole: bool) {
        let s = self.streams[i].clone();
        let name = SPECS[i].name;
        let st = s.state();
        let floor = if whole {
            st.last_seq + 1
        } else {
            let span = st.last_seq + 1 - st.first_seq;
            st.first_seq + self.rng.below(span / 3 + 1) + 1
        };
        let r = if whole { s.purge() } else { s.compact(floor) };
        self.note(format!(
            "{name}: {} below {floor} (first {}, last {}) -> {r:?}",
            if whole { "purge" } else { "compact" },
            st.first_seq,
            st.last_seq
        ));
        let below = self.models[i].seqs_below(floor);
        let mut failed = false;
        match r {
            Ok(_) => {
                for q in below {
                    self.models[i].removed(q);
                }
                self.stats.purges += 1;
            }
            Err(e) => {
                failed = self.check_write_err(name, "compact", &e);
                for q in below {
                    self.models[i].remove_failed(q);
                }
            }
        }
        self.after_op(i, failed);
    }

    /// `sync`, `checkpoint` or `reclaim`: each syncs everything first.
    fn sync(&mut self, i: usize, kind: u64) {
        let s = self.streams[i].clone();
        let name = SPECS[i].name;
        let (what, r) = match kind {
            0 => ("sync", s.sync().map(|()| 0)),
            1 => ("checkpoint", s.checkpoint().map(|()| 0)),
            _ => ("reclaim", s.reclaim()),
        };
        self.note(format!("{name}: {what} -> {r:?}"));
        let mut failed = false;
        match r {
            Ok(n) => {
                self.models[i].synced();
                self.stats.syncs_ok += 1;
                self.stats.reclaimed_blocks += n as u64;
            }
            Err(e) => {
                failed = self.check_write_err(name, what, &e);
                self.stats.syncs_failed += 1;
            }
        }
        self.after_op(i, failed);
    }

    /// Moves the clock and runs expiry on every stream.
    fn expire(&mut self) {
        let secs = 1 + self.rng.below(3);
        self.clock.advance_ns(secs as i64 * 1_000_000_000);
        let now_s = (self.clock.now_ns() / 1_000_000_000) as u64;
        self.stats.expired_rounds += 1;
        for (i, spec) in SPECS.iter().enumerate() {
            let due: Vec<u64> = self.models[i]
                .msgs
                .iter()
                .filter(|(_, e)| e.due.is_some_and(|d| d <= now_s) && e.status != Status::Gone)
                .map(|(&q, _)| q)
                .collect();
            // Due messages may go with any write from now on (a heal enforces limits too).
            for &q in &due {
                if let Some(e) = self.models[i].msgs.get_mut(&q) {
                    e.status = Status::Doubt;
                }
            }
            let s = self.streams[i].clone();
            let r = s.expire_now();
            self.note(format!(
                "{}: clock +{secs}s, expire_now ({} due) -> {r:?}",
                spec.name,
                due.len()
            ));
            let mut failed = false;
            match r {
                Ok(_) if spec.always() => {
                    for q in due {
                        if let Some(e) = self.models[i].msgs.get_mut(&q) {
                            e.status = Status::Gone;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => failed = self.check_write_err(spec.name, "expire_now", &e),
            }
            self.after_op(i, failed);
        }
    }

    fn consume(&mut self) {
        let Some(c) = self.consumer.clone() else {
            return;
        };
        let i = SPECS
            .iter()
            .position(|s| s.consumer)
            .expect("consumer stream");
        let n = 1 + self.rng.below(8) as usize;
        let r = c.fetch(n, 1 << 20);
        let poisoned = self.streams[i].is_poisoned();
        match r {
            Ok(ds) => {
                self.note(format!(
                    "interval: fetch {n} -> {:?}",
                    ds.iter().map(|d| d.message.seq).collect::<Vec<_>>()
                ));
                for d in &ds {
                    self.check_loaded(i, d.message.seq, &d.message, poisoned, "fetch");
                    self.stats.delivered += 1;
                    if self.rng.chance(80) {
                        match c.ack(d.message.seq) {
                            Ok(_)
                            | Err(ConsumerError::Durability(DurabilityError::StorageFull(_))) => {}
                            Err(e) => self.fail(format!("interval: ack {}: {e:?}", d.message.seq)),
                        }
                    }
                }
            }
            Err(ConsumerError::Durability(DurabilityError::StorageFull(_))) => {}
            Err(e) => self.fail(format!("interval: fetch: {e:?}")),
        }
        self.after_op(i, false);
    }

    fn set_full(&mut self, full: bool) {
        self.disk.set_full(full);
        self.full = full;
        self.note(format!("disk full: {full}"));
        if full {
            self.stats.fulls += 1;
        }
    }

    /// Frees the disk, waits out the heal interval, and checks that every stream appends
    /// again (a budget refusal is fine, a durability error is not).
    fn free_and_resume(&mut self) {
        self.set_full(false);
        std::thread::sleep(HEAL_WAIT);
        self.stats.resumes += 1;
        for i in 0..self.streams.len() {
            self.append(i, true);
        }
    }

    fn reopen(&mut self, label: &str) {
        let store = match self.disk.open(&self.opts) {
            Ok(s) => s,
            Err(e) => self.fail(format!(
                "the store does not open after a {label} (disk full: {}): {e:?}",
                self.full
            )),
        };
        let damaged = store.damaged_streams();
        if !damaged.is_empty() {
            self.fail(format!(
                "after a {label} (disk full: {}), streams were set aside as damaged: {damaged:?}",
                self.full
            ));
        }
        self.streams.clear();
        for spec in SPECS {
            let s = match store.stream(spec.name) {
                Ok(s) => s,
                Err(e) => self.fail(format!("{}: missing after a {label}: {e:?}", spec.name)),
            };
            if !s.damaged_consumers().is_empty() {
                self.fail(format!(
                    "{}: damaged consumers after a {label}: {:?}",
                    spec.name,
                    s.damaged_consumers()
                ));
            }
            if spec.consumer {
                match s.consumer("c") {
                    Ok(c) => self.consumer = Some(c),
                    Err(e) => self.fail(format!(
                        "{}: consumer lost after a {label}: {e:?}",
                        spec.name
                    )),
                }
            }
            self.streams.push(s);
        }
        self.store = Some(store);
        for i in 0..self.streams.len() {
            self.after_op(i, false);
        }
        self.verify_all(&format!("after a {label}"));
    }

    /// A clean close and reopen (the disk may be full).
    fn restart(&mut self) {
        self.consumer = None;
        self.streams.clear();
        let store = self.store.take().expect("store open");
        let r = store.close();
        self.note(format!(
            "restart (disk full: {}): close -> {r:?}",
            self.full
        ));
        if let (Err(e), false) = (&r, self.full) {
            self.fail(format!("close failed with free space: {e:?}"));
        }
        drop(store);
        for m in &mut self.models {
            m.taint();
        }
        self.stats.restarts += 1;
        self.reopen("clean restart");
    }

    fn crash(&mut self, kind: CrashKind) {
        self.note(format!("crash {kind:?} (disk full: {})", self.full));
        self.disk.crash(kind);
        self.consumer = None;
        self.streams.clear();
        self.store = None;
        for m in &mut self.models {
            m.taint();
        }
        self.stats.crashes += 1;
        self.reopen(&format!("{kind:?} crash"));
    }

    /// Compares the store's `used` with the file system's count (right after an open, when
    /// every file has been counted afresh).
    fn check_usage(&mut self, label: &str) {
        let used = self.store().budget().used;
        let disk = self.disk.usage();
        let diff = used.abs_diff(disk);
        // Real tmpfs counts directories as 0 bytes, the budget as a page each.
        if diff > (disk / 50).max(32 << 10) {
            self.fail(format!(
                "budget says {used} bytes used, the file system {disk} ({label})"
            ));
        }
    }

    fn step(&mut self) {
        self.stats.ops += 1;
        let i = match self.rng.below(10) {
            0..=3 => 0,
            4..=6 => 1,
            _ => 2,
        };
        match self.rng.below(1000) {
            0..=579 => self.append(i, false),
            580..=684 => self.remove(i),
            685..=701 => self.compact(i, false),
            702..=703 => self.compact(i, true),
            704..=769 => self.sync(i, 0),
            770..=799 => self.sync(i, 1),
            800..=824 => self.sync(i, 2),
            825..=859 => self.expire(),
            860..=899 => {
                if self.full {
                    self.free_and_resume();
                } else if self.rng.chance(50) {
                    self.set_full(true);
                }
            }
            900..=909 => {
                // Let heal attempts run while the disk is full (they need no space).
                std::thread::sleep(HEAL_WAIT);
                self.note("sleep".into());
            }
            910..=949 => self.consume(),
            950..=969 => self.verify_all("periodic check"),
            970..=984 => self.restart(),
            _ => {
                if self.disk.can_crash() {
                    let kind = if self.rng.chance(50) {
                        CrashKind::Process
                    } else {
                        CrashKind::PowerLoss
                    };
                    self.crash(kind);
                } else {
                    self.restart();
                }
            }
        }
    }

    /// The end: space comes back, every stream heals and appends, everything acknowledged is
    /// there (across a restart and a crash too), and freeing the budget lets every stream
    /// append again.
    fn finish(&mut self) {
        self.free_and_resume();
        for (i, s) in self.streams.iter().enumerate() {
            if s.is_poisoned() {
                self.fail(format!("{}: still poisoned with free space", SPECS[i].name));
            }
        }
        self.verify_all("end, healed");
        for (i, spec) in SPECS.iter().enumerate() {
            let s = self.streams[i].clone();
            if let Err(e) = s.sync() {
                self.fail(format!("{}: sync with free space: {e:?}", spec.name));
            }
            self.models[i].synced();
        }
        self.restart();
        self.check_usage("end, after a clean restart");
        if self.disk.can_crash() {
            self.crash(CrashKind::PowerLoss);
        }
        // Free the budget: purge everything, reclaim, and every stream appends again.
        for (i, spec) in SPECS.iter().enumerate() {
            let s = self.streams[i].clone();
            match s.purge() {
                Ok(_) => {
                    let all = self.models[i].seqs_below(u64::MAX);
                    for q in all {
                        self.models[i].removed(q);
                    }
                }
                Err(e) => self.fail(format!("{}: purge with free space: {e:?}", spec.name)),
            }
            if let Err(e) = s.reclaim() {
                self.fail(format!("{}: reclaim with free space: {e:?}", spec.name));
            }
            self.models[i].synced();
        }
        for (i, spec) in SPECS.iter().enumerate() {
            let s = self.streams[i].clone();
            let before = self.models[i].max_acked;
            let id = self.next_id;
            self.next_id += 1;
            match s.append("end", b"", &payload(id, 32)) {
                Ok(a) if a.seq > before => {
                    self.models[i].max_acked = a.seq;
                    let status = if spec.always() {
                        Status::Live
                    } else {
                        Status::Unsynced
                    };
                    self.models[i].msgs.insert(
                        a.seq,
                        Entry {
                            id,
                            len: 32,
                            status,
                            due: None,
                        },
                    );
                }
                other => self.fail(format!(
                    "{}: append after freeing the budget: {other:?} (highest acked {before}, \
                     budget {:?})",
                    spec.name,
                    self.store().budget()
                )),
            }
        }
        self.verify_all("end, after freeing the budget");
        let store = self.store.take().expect("store open");
        self.consumer = None;
        self.streams.clear();
        if let Err(e) = store.close() {
            self.fail(format!("final close: {e:?}"));
        }
    }
}

fn run(seed: u64, disk: Disk, budget: (u64, u64), label: &str) {
    let t0 = Instant::now();
    let mut r = Run::new(seed, disk, budget);
    let backend = r.store().io_backend();
    for _ in 0..ops_per_seed() {
        r.step();
    }
    r.finish();
    let live: Vec<usize> = r
        .models
        .iter()
        .map(|m| m.msgs.values().filter(|e| e.status != Status::Gone).count())
        .collect();
    eprintln!(
        "{label} ({backend}) seed {seed}: {:.2?}, {:?}, errored appends per stream {:?}, \
         live in the model at the end {live:?}",
        t0.elapsed(),
        r.stats,
        r.models.iter().map(|m| m.errored.len()).collect::<Vec<_>>()
    );
}

/// The store's budget: the smallest there is, so the streams keep running into it.
const BUDGET: (u64, u64) = (1 << 20, 448 << 10);

#[test]
fn torture_faulty_memvfs() {
    for seed in seeds(0x5EED_0001) {
        run(seed, Disk::mem(), BUDGET, "memvfs");
    }
}

/// A tmpfs mounted for the test, unmounted when dropped (also on panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Files closed by the store may still be referenced for a moment (io_uring releases
        // them asynchronously): retry before detaching the mount lazily.
        let mut ok = false;
        for _ in 0..50 {
            ok = Command::new("umount")
                .arg(self.dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn torture_tmpfs() {
    for seed in seeds(0x7AFF_0001) {
        let fs = match Tmpfs::mount() {
            Ok(fs) => fs,
            Err(why) => {
                eprintln!("no tmpfs ({why}): running the in-memory variant instead");
                run(seed, Disk::mem(), BUDGET, "memvfs (tmpfs fallback)");
                continue;
            }
        };
        let disk = Disk::Real {
            dir: fs.path().join("store"),
            ballast: fs.path().join("ballast"),
        };
        // 1 MiB of the 24: the budget is hit by appends; ENOSPC comes from the ballast.
        run(seed, disk, BUDGET, "tmpfs");
        drop(fs);
    }
}

// Minimal reproductions of what the torture runs found, each on its own.

/// An in-memory disk with a store (no maintenance thread) and stream `s` of 16 KiB blocks.
fn small_block_store() -> (Disk, StoreOptions, Store, Stream) {
    let disk = Disk::mem();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..StoreOptions::default()
    };
    let store = disk.open(&opts).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").block_size(16 << 10))
        .unwrap();
    disk.created("s");
    (disk, opts, store, s)
}

/// A store opens on a full disk with every stream in it: a block whose trailer was not yet
/// written (durable appends leave trailers to upkeep) must not make recovery need space.
#[test]
fn full_disk_at_open_keeps_every_stream() {
    for crash in [None, Some(CrashKind::Process), Some(CrashKind::PowerLoss)] {
        let (mut disk, opts, store, s) = small_block_store();
        let mut acked = Vec::new();
        for i in 0..40u64 {
            acked.push(s.append("a", b"", &payload(i, 1000)).unwrap().seq);
        }
        assert!(s.state().blocks >= 3);
        disk.set_full(true);
        drop(s);
        match crash {
            None => {
                let _ = store.close();
                drop(store);
            }
            Some(kind) => {
                disk.crash(kind);
                drop(store);
            }
        }
        let store = disk.open(&opts).expect("the store opens on a full disk");
        assert_eq!(
            store.damaged_streams(),
            vec![],
            "{crash:?}: a full disk at open set the stream aside"
        );
        let s = store.stream("s").unwrap();
        for (i, &q) in acked.iter().enumerate() {
            assert_eq!(s.load(q).unwrap().payload(), payload(i as u64, 1000));
        }
        disk.set_full(false);
        std::thread::sleep(HEAL_WAIT);
        s.append("a", b"", b"after")
            .expect("appends resume without a reopen");
    }
}

/// A heal attempt that fails on a full disk (after it removed a never-synced block file) must
/// not keep the stream poisoned once space is freed.
#[test]
fn heal_after_a_failed_attempt_resumes_once_space_is_freed() {
    let (mut disk, _opts, _store, s) = small_block_store();
    // Block 1 full, block 2 mostly full; block 1's trailer waits for upkeep.
    while s.state().blocks < 2 || s.state().bytes < 30_000 {
        s.append("a", b"", &[1; 1000]).unwrap();
    }
    disk.set_full(true);
    // Needs a new block (created, never synced), whose write fails: poisoned.
    assert!(s
        .append("a", b"", &[2; 3000])
        .unwrap_err()
        .is_storage_full());
    std::thread::sleep(HEAL_WAIT);
    // A heal attempt on the full disk: it removes the new block's file, then fails.
    assert!(s.append("a", b"", &[3; 10]).unwrap_err().is_storage_full());
    disk.set_full(false);
    // The first append 25 ms after space is freed heals the stream; later attempts only tell
    // whether it stays poisoned for good.
    let mut failed = Vec::new();
    for _ in 0..4 {
        std::thread::sleep(HEAL_WAIT);
        match s.append("a", b"", &[4; 10]) {
            Ok(_) => break,
            Err(e) => failed.push(e),
        }
    }
    assert!(
        failed.is_empty(),
        "space freed, yet {} appends 25 ms apart failed: {failed:?} (poisoned: {})",
        failed.len(),
        s.is_poisoned()
    );
}

/// An `Interval` append that returns an error is never stored: not when the error comes after
/// its record was synced (raising the sequence lease failed), not after the heal, not after a
/// reopen.
#[test]
fn interval_append_that_fails_leaves_no_message() {
    for k in 0..8u64 {
        let disk = Disk::mem();
        let Disk::Mem { fv, .. } = &disk else {
            unreachable!()
        };
        let opts = StoreOptions {
            manual_maintenance: true,
            ..StoreOptions::default()
        };
        let store = disk.open(&opts).unwrap();
        let s = store
            .create_stream(
                StreamConfig::new("s").durability(Durability::Interval(Duration::from_millis(1))),
            )
            .unwrap();
        s.append("a", b"", b"first").unwrap();
        drop(s);
        // Closing lowers the lease: the next append raises it.
        store.close().unwrap();
        drop(store);
        let store = disk.open(&opts).unwrap();
        let s = store.stream("s").unwrap();
        // The interval has passed: the append syncs.
        std::thread::sleep(Duration::from_millis(5));
        let seq = s.state().last_seq + 1;
        // The k-th mutating operation of the append fails with ENOSPC.
        *fv.plan().lock() = FaultPlan::at(k, Fault::NoSpace);
        let r = s.append("a", b"", b"refused");
        *fv.plan().lock() = FaultPlan::new();
        let Err(e) = r else { continue };
        assert!(e.is_storage_full(), "{e:?}");
        std::thread::sleep(HEAL_WAIT);
        let next = s.append("a", b"", b"next").unwrap();
        assert!(next.seq > seq);
        assert!(
            s.load(seq).is_err(),
            "fault at op {k}: the append returned {e:?}, yet message {seq} is there after the heal"
        );
        drop(s);
        store.close().unwrap();
        drop(store);
        let store = disk.open(&opts).unwrap();
        let s = store.stream("s").unwrap();
        assert!(
            s.load(seq).is_err(),
            "fault at op {k}: the append returned {e:?}, yet message {seq} is there after a reopen"
        );
    }
}
