//! The fuzz targets on stable Rust: every seed in `fuzz/corpus/<target>/` is replayed through
//! the same `tidelog::fuzzing` entry point the cargo-fuzz target calls, followed by a few
//! thousand pseudo-random, mutated and structure-aware inputs (fixed seed, so a failure
//! reproduces). No entry point may panic on any input.
//!
//! ```text
//! # more iterations (and another seed):
//! TIDELOG_FUZZ_ITERS=100000 TIDELOG_FUZZ_SEED=42 cargo test -p tidelog --release --test fuzz_corpus
//! # regenerate the seed corpora from real streams (all, or the targets listed):
//! TIDELOG_WRITE_CORPUS=1 cargo test -p tidelog --test fuzz_corpus write_corpus -- --ignored
//! TIDELOG_WRITE_CORPUS=op_sequence,consumer_state cargo test -p tidelog --test fuzz_corpus \
//!     write_corpus -- --ignored
//! ```
//!
//! Failing inputs are written to `$CARGO_TARGET_TMPDIR/fuzz-failures/` and printed in hex.
//!
//! The record, block and checkpoint encoders here are a minimal re-implementation of
//! `docs/format.md`, used only to make the random inputs pass the checksums (so the fuzzing
//! reaches the replay logic rather than stopping at the first checksum). `write_corpus`
//! checks them against records written by the engine itself.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use tidelog::io::{read_file, MemVfs, Vfs};
use tidelog::{
    AckPolicy, ConsumerConfig, DeliverPolicy, Durability, ManualClock, NewMessage, Store,
    StoreOptions, Stream, StreamConfig, Ttl,
};
use xxhash_rust::xxh3::xxh3_64;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("record_decoder", tidelog::fuzzing::record_decoder),
    ("block_recovery", tidelog::fuzzing::block_recovery),
    ("snapshot_restore", tidelog::fuzzing::snapshot_restore),
    ("checkpoint_decoder", tidelog::fuzzing::checkpoint_decoder),
    ("consumer_state", tidelog::fuzzing::consumer_state),
    ("op_sequence", tidelog::fuzzing::op_sequence),
];

/// Random and mutated inputs per target, relative to `iterations()`: an operation sequence
/// runs a whole store (milliseconds), a decoder microseconds.
fn iterations_of(target: &str) -> usize {
    match target {
        "op_sequence" => iterations() / 2,
        _ => iterations(),
    }
}

// ---------------------------------------------------------------------------------------------
// Format constants (docs/format.md).

const REC_HEAD: usize = 32;
const REC_MIN: usize = 40;
const BLOCK_HEAD: usize = 64;
const FOOTER: usize = 64;
const BLOCK_MAGIC: &[u8; 8] = b"TLBLOCK\0";
const SEAL_MAGIC: &[u8; 8] = b"TLSEAL\0\0";
const CKPT_MAGIC: &[u8; 8] = b"TLCKPT\0\0";
const CONS_MAGIC: &[u8; 8] = b"TLCONS\0\0";
const LEASE_MAGIC: &[u8; 8] = b"TLLEASE\0";
const KIND_MSG: u8 = 1;
const KIND_SKIP: u8 = 2;
const FLAG_ERASED: u8 = 1;
const FLAG_BATCH: u8 = 2;
const FLAG_TTL: u8 = 4;
const FLAG_MARKER: u8 = 8;
const FLAG_MSG_ID: u8 = 64;
const NO_RECORD: u32 = u32::MAX;
/// The stream and block the `block_recovery` harness recovers.
const FUZZ_STREAM_ID: u64 = 7;
const FUZZ_BLOCK_ID: u64 = 1;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[allow(clippy::too_many_arguments)]
/// The record header check of `docs/format.md`: a splitmix64-style mix of the words at 0, 8,
/// 16 and the u32 at 24, low 32 bits.
fn head_check(b: &[u8]) -> u32 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for w in [
        u64_at(b, 0),
        u64_at(b, 8),
        u64_at(b, 16),
        u64::from(u32_at(b, 24)),
    ] {
        h = (h ^ w).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    h as u32
}

fn encode_record(
    kind: u8,
    flags: u8,
    seq: u64,
    ts: i64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let len = REC_MIN + subject.len() + headers.len() + payload.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b.push(kind);
    b.push(flags);
    b.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&ts.to_le_bytes());
    b.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    let hc = head_check(&b[..28]);
    b.extend_from_slice(&hc.to_le_bytes());
    for part in [subject, headers, payload] {
        b.extend_from_slice(part);
    }
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// Recomputes the header check and the body checksum of `r` (whatever its fields say).
fn reseal_record(r: &mut [u8]) {
    if r.len() < REC_MIN {
        return;
    }
    let hc = head_check(&r[..28]);
    r[28..32].copy_from_slice(&hc.to_le_bytes());
    let n = r.len() - 8;
    let sum = xxh3_64(&r[..n]);
    r[n..].copy_from_slice(&sum.to_le_bytes());
}

fn record_is_valid(r: &[u8]) -> bool {
    if r.len() < REC_MIN || u32_at(r, 0) as usize != r.len() {
        return false;
    }
    let n = r.len() - 8;
    u32_at(r, 28) == head_check(&r[..28]) && u64_at(r, n) == xxh3_64(&r[..n])
}

fn block_header(stream_id: u64, block_id: u64, first_seq: u64, created_ns: i64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_HEAD];
    b[..8].copy_from_slice(BLOCK_MAGIC);
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    b[12..16].copy_from_slice(&(BLOCK_HEAD as u32).to_le_bytes());
    put_u64(&mut b, 16, stream_id);
    put_u64(&mut b, 24, block_id);
    put_u64(&mut b, 32, first_seq);
    put_u64(&mut b, 40, created_ns as u64);
    let sum = xxh3_64(&b[..56]);
    put_u64(&mut b, 56, sum);
    b
}

/// Offset table, per-slot subject ids (into the block's dictionary, in order of first use;
/// `u32::MAX` for no record), the dictionary (u16 length + bytes each), then the footer.
fn encode_trailer(block_id: u64, first_seq: u64, body: &[u8], offsets: &[u32]) -> Vec<u8> {
    let mut t = Vec::new();
    for o in offsets {
        t.extend_from_slice(&o.to_le_bytes());
    }
    let mut names: Vec<&[u8]> = Vec::new();
    for &o in offsets {
        // Structure-aware inputs may carry garbage offsets: those slots name no subject.
        let subject = body.get(o as usize..).and_then(|r| {
            let len = u16::from_le_bytes([*r.get(6)?, *r.get(7)?]) as usize;
            r.get(32..32 + len)
        });
        let id = match subject {
            Some(s) => match names.iter().position(|n| *n == s) {
                Some(i) => i as u32,
                None => {
                    names.push(s);
                    names.len() as u32 - 1
                }
            },
            None => u32::MAX,
        };
        t.extend_from_slice(&id.to_le_bytes());
    }
    let dict_at = (body.len() + t.len()) as u64;
    for n in &names {
        t.extend_from_slice(&(n.len() as u16).to_le_bytes());
        t.extend_from_slice(n);
    }
    t.extend_from_slice(SEAL_MAGIC);
    for v in [
        block_id,
        offsets.len() as u64,
        body.len() as u64,
        first_seq,
        dict_at,
        names.len() as u64,
    ] {
        t.extend_from_slice(&v.to_le_bytes());
    }
    let sum = xxh3_64(&t);
    t.extend_from_slice(&sum.to_le_bytes());
    t
}

/// `Some(body_end)` when `file` ends with a well-formed trailer (checksum not checked).
fn trailer_body_end(file: &[u8]) -> Option<usize> {
    let n = file.len();
    if n < BLOCK_HEAD + FOOTER || &file[n - FOOTER..n - FOOTER + 8] != SEAL_MAGIC {
        return None;
    }
    let f = n - FOOTER;
    let slots = usize::try_from(u64_at(file, f + 16)).ok()?;
    let body_end = usize::try_from(u64_at(file, f + 24)).ok()?;
    let dict_at = usize::try_from(u64_at(file, f + 40)).ok()?;
    let tables = body_end.checked_add(slots.checked_mul(8)?)?;
    (tables == dict_at && dict_at.checked_add(FOOTER)? <= n && body_end >= BLOCK_HEAD)
        .then_some(body_end)
}

/// Rewrites a block file as block 1 of stream 7 (what `block_recovery` recovers), fixing the
/// header and trailer checksums.
fn rehome(file: &[u8]) -> Vec<u8> {
    let mut f = file.to_vec();
    if f.len() >= BLOCK_HEAD && &f[..8] == BLOCK_MAGIC {
        put_u64(&mut f, 16, FUZZ_STREAM_ID);
        put_u64(&mut f, 24, FUZZ_BLOCK_ID);
        let sum = xxh3_64(&f[..56]);
        put_u64(&mut f, 56, sum);
    }
    if let Some(body_end) = trailer_body_end(&f) {
        let n = f.len();
        put_u64(&mut f, n - FOOTER + 8, FUZZ_BLOCK_ID);
        let sum = xxh3_64(&f[body_end..n - 8]);
        put_u64(&mut f, n - 8, sum);
    }
    f
}

/// Fixes the checksum of a trailer-shaped end of `f`, if there is one.
fn reseal_trailer(f: &mut [u8]) {
    if let Some(body_end) = trailer_body_end(f) {
        let n = f.len();
        let sum = xxh3_64(&f[body_end..n - 8]);
        put_u64(f, n - 8, sum);
    }
}

/// The records of a block file: `(offset, bytes)` from the header to the trailer or the first
/// thing that is not a whole record.
fn records_of(file: &[u8]) -> Vec<(usize, &[u8])> {
    let end = trailer_body_end(file).unwrap_or(file.len());
    let mut out = Vec::new();
    let mut off = BLOCK_HEAD;
    while off + REC_MIN <= end {
        let len = u32_at(file, off) as usize;
        if len < REC_MIN || off + len > end {
            break;
        }
        out.push((off, &file[off..off + len]));
        off += len;
    }
    out
}

/// Walks `b` from `from` as a sequence of records and reseals each one whose length field
/// stays inside the buffer, so that field mutations survive the checksums.
fn reseal_records(b: &mut [u8], from: usize) {
    let mut off = from;
    while off + REC_MIN <= b.len() {
        let len = u32_at(b, off) as usize;
        if len < REC_MIN || off + len > b.len() {
            break;
        }
        reseal_record(&mut b[off..off + len]);
        off += len;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// Fewer than `max` random bytes.
    fn bytes_upto(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn interesting_u64(&mut self) -> u64 {
        const V: [u64; 16] = [
            0,
            1,
            2,
            7,
            40,
            63,
            64,
            1023,
            1024,
            1025,
            u32::MAX as u64,
            1 << 32,
            1 << 62,
            (1 << 62) + 1,
            i64::MAX as u64,
            u64::MAX,
        ];
        match self.below(4) {
            0 => self.next(),
            1 => self.next() % 4096,
            _ => *self.pick(&V),
        }
    }
}

fn iterations() -> usize {
    std::env::var("TIDELOG_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn fuzz_seed() -> u64 {
    std::env::var("TIDELOG_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7469_6465_6c6f_6721)
}

// ---------------------------------------------------------------------------------------------
// Running the targets and reporting panics.

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_root().join(target);
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((name, std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `data` to `$CARGO_TARGET_TMPDIR/fuzz-failures/`; returns where (or why not).
fn save_input(prefix: &str, data: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let file = dir.join(format!("{prefix}-{:016x}.bin", xxh3_64(data)));
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&file, data))
        .map(|_| file.display().to_string())
        .unwrap_or_else(|e| format!("(not saved: {e})"))
}

#[derive(Default)]
struct Failures {
    list: Vec<String>,
}

impl Failures {
    /// Runs `target` on `data`; records a panic with its input.
    fn run(&mut self, name: &str, target: Target, data: &[u8], origin: &str) -> bool {
        let started = std::time::Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| target(data)));
        let took = started.elapsed();
        if took > std::time::Duration::from_secs(1) {
            // Not a failure, but a fuzzer would spend minutes on a few of these.
            let file = save_input(&format!("slow-{name}"), data);
            eprintln!("{name} took {took:?} on {origin} (saved to {file})");
        }
        let Err(p) = r else {
            return true;
        };
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "<non-string panic>".into());
        let saved = save_input(name, data);
        let shown = &data[..data.len().min(2048)];
        self.list.push(format!(
            "{name} panicked on {origin} ({} bytes, saved to {saved}): {msg}\n  input: {}{}",
            data.len(),
            hex(shown),
            if shown.len() < data.len() { "..." } else { "" }
        ));
        false
    }

    fn too_many(&self) -> bool {
        self.list.len() >= 20
    }

    fn assert_none(self) {
        assert!(
            self.list.is_empty(),
            "{} failing input(s):\n{}",
            self.list.len(),
            self.list.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The always-on tests.

#[test]
fn replay_corpus() {
    let mut failures = Failures::default();
    for (name, target) in TARGETS {
        let seeds = corpus(name);
        assert!(
            seeds.len() >= 10,
            "fuzz/corpus/{name} has only {} seeds",
            seeds.len()
        );
        for (file, data) in &seeds {
            failures.run(name, target, data, &format!("seed {file}"));
        }
    }
    failures.assert_none();
}

#[test]
fn fuzz_random_bytes() {
    let mut rng = Rng::new(fuzz_seed());
    let mut failures = Failures::default();
    for (name, target) in TARGETS {
        for i in 0..iterations_of(name) {
            let len = match rng.below(4) {
                0 => rng.below(48),
                1 => rng.below(160),
                _ => rng.below(1024),
            };
            let mut data = match rng.below(3) {
                0 => rng.bytes(len),
                // Mostly zeros with a few set bytes: looks like the end of a log.
                1 => {
                    let mut d = vec![0u8; len];
                    for _ in 0..rng.below(8) {
                        let at = rng.below(len);
                        if at < len {
                            d[at] = rng.byte();
                        }
                    }
                    d
                }
                // Small values: plausible lengths, kinds and flags.
                _ => (0..len).map(|_| rng.byte() % 8).collect(),
            };
            if matches!(name, "block_recovery" | "consumer_state")
                && !data.is_empty()
                && rng.one_in(2)
            {
                data[0] = 0;
            }
            failures.run(name, target, &data, &format!("random input #{i}"));
            if failures.too_many() {
                break;
            }
        }
    }
    failures.assert_none();
}

#[test]
fn fuzz_mutated_corpus() {
    let mut rng = Rng::new(fuzz_seed() ^ 0x9e37_79b9_7f4a_7c15);
    let mut failures = Failures::default();
    for (name, target) in TARGETS {
        let seeds: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, d)| d).collect();
        for i in 0..iterations_of(name) * 2 {
            let mut data = rng.pick(&seeds).clone();
            mutate(&mut rng, &mut data, &seeds);
            if rng.one_in(2) {
                // Keep the field mutations but make the checksums agree with them.
                reseal_for(name, &mut data);
            }
            failures.run(name, target, &data, &format!("mutated seed #{i}"));
            if failures.too_many() {
                break;
            }
        }
    }
    failures.assert_none();
}

#[test]
fn fuzz_structured_logs() {
    let mut rng = Rng::new(fuzz_seed() ^ 0x5851_f42d_4c95_7f2d);
    let mut failures = Failures::default();
    for i in 0..iterations() * 2 {
        let body = random_log(&mut rng);
        // Usually the harness's own header (a leading 0 byte); sometimes one of ours, with
        // another first sequence or block id.
        let mut file = if rng.one_in(4) {
            let first = if rng.one_in(2) {
                1
            } else {
                rng.interesting_u64()
            };
            let id = if rng.one_in(4) { 3 } else { FUZZ_BLOCK_ID };
            block_header(FUZZ_STREAM_ID, id, first, 0)
        } else {
            vec![0u8]
        };
        file.extend_from_slice(&body);
        if rng.one_in(3) {
            add_trailer(&mut rng, &mut file, &body);
        }
        failures.run(
            "block_recovery",
            tidelog::fuzzing::block_recovery,
            &file,
            &format!("structured log #{i}"),
        );
        let seq = rng.interesting_u64();
        let one = random_record(&mut rng, seq);
        failures.run(
            "record_decoder",
            tidelog::fuzzing::record_decoder,
            &one,
            &format!("structured record #{i}"),
        );
        failures.run(
            "record_decoder",
            tidelog::fuzzing::record_decoder,
            &body,
            &format!("structured log #{i}"),
        );
        let ck = random_checkpoint(&mut rng);
        failures.run(
            "record_decoder",
            tidelog::fuzzing::record_decoder,
            &ck,
            &format!("structured checkpoint #{i}"),
        );
        if failures.too_many() {
            break;
        }
    }
    failures.assert_none();
}

/// Makes the checksums (and the consumer file's length field) of a mutated input agree with
/// its fields again, as the target will read it.
fn reseal_for(target: &str, data: &mut [u8]) {
    match target {
        "checkpoint_decoder" => {
            // The wrapped forms are sealed by the harness; a whole file is sealed here.
            if data.len() >= 16 && (data.starts_with(CKPT_MAGIC) || data.starts_with(LEASE_MAGIC)) {
                let n = data.len() - 8;
                let sum = xxh3_64(&data[..n]);
                put_u64(data, n, sum);
            }
        }
        "consumer_state" => {
            if data.len() >= 32 && data.starts_with(CONS_MAGIC) {
                let n = data.len() - 8;
                put_u64(data, 16, (n - 24) as u64);
                let sum = xxh3_64(&data[..n]);
                put_u64(data, n, sum);
            }
        }
        "op_sequence" => {}
        _ => {
            let from = match data.first() {
                Some(0) if target == "block_recovery" => 1,
                Some(_) if data.starts_with(BLOCK_MAGIC) => BLOCK_HEAD,
                _ => 0,
            };
            reseal_records(data, from);
            reseal_trailer(data);
        }
    }
}

#[test]
fn fuzz_structured_state() {
    let mut rng = Rng::new(fuzz_seed() ^ 0x2545_f491_4f6c_dd1d);
    let mut failures = Failures::default();
    let consumers: Vec<Vec<u8>> = corpus("consumer_state")
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d.starts_with(CONS_MAGIC))
        .collect();
    for i in 0..iterations() {
        // Checkpoints of every version, whole or behind the harness's wrap byte.
        let ck = if rng.one_in(2) {
            random_checkpoint(&mut rng)
        } else {
            random_checkpoint_v3(&mut rng)
        };
        let data = match rng.below(3) {
            0 => ck,
            1 => {
                let mut v = vec![*rng.pick(&[0u8, 1, 2, 0x10, 0x11])];
                v.extend_from_slice(&ck[16..ck.len() - 8]);
                v
            }
            _ => {
                let mut v = vec![*rng.pick(&[3u8, 0x13])];
                v.extend(random_timers(&mut rng));
                v
            }
        };
        failures.run(
            "checkpoint_decoder",
            tidelog::fuzzing::checkpoint_decoder,
            &data,
            &format!("structured checkpoint #{i}"),
        );
        if !consumers.is_empty() {
            let mut v = vec![0u8];
            let base = rng.pick(&consumers).clone();
            v.extend(random_consumer_json(&mut rng, &base));
            failures.run(
                "consumer_state",
                tidelog::fuzzing::consumer_state,
                &v,
                &format!("structured consumer #{i}"),
            );
        }
        if i % 8 == 0 {
            let ops = random_ops(&mut rng);
            failures.run(
                "op_sequence",
                tidelog::fuzzing::op_sequence,
                &ops,
                &format!("structured operations #{i}"),
            );
        }
        if failures.too_many() {
            break;
        }
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Input generators.

fn mutate(rng: &mut Rng, d: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let n = d.len();
        match rng.below(10) {
            0 if n > 0 => {
                let at = rng.below(n);
                d[at] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let at = rng.below(n);
                d[at] = rng.byte();
            }
            2 if n > 0 => {
                let at = rng.below(n);
                d[at] = *rng.pick(&[0u8, 1, 2, 3, 4, 5, 6, 7, 0x7f, 0x80, 0xff]);
            }
            3 => {
                let keep = rng.below(n + 1);
                d.truncate(keep);
            }
            4 if n > 0 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(64)).min(n);
                d.drain(a..b);
            }
            5 => {
                let at = rng.below(n + 1);
                let k = 1 + rng.below(32);
                let ins = rng.bytes(k);
                d.splice(at..at, ins);
            }
            6 if n > 0 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(256)).min(n);
                let chunk = d[a..b].to_vec();
                let at = rng.below(n + 1);
                d.splice(at..at, chunk);
            }
            7 if n >= 8 => {
                let v = rng.interesting_u64();
                let at = rng.below(n - 7);
                if rng.one_in(2) {
                    d[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
                } else {
                    d[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            8 => {
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(512)).min(other.len());
                    let at = rng.below(n + 1);
                    d.splice(at..at, other[a..b].iter().copied());
                }
            }
            _ => {
                // Length field of a record at a random position set to a plausible value.
                if n >= 4 {
                    let at = rng.below(n - 3);
                    let v = (REC_MIN + rng.below(300)) as u32;
                    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

fn random_subject(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => rng.bytes_upto(24),
        2 => vec![b'x'; 4096],
        _ => format!("orders.{}.{}", rng.below(4), rng.below(100)).into_bytes(),
    }
}

fn random_record(rng: &mut Rng, seq: u64) -> Vec<u8> {
    let kind = match rng.below(10) {
        0..=4 => KIND_MSG,
        5 => rng.byte(),
        k => (k - 4) as u8, // 2..=5, and 6 below
    };
    let kind = if kind == 5 && rng.one_in(2) { 6 } else { kind };
    let flags = match rng.below(8) {
        0..=3 => 0,
        4 => FLAG_BATCH,
        5 => FLAG_ERASED,
        6 => FLAG_BATCH | FLAG_ERASED,
        _ => rng.byte(),
    };
    let ts = match rng.below(4) {
        0 => rng.next() as i64,
        1 => *rng.pick(&[0, -1, i64::MIN, i64::MAX]),
        _ => 1_700_000_000_000_000_000 + rng.below(1000) as i64,
    };
    let mut flags = flags;
    let (subject, headers, payload) = if kind == KIND_MSG {
        let s = random_subject(rng);
        let h = if rng.one_in(4) {
            rng.bytes_upto(40)
        } else {
            Vec::new()
        };
        let mut p = rng.bytes_upto(200);
        if rng.one_in(3) {
            // A message id and its length byte come after the payload (a length of 0 or one
            // reaching past the payload's start is damage the decoder must reject).
            flags |= FLAG_MSG_ID;
            let id = rng.bytes_upto(40);
            let len = if rng.one_in(8) {
                rng.byte()
            } else {
                id.len() as u8
            };
            p.extend_from_slice(&id);
            p.push(len);
        }
        if rng.one_in(3) {
            // The TTL field sits where the payload ends, before the checksum.
            flags |= FLAG_TTL | if rng.one_in(3) { FLAG_MARKER } else { 0 };
            let ttl = match rng.below(4) {
                0 => u32::MAX,
                1 => rng.interesting_u64() as u32,
                _ => 1 + rng.below(100_000) as u32,
            };
            p.extend_from_slice(&ttl.to_le_bytes());
        }
        (s, h, p)
    } else if kind == KIND_SKIP || rng.one_in(8) {
        // A skip's payload is the first skipped sequence.
        let from = match rng.below(3) {
            0 => seq.wrapping_sub(rng.below(2000) as u64),
            1 => rng.interesting_u64(),
            _ => seq.wrapping_add(rng.below(3) as u64),
        };
        let mut p = from.to_le_bytes().to_vec();
        if rng.one_in(8) {
            p.truncate(rng.below(8));
        }
        (Vec::new(), Vec::new(), p)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    encode_record(kind, flags, seq, ts, &subject, &headers, &payload)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A checkpoint's timers section (format.md): the "never" list, then (due second, list)
/// buckets; a list is its length, its first sequence and the gaps. Mostly well formed.
fn random_timers(rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::new();
    let list = |rng: &mut Rng, b: &mut Vec<u8>| {
        let n = rng.below(5) as u64;
        put_varint(
            b,
            if rng.one_in(8) {
                rng.interesting_u64()
            } else {
                n
            },
        );
        for i in 0..n {
            let gap = if i == 0 {
                rng.below(50) as u64
            } else {
                rng.below(4) as u64
            };
            put_varint(
                b,
                if rng.one_in(10) {
                    rng.interesting_u64()
                } else {
                    gap
                },
            );
        }
    };
    list(rng, &mut b);
    let buckets = rng.below(4) as u64;
    put_varint(&mut b, buckets);
    for _ in 0..buckets {
        let due = 1_700_000_000 + rng.below(1000) as u64;
        put_varint(
            &mut b,
            if rng.one_in(8) {
                rng.interesting_u64()
            } else {
                due
            },
        );
        list(rng, &mut b);
    }
    if rng.one_in(8) {
        b.push(rng.byte());
    }
    b
}

/// A run of valid records with plausible and implausible sequences, batches, damage, gaps
/// and torn tails.
fn random_log(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq: u64 = if rng.one_in(4) {
        rng.interesting_u64()
    } else {
        1
    };
    for _ in 0..rng.below(16) {
        seq = match rng.below(12) {
            0 => seq,
            1 => seq.wrapping_sub(1 + rng.below(5) as u64),
            2 => seq.wrapping_add(2 + rng.below(1100) as u64),
            3 => rng.interesting_u64(),
            _ => seq.wrapping_add(1),
        };
        let mut r = random_record(rng, seq);
        if rng.one_in(10) {
            // Damage that keeps the header (lost record) or hits it (resync).
            let at = rng.below(r.len());
            r[at] ^= 1 << rng.below(8);
        }
        out.extend_from_slice(&r);
        match rng.below(20) {
            0 => out.extend(vec![0u8; rng.below(64)]),
            1 => {
                let junk = rng.bytes_upto(64);
                out.extend(junk);
            }
            _ => {}
        }
    }
    if rng.one_in(4) && !out.is_empty() {
        let keep = rng.below(out.len());
        out.truncate(keep);
    }
    out
}

/// Seals `file` (a 0 byte + `body`, so the harness puts a 64-byte header in front) with a
/// trailer whose checksum is valid and whose table may or may not match the records.
fn add_trailer(rng: &mut Rng, file: &mut Vec<u8>, body: &[u8]) {
    let mut offsets = Vec::new();
    let mut off = 0usize;
    while off + REC_MIN <= body.len() {
        let len = u32_at(body, off) as usize;
        if len < REC_MIN || off + len > body.len() {
            break;
        }
        offsets.push((BLOCK_HEAD + off) as u32);
        off += len;
    }
    match rng.below(4) {
        0 => offsets = (0..rng.below(8)).map(|_| rng.next() as u32).collect(),
        1 => offsets.insert(rng.below(offsets.len() + 1), NO_RECORD),
        2 => offsets.truncate(rng.below(offsets.len() + 1)),
        _ => {}
    }
    let first_seq = if rng.one_in(3) {
        rng.interesting_u64()
    } else {
        1
    };
    let block_id = if rng.one_in(6) { 2 } else { FUZZ_BLOCK_ID };
    let trailer = encode_trailer(block_id, first_seq, file, &offsets);
    file.extend(trailer);
}

fn random_checkpoint(rng: &mut Rng) -> Vec<u8> {
    let nb = rng.below(4);
    let nr = rng.below(4);
    let mut b = Vec::new();
    let version: u16 = if rng.one_in(2) { 1 } else { 2 };
    b.extend_from_slice(CKPT_MAGIC);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    let mut fixed: Vec<u64> = (0..8).map(|_| rng.interesting_u64()).collect();
    let (cb, cr) = if rng.one_in(5) {
        (rng.interesting_u64(), rng.interesting_u64())
    } else {
        (nb as u64, nr as u64)
    };
    fixed.extend([cb, cr]);
    for v in fixed {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for _ in 0..nb * 5 {
        b.extend_from_slice(&rng.interesting_u64().to_le_bytes());
    }
    let mut s = rng.below(10) as u64;
    for _ in 0..nr {
        let (a, e) = if rng.one_in(4) {
            (rng.interesting_u64(), rng.interesting_u64())
        } else {
            let a = s + rng.below(5) as u64;
            (a, a + rng.below(5) as u64)
        };
        s = e.wrapping_add(1);
        b.extend_from_slice(&a.to_le_bytes());
        b.extend_from_slice(&e.to_le_bytes());
    }
    if version == 2 {
        b.extend(random_timers(rng));
    }
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

// ---------------------------------------------------------------------------------------------
// Seed corpus generator.

/// The files of stream "s" after running `ops` on a fresh store over [`MemVfs`], then closing.
fn stream_files(
    durability: Durability,
    block_size: u64,
    ops: impl FnOnce(&Stream),
) -> BTreeMap<String, Vec<u8>> {
    let mem = MemVfs::new();
    let opts = StoreOptions {
        manual_maintenance: true,
        clock: Some(Arc::new(ManualClock::new(1_700_000_000_000_000_000))),
        ..Default::default()
    };
    let store = Store::open_with_vfs("/db", Arc::new(mem.clone()), opts).unwrap();
    let cfg = StreamConfig::new("s")
        .durability(durability)
        .block_size(block_size)
        .allow_msg_ttl(true)
        .subject_delete_marker_ttl(std::time::Duration::from_secs(30));
    let s = store.create_stream(cfg).unwrap();
    ops(&s);
    s.check_invariants().unwrap();
    store.close().unwrap();
    drop(store);
    let dir = Path::new("/db/streams/s");
    let mut names = mem.list(dir).unwrap();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = read_file(&mem, &dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
}

fn mixed_ops(s: &Stream) {
    s.append("orders.eu.0", b"", b"").unwrap();
    for i in 1..=24usize {
        let h = format!("Msg-Id: {i}");
        let headers = if i % 5 == 0 { h.as_bytes() } else { b"" };
        let subj = format!("orders.{}.{i}", ["eu", "us", "ap"][i % 3]);
        s.append(&subj, headers, &payload(i * 7, i as u8)).unwrap();
    }
    let p = payload(20, 9);
    s.append_batch(&[
        NewMessage::new("batch.a", &p),
        NewMessage::new("batch.b", &p).with_headers(b"k: v"),
        NewMessage::new("batch.c", b"end"),
    ])
    .unwrap();
    s.remove(2).unwrap();
    s.remove(3).unwrap();
    s.erase(4).unwrap();
    s.skip(2).unwrap();
    let last = s.state().last_seq;
    s.append_raw(last + 5, 1_700_000_000_000_000_500, "raw.gap", b"", b"r")
        .unwrap();
    s.compact(6).unwrap();
    for i in 0..3u8 {
        s.append("tail.x", b"", &payload(30, i)).unwrap();
    }
    let last = s.state().last_seq;
    s.truncate(last - 1).unwrap();
    s.append("after.truncate", b"", b"t").unwrap();
}

fn scenarios() -> Vec<(&'static str, BTreeMap<String, Vec<u8>>)> {
    let mut out = Vec::new();
    // Every record kind and flag, in a few small blocks.
    out.push(("mixed", stream_files(Durability::None, 4096, mixed_ops)));
    // The same, then everything purged: the old blocks are gone.
    out.push((
        "purged",
        stream_files(Durability::None, 4096, |s| {
            mixed_ops(s);
            s.purge().unwrap();
            s.append("after.purge", b"", b"p").unwrap();
        }),
    ));
    // Sealed blocks with trailers and offset tables.
    out.push((
        "sealed",
        stream_files(Durability::None, 4096, |s| {
            for i in 0..70usize {
                s.append(&format!("a.b.{}", i % 5), b"", &payload(64, i as u8))
                    .unwrap();
            }
            s.remove(10).unwrap();
            s.remove(50).unwrap();
        }),
    ));
    // Atomic batches.
    out.push((
        "batch",
        stream_files(Durability::Always, 4096, |s| {
            let bodies: Vec<Vec<u8>> = (0..5).map(|i| payload(24, i)).collect();
            let msgs: Vec<NewMessage<'_>> = bodies
                .iter()
                .map(|b| NewMessage::new("b.one", b).with_headers(b"h: 1"))
                .collect();
            s.append_batch(&msgs).unwrap();
            s.append_batch(&[
                NewMessage::new("b.two", b"x"),
                NewMessage::new("b.two", b"y"),
            ])
            .unwrap();
            s.append("single", b"", b"z").unwrap();
        }),
    ));
    // One message in an active block.
    out.push((
        "tiny",
        stream_files(Durability::Always, 4096, |s| {
            s.append("x", b"", b"hello").unwrap();
        }),
    ));
    // Erased and removed messages.
    out.push((
        "erase",
        stream_files(Durability::Always, 4096, |s| {
            for i in 0..6u8 {
                s.append("e.f", b"h", &payload(16, i)).unwrap();
            }
            for seq in [1, 3, 5] {
                s.erase(seq).unwrap();
            }
            s.remove(2).unwrap();
        }),
    ));
    // A message larger than the block size, then a small one.
    out.push((
        "big",
        stream_files(Durability::None, 4096, |s| {
            s.append("big.one", b"", &payload(2500, 1)).unwrap();
            s.append("big.two", b"", &payload(5000, 2)).unwrap();
            s.append("small", b"", b"s").unwrap();
        }),
    ));
    // Caller-chosen sequences: a padded gap inside a block, a gap that starts a new block, skips.
    out.push((
        "gaps",
        stream_files(Durability::None, 4096, |s| {
            let ts = 1_700_000_000_000_000_000;
            s.append_raw(1, ts, "g.a", b"", b"1").unwrap();
            s.append_raw(2, ts, "g.a", b"", b"2").unwrap();
            s.append_raw(500, ts + 1, "g.b", b"", b"500").unwrap();
            s.append_raw(5000, ts + 2, "g.c", b"", b"5000").unwrap();
            s.skip(3000).unwrap();
            s.append("g.d", b"", b"after skip").unwrap();
            s.truncate(5000).unwrap();
        }),
    ));
    // TTLs: pending, "never", expired with markers, and a checkpoint holding the timers.
    out.push((
        "ttl",
        stream_files(Durability::Always, 4096, |s| {
            let now = 1_700_000_000_000_000_000i64;
            for i in 0..12u64 {
                let ttl = match i % 3 {
                    0 => Ttl::Secs(60 + i),
                    1 => Ttl::Never,
                    _ => Ttl::Secs(1),
                };
                let m = NewMessage::new(["t.a", "t.b", "t.c"][i as usize % 3], b"v").with_ttl(ttl);
                // The 1 s ones are stored a minute ago: the next pass expires them.
                let ts = if i % 3 == 2 {
                    now - 60_000_000_000
                } else {
                    now
                };
                s.append_raw_msg(i + 1, ts, &m).unwrap();
            }
            s.checkpoint().unwrap();
            s.expire_now().unwrap();
            s.append_msg(&NewMessage::new("t.d", b"after").with_ttl(Ttl::Secs(5)))
                .unwrap();
        }),
    ));
    out
}

fn block_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<(u64, &Vec<u8>)> {
    files
        .iter()
        .filter_map(|(n, b)| Some((n.strip_suffix(".blk")?.parse().ok()?, b)))
        .collect()
}

fn kind_name(k: u8) -> &'static str {
    ["?", "msg", "skip", "delete", "erase", "purge", "truncate"]
        .get(k as usize)
        .copied()
        .unwrap_or("?")
}

fn flip(b: &[u8], at: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    v[at] ^= 0x10;
    v
}

fn normalize_checkpoint(ck: &[u8]) -> Vec<u8> {
    let mut c = ck.to_vec();
    if c.len() >= 104 && &c[..8] == CKPT_MAGIC {
        put_u64(&mut c, 16, FUZZ_STREAM_ID);
        let n = c.len() - 8;
        let sum = xxh3_64(&c[..n]);
        put_u64(&mut c, n, sum);
    }
    c
}

#[test]
#[ignore = "writes fuzz/corpus; run with TIDELOG_WRITE_CORPUS=1 and --ignored"]
fn write_corpus() {
    // `1` regenerates every corpus; a comma-separated list of targets only those.
    let Ok(which) = std::env::var("TIDELOG_WRITE_CORPUS") else {
        eprintln!("set TIDELOG_WRITE_CORPUS=1 (or =<target>,...) to regenerate fuzz/corpus");
        return;
    };
    let wanted = |target: &str| which == "1" || which.split(',').any(|t| t == target);
    let scen = scenarios();
    let files_of = |name: &str| &scen.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut rd: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut br: BTreeMap<String, Vec<u8>> = BTreeMap::new();

    // Every record the engine wrote, checked against the encoder the fuzz tests use.
    let mut by_class: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (_, files) in &scen {
        for (_, file) in block_files(files) {
            for (_, r) in records_of(file) {
                assert!(record_is_valid(r), "engine record fails checks: {}", hex(r));
                let (sl, hl) = (
                    u16::from_le_bytes([r[6], r[7]]) as usize,
                    u32_at(r, 24) as usize,
                );
                let (s, rest) = r[REC_HEAD..r.len() - 8].split_at(sl);
                let (h, p) = rest.split_at(hl);
                let again = encode_record(r[4], r[5], u64_at(r, 8), u64_at(r, 16) as i64, s, h, p);
                assert_eq!(again, r, "test encoder disagrees with the engine");
                let mut class = kind_name(r[4]).to_string();
                if r[5] & FLAG_BATCH != 0 {
                    class += "-batch";
                }
                if r[5] & FLAG_ERASED != 0 {
                    class += "-erased";
                }
                if hl > 0 && r[5] == 0 {
                    class += "-headers";
                }
                if r.len() > 2048 {
                    class += "-big";
                }
                by_class.entry(class).or_insert_with(|| r.to_vec());
            }
        }
    }
    for class in [
        "msg",
        "msg-batch",
        "msg-erased",
        "msg-headers",
        "skip",
        "delete",
        "erase",
        "purge",
        "truncate",
    ] {
        assert!(by_class.contains_key(class), "no {class} record generated");
    }

    // --- record_decoder ---
    for (class, r) in &by_class {
        rd.insert(format!("rec-{class}.bin"), r.clone());
    }
    let files = files_of("mixed");
    let blocks = block_files(files);
    let (_, first) = blocks[0];
    let recs = records_of(first);
    let msg = &by_class["msg-headers"];
    rd.insert("rec-torn.bin".into(), msg[..msg.len() - 5].to_vec());
    rd.insert("rec-header-only.bin".into(), msg[..REC_HEAD].to_vec());
    rd.insert("rec-bad-header.bin".into(), flip(msg, 9));
    rd.insert("rec-bad-body.bin".into(), flip(msg, REC_HEAD + 2));
    let mut big_len = msg.clone();
    big_len[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_record(&mut big_len);
    rd.insert("rec-len-too-big.bin".into(), big_len);
    let mut long_subject = msg.clone();
    long_subject[6..8].copy_from_slice(&0xffffu16.to_le_bytes());
    reseal_record(&mut long_subject);
    rd.insert("rec-subject-past-end.bin".into(), long_subject);
    let mut bad_kind = msg.clone();
    bad_kind[4] = 9;
    reseal_record(&mut bad_kind);
    rd.insert("rec-unknown-kind.bin".into(), bad_kind);
    let (a, _) = recs[0];
    let (b, rb) = recs[recs.len().min(10) - 1];
    let run = &first[a..b + rb.len()];
    rd.insert("run-records.bin".into(), run.to_vec());
    let (o3, _) = recs[3];
    rd.insert("run-bad-header-mid.bin".into(), flip(run, o3 - a + 3));
    rd.insert(
        "run-bad-body-mid.bin".into(),
        flip(run, o3 - a + REC_HEAD + 1),
    );
    let mut tail = run.to_vec();
    tail.extend_from_slice(&[0u8; 40]);
    rd.insert("run-zero-tail.bin".into(), tail);
    rd.insert("zeros-64.bin".into(), vec![0u8; 64]);
    rd.insert("empty.bin".into(), Vec::new());
    rd.insert("one-byte.bin".into(), vec![1]);
    for (name, files) in &scen {
        if let Some(ck) = files.get("checkpoint") {
            if matches!(*name, "mixed" | "sealed" | "gaps" | "erase" | "ttl") {
                rd.insert(format!("checkpoint-{name}.bin"), normalize_checkpoint(ck));
            }
        }
    }
    let ck = normalize_checkpoint(&files["checkpoint"]);
    rd.insert("checkpoint-bad-sum.bin".into(), flip(&ck, ck.len() - 3));
    let sealed: Vec<(u64, &Vec<u8>)> = block_files(files_of("sealed"));
    let sealed_file = rehome(sealed[0].1);
    assert!(
        trailer_body_end(&sealed_file).is_some(),
        "block 1 not sealed"
    );
    rd.insert("block-sealed.bin".into(), sealed_file.clone());
    rd.insert(
        "block-active.bin".into(),
        rehome(block_files(files_of("tiny"))[0].1),
    );
    let n = sealed_file.len();
    rd.insert(
        "block-sealed-bad-trailer.bin".into(),
        flip(&sealed_file, n - 20),
    );

    // --- block_recovery ---
    for (name, files) in &scen {
        for (id, file) in block_files(files) {
            let f = rehome(file);
            br.insert(format!("file-{name}-blk{id}.bin"), f.clone());
            let mut body = vec![0u8];
            body.extend_from_slice(&f[BLOCK_HEAD..]);
            br.insert(format!("body-{name}-blk{id}.bin"), body);
        }
    }
    let f1 = rehome(first);
    let body = |f: &[u8], end: usize| {
        let mut v = vec![0u8];
        v.extend_from_slice(&f[BLOCK_HEAD..end]);
        v
    };
    let (o5, r5) = recs[5];
    br.insert("body-torn-record.bin".into(), body(&f1, o5 + r5.len() / 2));
    let (_, rl) = recs[recs.len() - 1];
    let end = recs[recs.len() - 1].0 + rl.len();
    let mut bad_head = body(&f1, end);
    bad_head[o3 - BLOCK_HEAD + 1 + 5] ^= 0x01;
    br.insert("body-bad-record-header.bin".into(), bad_head);
    let mut bad_body = body(&f1, end);
    bad_body[o3 - BLOCK_HEAD + 1 + REC_HEAD] ^= 0x01;
    br.insert("body-bad-record-body.bin".into(), bad_body);
    let mut junk = body(&f1, end);
    junk.extend_from_slice(b"\x13\x37garbage after the last record\xff\xfe");
    br.insert("body-garbage-tail.bin".into(), junk);
    let batch_file = rehome(block_files(files_of("batch"))[0].1);
    let brecs = records_of(&batch_file);
    let (o2, r2) = brecs[2];
    br.insert(
        "body-incomplete-batch.bin".into(),
        body(&batch_file, o2 + r2.len()),
    );
    br.insert("file-bad-block-header.bin".into(), flip(&f1, 30));
    br.insert(
        "file-bad-trailer.bin".into(),
        flip(&sealed_file, sealed_file.len() - 20),
    );
    let mut wrong_id = sealed[0].1.clone();
    wrong_id[16..32].copy_from_slice(&rehome(sealed[0].1)[16..32]);
    let sum = xxh3_64(&wrong_id[..56]);
    put_u64(&mut wrong_id, 56, sum);
    put_u64(&mut wrong_id, n - FOOTER + 8, 99);
    reseal_trailer(&mut wrong_id);
    br.insert("file-trailer-other-block.bin".into(), wrong_id);
    for class in ["skip", "delete", "erase", "purge", "truncate", "msg-erased"] {
        let mut v = vec![0u8];
        v.extend_from_slice(&by_class[class]);
        br.insert(format!("one-{class}.bin"), v);
    }
    br.insert("zero-byte.bin".into(), vec![0]);
    br.insert("zeros-256.bin".into(), vec![0u8; 256]);
    br.insert("empty.bin".into(), Vec::new());

    let ck = checkpoint_seeds(&scen);
    let cs = consumer_seeds();
    let ops = op_seeds();
    for (target, seeds) in [
        ("record_decoder", &rd),
        ("block_recovery", &br),
        ("checkpoint_decoder", &ck),
        ("consumer_state", &cs),
        ("op_sequence", &ops),
    ] {
        if !wanted(target) {
            continue;
        }
        let dir = corpus_root().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        // Replace what this generator wrote before; keep what a fuzzer added (its files are
        // named by the SHA-1 of their contents) and the minimized reproducers of fixed bugs
        // (`regress-*`).
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let from_fuzzer = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !from_fuzzer && !name.starts_with("regress-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let mut total = 0;
        for (name, data) in seeds.iter() {
            std::fs::write(dir.join(name), data).unwrap();
            total += data.len();
        }
        eprintln!("fuzz/corpus/{target}: {} seeds, {total} bytes", seeds.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs of the checkpoint, consumer and operation-sequence targets.

/// A version 3 checkpoint (varint delete ranges, timers): mostly well formed, with the
/// harness's stream id or another.
fn random_checkpoint_v3(rng: &mut Rng) -> Vec<u8> {
    let nb = rng.below(4);
    let nr = rng.below(5);
    let mut b = Vec::new();
    b.extend_from_slice(CKPT_MAGIC);
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    let small = |rng: &mut Rng, max: usize| {
        if rng.one_in(8) {
            rng.interesting_u64()
        } else {
            rng.below(max) as u64
        }
    };
    let last = small(rng, 200);
    let fixed = [
        if rng.one_in(2) {
            FUZZ_STREAM_ID
        } else {
            rng.next()
        },
        last,
        1_700_000_000_000_000_000 + rng.below(1000) as u64,
        small(rng, (last as usize).saturating_add(2)),
        small(rng, 20_000),
        small(rng, 5),
        small(rng, 5000),
        small(rng, 8),
        if rng.one_in(6) {
            rng.interesting_u64()
        } else {
            nb as u64
        },
        if rng.one_in(6) {
            rng.interesting_u64()
        } else {
            nr as u64
        },
    ];
    for v in fixed {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let mut first = 1;
    for id in 1..=nb as u64 {
        let slots = small(rng, 80);
        for v in [
            id,
            first,
            slots,
            small(rng, (slots as usize).saturating_add(1)),
            small(rng, 8000),
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        first = first.wrapping_add(slots);
    }
    for _ in 0..nr {
        put_varint(&mut b, small(rng, 30));
        put_varint(&mut b, small(rng, 10));
    }
    b.extend(random_timers(rng));
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// A consumer state derived from one the engine wrote, with fields set to plausible,
/// boundary and inconsistent values.
fn random_consumer_json(rng: &mut Rng, file: &[u8]) -> Vec<u8> {
    use serde_json::{json, Value};
    let Ok(mut v) = serde_json::from_slice::<Value>(&file[24..file.len() - 8]) else {
        return Vec::new();
    };
    let num = |rng: &mut Rng| -> u64 {
        match rng.below(4) {
            0 => rng.interesting_u64(),
            _ => rng.below(30) as u64,
        }
    };
    for _ in 0..1 + rng.below(4) {
        match rng.below(12) {
            0 => v["next"] = json!(num(rng)),
            1 => v["start"] = json!(num(rng)),
            2 => v["floor"] = json!(num(rng)),
            3 => v["floor_dseq"] = json!(num(rng)),
            4 => v["delivered"] = json!([num(rng), num(rng)]),
            5 => {
                let n = rng.below(4);
                let p: Vec<Value> = (0..n)
                    .map(|_| {
                        json!([
                            1 + rng.below(30),
                            1 + rng.below(3),
                            1 + rng.below(10),
                            1_700_000_000_000_000_000i64 + rng.below(100) as i64 * 1_000_000_000,
                            rng.one_in(2)
                        ])
                    })
                    .collect();
                v["pending"] = Value::Array(p);
            }
            6 => {
                let mut s: Vec<u64> = (0..rng.below(4))
                    .map(|_| 1 + rng.below(30) as u64)
                    .collect();
                s.sort_unstable();
                s.dedup();
                v["initial"] = json!(s);
            }
            7 => v["max_delivered"] = json!([[1 + rng.below(30), 1 + rng.below(10)]]),
            8 => {
                v["config"]["ack"] = json!(*rng.pick(&["none", "all", "explicit"]));
                v["config"]["max_deliver"] = Value::Null;
                v["config"]["backoff"] = json!([]);
            }
            9 => {
                v["config"]["deliver"] = match rng.below(5) {
                    0 => json!("all"),
                    1 => json!("new"),
                    2 => json!("last_per_subject"),
                    3 => json!({ "by_start_seq": num(rng) }),
                    _ => json!({ "by_start_time": rng.next() as i64 }),
                }
            }
            10 => {
                v["config"]["filters"] = json!(*rng.pick(&[
                    &[][..],
                    &["a.*"][..],
                    &["b", "c.>"][..],
                    &[">"][..],
                    &["a.x", "a.*"][..],
                ]))
            }
            _ => {
                v["config"]["max_ack_pending"] = json!(*rng.pick(&[1u64, 2, 3, 1000, 1 << 20]));
                v["config"]["ack_wait"] =
                    json!({ "secs": rng.below(3), "nanos": rng.below(3) * 600_000_000 });
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `op_sequence` inputs in the encoding `tidelog::fuzzing::parse_ops` reads.
struct Ops(Vec<u8>);

#[allow(dead_code)]
impl Ops {
    fn always() -> Ops {
        Ops(vec![0])
    }
    fn none() -> Ops {
        Ops(vec![3])
    }
    /// 8 KiB blocks instead of 4 KiB.
    fn big_blocks(mut self) -> Ops {
        self.0[0] |= 4;
        self
    }
    fn raw(mut self, b: &[u8]) -> Ops {
        self.0.extend_from_slice(b);
        self
    }
    /// Subject 0..4 (a.x, a.y, b, c.d.e); size class 0..8 (0, 1, 9, 40, 120, 600, 1500, 5000
    /// bytes); TTL class 0..8 (3: 1 s, 4: 2 s, 5: 30 s, 6: never; others none).
    fn msg(&self, subject: u8, size: u8, ttl: u8) -> [u8; 2] {
        [subject | size << 2, (self.0.len() as u8) << 3 | ttl]
    }
    fn append(self, subject: u8, size: u8, ttl: u8) -> Ops {
        let m = self.msg(subject, size, ttl);
        self.raw(&[0]).raw(&m)
    }
    fn appends(mut self, n: usize) -> Ops {
        for i in 0..n {
            self = self.append((i % 4) as u8, (i % 6) as u8, 0);
        }
        self
    }
    fn batch(mut self, msgs: &[(u8, u8, u8)]) -> Ops {
        self = self.raw(&[6, msgs.len() as u8 - 1]);
        for &(s, z, t) in msgs {
            let m = self.msg(s, z, t);
            self = self.raw(&m);
        }
        self
    }
    /// The `k`-th possibly live message (modulo their number).
    fn remove(self, k: u8) -> Ops {
        self.raw(&[8, k << 3])
    }
    fn erase(self, k: u8) -> Ops {
        self.raw(&[9, k << 3])
    }
    /// A sequence at or just below the end.
    fn remove_near_end(self, back: u8) -> Ops {
        self.raw(&[8, back << 3 | 7])
    }
    fn purge(self) -> Ops {
        self.raw(&[10])
    }
    fn compact(self, k: u8) -> Ops {
        self.raw(&[11, k << 3])
    }
    fn skip(self, n: u8) -> Ops {
        self.raw(&[12, n - 1])
    }
    /// Step 0..8: 1 ms, 250 ms, 999 ms, 1 s, 2 s, 5 s, 31 s, 61 s.
    fn advance(self, step: u8) -> Ops {
        self.raw(&[13, step])
    }
    fn expire(self) -> Ops {
        self.raw(&[15])
    }
    /// 0 sync, 1 checkpoint, 2 maintenance tick, 3 reclaim.
    fn upkeep(self, k: u8) -> Ops {
        self.raw(&[16, k])
    }
    fn restart(self) -> Ops {
        self.raw(&[17])
    }
    fn crash(self, power: bool) -> Ops {
        self.raw(&[18, u8::from(power)])
    }
    /// Fault 0 EIO, 1 ENOSPC, 2 crash, 3 torn write, at the `after`-th mutating I/O.
    fn arm(self, after: u8, fault: u8, power: bool) -> Ops {
        self.raw(&[19, after, fault | u8::from(power) << 2])
    }
    fn fail_syncs(self, from: u8) -> Ops {
        self.raw(&[20, from << 2])
    }
    fn full(self, on: bool) -> Ops {
        self.raw(&[20, if on { 1 } else { 2 }])
    }
    fn clear_faults(self) -> Ops {
        self.raw(&[20, 3])
    }
    fn consumer(self, c: u8, cfg: u8) -> Ops {
        self.raw(&[21, c, cfg])
    }
    fn fetch(self, c: u8, n: u8) -> Ops {
        self.raw(&[22, c | (n - 1) << 1])
    }
    /// Kind 0 ack, 1 nak, 2 term, 3 in_progress, of the `k`-th message of the last fetch.
    fn ack(self, c: u8, kind: u8, k: u8) -> Ops {
        self.raw(&[23, c | kind << 1, k << 3])
    }
    fn save(self, c: u8) -> Ops {
        self.raw(&[24, c])
    }
    fn delete(self, c: u8) -> Ops {
        self.raw(&[24, c | 2])
    }
}

fn random_ops(rng: &mut Rng) -> Vec<u8> {
    let mut o = if rng.one_in(4) {
        Ops::none()
    } else {
        Ops::always()
    };
    if rng.one_in(2) {
        o = o.big_blocks();
    }
    let m = |rng: &mut Rng| (rng.below(4) as u8, rng.below(8) as u8, rng.below(8) as u8);
    for _ in 0..rng.below(80) {
        o = match rng.below(20) {
            0..=5 => {
                let (s, z, t) = m(rng);
                o.append(s, z, t)
            }
            6 => {
                let msgs: Vec<_> = (0..1 + rng.below(4)).map(|_| m(rng)).collect();
                o.batch(&msgs)
            }
            7 if rng.one_in(2) => o.remove(rng.byte()),
            7 => o.erase(rng.byte()),
            8 if rng.one_in(3) => o.purge(),
            8 => o.compact(rng.byte()),
            9 => o.skip(1 + rng.below(40) as u8),
            10 => o.advance(rng.below(8) as u8),
            11 => o.expire(),
            12 => o.upkeep(rng.below(4) as u8),
            13 if rng.one_in(2) => o.restart(),
            13 => o.crash(rng.one_in(2)),
            14 => o.arm(rng.below(40) as u8, rng.below(4) as u8, rng.one_in(2)),
            15 => match rng.below(4) {
                0 => o.fail_syncs(rng.below(4) as u8),
                1 => o.full(true),
                2 => o.full(false),
                _ => o.clear_faults(),
            },
            16 => o.consumer(rng.below(2) as u8, rng.byte()),
            17 => o.fetch(rng.below(2) as u8, 1 + rng.below(8) as u8),
            18 => o.ack(rng.below(2) as u8, rng.below(4) as u8, rng.byte()),
            _ if rng.one_in(3) => o.delete(rng.below(2) as u8),
            _ => o.save(rng.below(2) as u8),
        };
    }
    o.0
}

// ---------------------------------------------------------------------------------------------
// Seeds of the checkpoint, consumer and operation-sequence targets.

/// A version 3 checkpoint's parts.
struct CheckpointParts<'a> {
    /// Bytes 16..96.
    fixed: &'a [u8],
    blocks: &'a [u8],
    ranges: Vec<(u64, u64)>,
    timers: &'a [u8],
}

fn checkpoint_parts(ck: &[u8]) -> CheckpointParts<'_> {
    let nb = u64_at(ck, 80) as usize;
    let nr = u64_at(ck, 88) as usize;
    let blocks_end = 96 + 40 * nb;
    let mut at = blocks_end;
    let mut get = || {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let x = ck[at];
            at += 1;
            v |= u64::from(x & 0x7f) << shift;
            shift += 7;
            if x & 0x80 == 0 {
                return v;
            }
        }
    };
    let mut ranges = Vec::new();
    let mut prev = 0;
    for _ in 0..nr {
        let s = prev + get();
        let e = s + get();
        ranges.push((s, e));
        prev = e;
    }
    CheckpointParts {
        fixed: &ck[16..96],
        blocks: &ck[96..blocks_end],
        ranges,
        timers: &ck[at..ck.len() - 8],
    }
}

fn checkpoint_seeds(
    scen: &[(&'static str, BTreeMap<String, Vec<u8>>)],
) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let with_mode = |mode: u8, rest: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(rest);
        v
    };
    for (name, files) in scen {
        // Every stream gets a random id: the seeds all carry the one the harness maps to its
        // own stream's, so regenerating them changes nothing.
        let files: BTreeMap<&str, Vec<u8>> = ["checkpoint", "checkpoint.prev", "lease"]
            .into_iter()
            .filter_map(|f| Some((f, normalize_stream_id(files.get(f)?))))
            .collect();
        for (file, b) in &files {
            out.insert(format!("file-{name}-{file}.bin"), b.clone());
        }
        if let Some(lease) = files.get("lease") {
            out.insert(
                format!("wrap-lease-{name}.bin"),
                with_mode(4, &lease[8..24]),
            );
        }
        let Some(ck) = files.get("checkpoint") else {
            continue;
        };
        assert_eq!(u16::from_le_bytes([ck[8], ck[9]]), 3, "checkpoint version");
        let CheckpointParts {
            fixed,
            blocks,
            ranges,
            timers,
        } = checkpoint_parts(ck);
        out.insert(
            format!("wrap-v3-{name}.bin"),
            with_mode(0, &ck[16..ck.len() - 8]),
        );
        out.insert(
            format!("wrap-v3-keep-prev-{name}.bin"),
            with_mode(0x10, &ck[16..ck.len() - 8]),
        );
        out.insert(format!("wrap-timers-{name}.bin"), with_mode(3, timers));
        // The same state as versions 2 (fixed 16-byte ranges) and 1 (no timers).
        let mut v2 = [fixed, blocks].concat();
        for (s, e) in &ranges {
            v2.extend_from_slice(&s.to_le_bytes());
            v2.extend_from_slice(&e.to_le_bytes());
        }
        let v1 = v2.clone();
        v2.extend_from_slice(timers);
        out.insert(format!("wrap-v2-{name}.bin"), with_mode(1, &v2));
        out.insert(format!("wrap-v1-{name}.bin"), with_mode(2, &v1));
    }
    let mixed = &normalize_stream_id(&scen[0].1["checkpoint"]);
    out.insert("file-bad-sum.bin".into(), flip(mixed, mixed.len() - 3));
    out.insert("file-bad-version.bin".into(), flip(mixed, 8));
    out.insert("file-cut.bin".into(), mixed[..mixed.len() / 2].to_vec());
    for (mode, name) in [
        (0u8, "v3"),
        (1, "v2"),
        (2, "v1"),
        (3, "timers"),
        (4, "lease"),
    ] {
        out.insert(format!("mode-{name}-empty.bin"), vec![mode]);
    }
    out.insert("empty.bin".into(), Vec::new());
    for (name, data) in tidelog::fuzzing::checkpoint_seeds() {
        out.insert(name, data);
    }
    out
}

/// A checkpoint or lease file with `tidelog::fuzzing::SEED_STREAM_ID` for its stream id.
fn normalize_stream_id(file: &[u8]) -> Vec<u8> {
    let mut f = file.to_vec();
    let at = match &f[..f.len().min(8)] {
        m if m == CKPT_MAGIC && f.len() >= 104 => 16,
        m if m == LEASE_MAGIC && f.len() == 32 => 8,
        _ => return f,
    };
    put_u64(&mut f, at, tidelog::fuzzing::SEED_STREAM_ID);
    let n = f.len() - 8;
    let sum = xxh3_64(&f[..n]);
    put_u64(&mut f, n, sum);
    f
}

/// A consumer file with its pending and max-delivered lists in sequence order (the engine
/// writes them in hash order), so regenerating the seeds changes nothing.
fn canonical_consumer_file(f: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&f[24..f.len() - 8]).unwrap();
    for list in ["pending", "max_delivered"] {
        if let Some(a) = v[list].as_array_mut() {
            a.sort_by_key(|e| e[0].as_u64());
        }
    }
    let json = serde_json::to_vec(&v).unwrap();
    let mut b = f[..16].to_vec();
    b.extend_from_slice(&(json.len() as u64).to_le_bytes());
    b.extend_from_slice(&json);
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// The consumer files of a stream after fetches, acks, naks, terms, redeliveries past
/// max_deliver, last-per-subject starters and start times.
fn consumer_files() -> BTreeMap<String, Vec<u8>> {
    let mem = MemVfs::new();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000_000));
    let opts = StoreOptions {
        manual_maintenance: true,
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").durability(Durability::Always))
        .unwrap();
    let subjects = ["a.x", "a.y", "b", "c.d.e"];
    for i in 0..20u8 {
        s.append(subjects[usize::from(i % 4)], b"", &[i; 10])
            .unwrap();
    }
    let c = s.create_consumer(ConsumerConfig::new("explicit")).unwrap();
    let d = c.fetch(6, 0).unwrap();
    c.ack(d[0].message.seq).unwrap();
    c.ack(d[2].message.seq).unwrap();
    c.nak(d[3].message.seq, Some(Duration::from_secs(5)))
        .unwrap();
    c.term(d[4].message.seq).unwrap();
    let c = s
        .create_consumer(
            ConsumerConfig::new("by-seq-all")
                .deliver(DeliverPolicy::ByStartSeq(4))
                .ack(AckPolicy::All)
                .filters(["a.*"]),
        )
        .unwrap();
    let d = c.fetch(4, 0).unwrap();
    c.ack(d[1].message.seq).unwrap();
    let c = s
        .create_consumer(
            ConsumerConfig::new("last-per-subject")
                .deliver(DeliverPolicy::LastPerSubject)
                .filters(["a.>", "b"]),
        )
        .unwrap();
    c.fetch(2, 0).unwrap();
    let c = s
        .create_consumer(
            ConsumerConfig::new("max-deliver")
                .max_deliver(2)
                .backoff(vec![Duration::from_secs(1)])
                .ack_wait(Duration::from_secs(1))
                .max_ack_pending(3),
        )
        .unwrap();
    for _ in 0..3 {
        c.fetch(3, 0).unwrap();
        clock.advance_ns(2_000_000_000);
    }
    c.state().unwrap();
    let c = s
        .create_consumer(
            ConsumerConfig::new("no-ack")
                .ack(AckPolicy::None)
                .deliver(DeliverPolicy::New),
        )
        .unwrap();
    s.append("b", b"", b"late").unwrap();
    c.fetch(5, 0).unwrap();
    let c = s
        .create_consumer(
            ConsumerConfig::new("by-time")
                .deliver(DeliverPolicy::ByStartTime(1_700_000_000_000_000_000))
                .max_ack_pending(5)
                .filters(["c.>"]),
        )
        .unwrap();
    c.fetch(1, 0).unwrap();
    s.remove(2).unwrap();
    drop(c);
    drop(s);
    store.close().unwrap();
    let dir = Path::new("/c/streams/s");
    let mut names = mem.list(dir).unwrap();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| {
            let name = n.strip_prefix("consumer.")?.to_owned();
            let file = read_file(&mem, &dir.join(&n)).unwrap();
            Some((name, canonical_consumer_file(&file)))
        })
        .collect()
}

fn consumer_seeds() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let files = consumer_files();
    assert!(files.len() >= 6, "consumer files: {:?}", files.keys());
    let json_of = |f: &[u8]| f[24..f.len() - 8].to_vec();
    let wrap = |json: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(json);
        v
    };
    for (name, f) in &files {
        out.insert(format!("file-{name}.bin"), f.clone());
        out.insert(format!("json-{name}.bin"), wrap(&json_of(f)));
    }
    let explicit = String::from_utf8(json_of(&files["explicit"])).unwrap();
    // States the engine would not write but must survive (or, for the ones the harness
    // cannot restore yet, decode).
    let edits: [(&str, &str, &str); 8] = [
        ("next-far", "\"next\":7", "\"next\":4000000000"),
        ("next-zero", "\"next\":7", "\"next\":0"),
        ("floor-above", "\"floor\":0", "\"floor\":99"),
        ("renamed", "\"name\":\"explicit\"", "\"name\":\"other\""),
        ("filter", "\"filters\":[]", "\"filters\":[\"c.>\"]"),
        ("ack-none", "\"ack\":\"explicit\"", "\"ack\":\"none\""),
        ("pending-zero-dseq", "[6,1,6,", "[6,1,0,"),
        ("bad-json", "\"pending\":[", "\"pending\":{"),
    ];
    for (name, from, to) in edits {
        assert!(explicit.contains(from), "{name}: {from} not in {explicit}");
        out.insert(
            format!("json-edit-{name}.bin"),
            wrap(explicit.replacen(from, to, 1).as_bytes()),
        );
    }
    let f = &files["explicit"];
    out.insert("file-bad-sum.bin".into(), flip(f, f.len() - 2));
    out.insert("file-bad-length.bin".into(), flip(f, 16));
    out.insert("file-cut.bin".into(), f[..f.len() / 2].to_vec());
    out.insert("json-empty.bin".into(), vec![0]);
    out.insert("empty.bin".into(), Vec::new());
    out
}

/// Hand-made operation sequences: every operation, restarts, both kinds of crash, every
/// fault, consumers across restarts.
fn op_seeds() -> BTreeMap<String, Vec<u8>> {
    let seeds: Vec<(&str, Ops)> = vec![
        (
            "appends-restart",
            Ops::always().appends(12).restart().appends(3),
        ),
        (
            "appends-crash",
            Ops::always().appends(12).crash(false).appends(3),
        ),
        (
            "appends-power-loss",
            Ops::always().appends(12).crash(true).appends(3),
        ),
        (
            "batches-removes-purge",
            Ops::always()
                .batch(&[(0, 2, 0), (1, 3, 0), (2, 1, 0)])
                .appends(5)
                .remove(1)
                .erase(3)
                .remove_near_end(2)
                .restart()
                .purge()
                .appends(2)
                .crash(true),
        ),
        (
            "compact-skip",
            Ops::always()
                .appends(10)
                .compact(4)
                .skip(20)
                .appends(2)
                .crash(false)
                .skip(3)
                .restart(),
        ),
        (
            "ttl-expiry",
            Ops::always()
                .append(0, 2, 3)
                .append(1, 2, 4)
                .append(2, 2, 5)
                .append(3, 2, 6)
                .batch(&[(0, 1, 3), (1, 1, 0)])
                .advance(4)
                .expire()
                .advance(6)
                .restart()
                .advance(7)
                .crash(true),
        ),
        (
            "consumers",
            Ops::always()
                .appends(8)
                .consumer(0, 0)
                .consumer(1, 4)
                .fetch(0, 4)
                .ack(0, 0, 0)
                .ack(0, 1, 1)
                .ack(0, 2, 2)
                .ack(0, 3, 3)
                .fetch(1, 8)
                .ack(1, 0, 2)
                .save(1)
                .restart()
                .fetch(0, 8)
                .appends(3)
                .advance(7)
                .fetch(0, 8)
                .crash(true)
                .fetch(1, 3)
                .delete(0)
                .restart()
                .consumer(0, 0x40),
        ),
        (
            "consumer-policies",
            Ops::always()
                .appends(10)
                .consumer(0, 9)
                .consumer(1, 27)
                .fetch(0, 3)
                .fetch(1, 3)
                .ack(1, 0, 2)
                .purge()
                .appends(3)
                .fetch(0, 8)
                .fetch(1, 8)
                .consumer(0, 45)
                .delete(1)
                .consumer(1, 0x81)
                .fetch(1, 8)
                .advance(3)
                .fetch(1, 8)
                .restart(),
        ),
        (
            "eio-appends",
            Ops::always()
                .appends(4)
                .arm(0, 0, false)
                .appends(3)
                .arm(2, 0, false)
                .batch(&[(0, 3, 0), (1, 3, 0)])
                .appends(2)
                .restart(),
        ),
        (
            "enospc-then-erase",
            Ops::always()
                .appends(6)
                .arm(0, 1, false)
                .append(0, 4, 0)
                .erase(1)
                .appends(2)
                .erase(2)
                .crash(false),
        ),
        (
            "crash-fault-process",
            Ops::always()
                .appends(5)
                .arm(3, 2, false)
                .appends(5)
                .appends(2),
        ),
        (
            "crash-fault-power",
            Ops::always()
                .appends(5)
                .arm(1, 2, true)
                .batch(&[(0, 5, 0), (1, 5, 0), (2, 5, 0)])
                .appends(2),
        ),
        (
            "torn-write",
            Ops::always()
                .appends(5)
                .arm(0, 3, true)
                .batch(&[(0, 6, 0), (3, 6, 0)])
                .appends(3)
                .arm(1, 3, false)
                .appends(2),
        ),
        (
            "fault-in-close",
            Ops::always()
                .appends(5)
                .consumer(0, 0)
                .fetch(0, 3)
                .ack(0, 0, 1)
                .arm(1, 0, false)
                .restart()
                .appends(2),
        ),
        (
            "failing-syncs",
            Ops::always()
                .appends(3)
                .fail_syncs(0)
                .appends(3)
                .remove(0)
                .clear_faults()
                .appends(2)
                .restart(),
        ),
        (
            "full-disk",
            Ops::always()
                .appends(3)
                .full(true)
                .appends(2)
                .purge()
                .full(false)
                .advance(3)
                .appends(2)
                .upkeep(2)
                .restart(),
        ),
        (
            "upkeep",
            Ops::always()
                .big_blocks()
                .appends(40)
                .upkeep(0)
                .upkeep(1)
                .remove(3)
                .remove(4)
                .compact(10)
                .upkeep(3)
                .upkeep(2)
                .crash(true)
                .appends(4),
        ),
        (
            "none-appends-crash",
            Ops::none().appends(12).crash(false).appends(3).crash(true),
        ),
        (
            "none-faults",
            Ops::none()
                .appends(6)
                .remove(2)
                .arm(1, 0, false)
                .appends(3)
                .upkeep(0)
                .arm(0, 2, true)
                .appends(3)
                .restart(),
        ),
        (
            "none-consumers-ttl",
            Ops::none()
                .append(0, 3, 3)
                .append(2, 3, 0)
                .consumer(0, 1)
                .fetch(0, 2)
                .ack(0, 0, 0)
                .advance(4)
                .restart()
                .fetch(0, 2)
                .expire()
                .crash(true),
        ),
    ];
    let mut out = BTreeMap::new();
    for (name, ops) in seeds {
        out.insert(format!("ops-{name}.bin"), ops.0);
    }
    let mut rng = Rng::new(0x6f70_7365_7173);
    for i in 0..8 {
        out.insert(format!("ops-random-{i}.bin"), random_ops(&mut rng));
    }
    out.insert("empty.bin".into(), Vec::new());
    out
}
