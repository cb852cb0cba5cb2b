//! io_uring write path: a group commit is one submission of linked writes and an fdatasync.
//!
//! Invariants that make the `unsafe` pushes below sound:
//!
//! * Every call holds the ring's mutex from its first push to its return, and never returns
//!   while an entry it pushed is still in flight in the kernel: on every path, errors included,
//!   it keeps reaping until each entry the kernel consumed has posted its completion. So the
//!   caller's buffers outlive every write that reads them.
//! * An entry that was pushed but never consumed by the kernel (because submission kept
//!   failing) would be submitted by the next `io_uring_enter`, long after its buffer is gone.
//!   If a call has to give up with such entries still queued, it throws the ring away (a ring
//!   that was never told about them never reads them) and builds a new one.
//! * Completions are tagged with a per-batch generation, so completions that are not ours
//!   (there should be none) are drained and ignored instead of being counted.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, EnterFlags, IoUring};
use parking_lot::Mutex;

/// Submission queue size. The completion queue is twice as large, so a batch can never
/// overflow it.
const ENTRIES: u32 = 64;
/// Entries in one batch: the writes plus, in the last batch, the fdatasync.
const BATCH_ENTRIES: usize = ENTRIES as usize;
/// Writes in one batch, leaving room for the fdatasync.
const BATCH_WRITES: usize = BATCH_ENTRIES - 1;
/// Low bits of `user_data` hold the entry's index in its batch, high bits the batch's
/// generation.
const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Linux caps one write at `MAX_RW_COUNT` bytes; longer parts are written in pieces (a write
/// of the capped length that completes counts as short, and the rest is resubmitted).
const MAX_WRITE: usize = 0x7fff_f000;
/// EAGAIN/EBUSY retries, with backoff, while none of our entries is in the kernel; after that
/// the call gives up with the error.
const MAX_STALLS: u32 = 1000;

const ECANCELED: i32 = rustix::io::Errno::CANCELED.raw_os_error();
const EINTR: i32 = rustix::io::Errno::INTR.raw_os_error();
const EAGAIN: i32 = rustix::io::Errno::AGAIN.raw_os_error();
const EBUSY: i32 = rustix::io::Errno::BUSY.raw_os_error();

pub(crate) struct Ring {
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` after a ring had to be thrown away and a new one could not be created.
    ring: Option<IoUring>,
    /// Bumped for every batch; tags the batch's completions.
    generation: u64,
}

impl Ring {
    /// Creates a ring and round-trips a no-op through it; seccomp profiles that forbid
    /// io_uring fail here (ENOSYS/EPERM), not on the first real write.
    pub(crate) fn probe() -> io::Result<Ring> {
        let mut ring = IoUring::new(ENTRIES)?;
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: a no-op references no memory, and if anything below fails the ring is
        // dropped before it could matter.
        unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("sq full"))?;
        let cqe = loop {
            if let Some(cqe) = ring.completion().next() {
                break cqe;
            }
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(EINTR) => {}
                Err(e) => return Err(e),
            }
        };
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(Ring {
            inner: Mutex::new(Inner {
                ring: Some(ring),
                generation: 0,
            }),
        })
    }

    /// Writes every part at its offset, then fdatasyncs `file`. Ok only if every byte was
    /// written and the sync completed after the last write.
    ///
    /// Writes are submitted in batches that fit the ring, each a chain of linked writes; only
    /// the last batch carries the fdatasync, linked behind its writes so it runs only if they
    /// all succeeded. A short write (legal on a regular file) is resubmitted for its remainder,
    /// followed again by every later part (so overlapping parts still land in order), before
    /// the sync is attempted again.
    pub(crate) fn write_and_sync(&self, file: &File, parts: &[(&[u8], u64)]) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        let mut inner = self.inner.lock();
        let mut pending: Vec<(&[u8], u64)> = parts
            .iter()
            .filter(|(b, _)| !b.is_empty())
            .copied()
            .collect();
        let mut interruptions = 0;
        loop {
            let take = pending.len().min(BATCH_WRITES);
            let sync = take == pending.len();
            let out = inner.run_batch(fd, &pending[..take], sync)?;
            if sync && out.synced && out.leftover.is_empty() {
                return Ok(());
            }
            interruptions = if out.interrupted {
                interruptions + 1
            } else {
                0
            };
            if interruptions > MAX_INTERRUPTIONS {
                return Err(io::Error::from_raw_os_error(ECANCELED));
            }
            let mut next = out.leftover;
            next.extend_from_slice(&pending[take..]);
            pending = next;
        }
    }
}

impl Inner {
    /// Submits `parts` as one linked chain (plus a trailing fdatasync when `sync`) and waits
    /// for every entry the kernel accepted to complete, whatever happens.
    fn run_batch<'a>(
        &mut self,
        fd: types::Fd,
        parts: &[(&'a [u8], u64)],
        sync: bool,
    ) -> io::Result<Outcome<'a>> {
        let total = parts.len() + usize::from(sync);
        if total == 0 || total > BATCH_ENTRIES {
            return Err(io::Error::other("io_uring: bad batch size"));
        }
        self.generation = self.generation.wrapping_add(1);
        let tag = (self.generation << INDEX_BITS) & !INDEX_MASK;

        let mut entries = Vec::with_capacity(total);
        for (i, (buf, off)) in parts.iter().enumerate() {
            let len = buf.len().min(MAX_WRITE);
            // Cannot fail: MAX_WRITE < u32::MAX.
            let len = u32::try_from(len).map_err(|_| io::Error::other("write too large"))?;
            entries.push(
                opcode::Write::new(fd, buf.as_ptr(), len)
                    .offset(*off)
                    .build()
                    .user_data(tag | i as u64),
            );
        }
        if sync {
            entries.push(
                opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(tag | parts.len() as u64),
            );
        }
        let last = entries.len().saturating_sub(1);
        for e in &mut entries[..last] {
            *e = e.clone().flags(squeue::Flags::IO_LINK);
        }

        let ring = self.ring_for_batch()?;
        // SAFETY: each write reads `buf.len().min(MAX_WRITE)` bytes from a slice the caller
        // borrows for the whole call, and the fsync references no memory. The entries stay
        // valid until the kernel is done with them: `reap_all` below does not return while
        // any entry the kernel consumed is still in flight (on error paths too), and entries
        // it never consumed are discarded with the ring before we return. `push_multiple`
        // pushes all entries or none, so there is no partially pushed chain to clean up.
        let pushed = unsafe { ring.submission().push_multiple(&entries) };
        if pushed.is_err() {
            // Nothing was pushed, so nothing references the caller's buffers. The queue is
            // empty at the start of every batch, so this means the ring is in a bad state.
            self.discard_ring();
            return Err(io::Error::other("io_uring: submission queue full"));
        }

        let mut results: Vec<Option<i32>> = vec![None; total];
        let reaped = reap_all(ring, tag, &mut results);
        if let Err(e) = reaped {
            // Some entries were never consumed by the kernel: they must never be submitted.
            self.discard_ring();
            return Err(e);
        }
        settle(parts, sync, &results)
    }

    /// The ring, with stale completions drained. A ring whose submission queue still holds
    /// entries (which could reference freed buffers) is replaced.
    fn ring_for_batch(&mut self) -> io::Result<&mut IoUring> {
        let usable = match &mut self.ring {
            Some(r) => r.submission().is_empty(),
            None => false,
        };
        if !usable {
            // Dropping a ring discards unconsumed entries without the kernel reading them.
            self.ring = None;
            self.ring = Some(IoUring::new(ENTRIES)?);
        }
        let ring = self
            .ring
            .as_mut()
            .ok_or_else(|| io::Error::other("io_uring: no ring"))?;
        // Completions of earlier calls (there should be none: no call returns with entries in
        // flight) must not be counted as ours; they would also make waits return early.
        ring.completion().for_each(drop);
        Ok(ring)
    }

    fn discard_ring(&mut self) {
        self.ring = None;
        if let Ok(r) = IoUring::new(ENTRIES) {
            self.ring = Some(r);
        }
    }
}

/// Submits what is queued and reaps completions tagged `tag` into `results` until every entry
/// the kernel consumed has completed. Returns Ok when everything pushed was consumed and has
/// completed; returns the submission error when the kernel kept refusing some entries, and
/// then only after every consumed entry has completed (the unconsumed ones are still queued).
fn reap_all(ring: &mut IoUring, tag: u64, results: &mut [Option<i32>]) -> io::Result<()> {
    let pushed = results.len();
    let mut done = 0usize;
    let mut submit_err: Option<io::Error> = None;
    let mut stalls = 0u32;
    loop {
        done += reap(ring, tag, results);
        // The queue was empty before this batch was pushed, so everything that left it was
        // consumed by the kernel, and each consumed entry posts exactly one completion.
        let queued = ring.submission().len();
        let in_flight = pushed.saturating_sub(queued).saturating_sub(done);
        if in_flight == 0 && (queued == 0 || submit_err.is_some()) {
            return match submit_err {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        let submitting = queued > 0 && submit_err.is_none();
        let r = if submitting {
            // Everything still queued plus everything in flight will complete (unless the
            // kernel stops submitting early, in which case it returns without waiting).
            ring.submit_and_wait(in_flight + queued)
        } else {
            wait_only(ring, in_flight)
        };
        let e = match r {
            Ok(_) => {
                stalls = 0;
                continue;
            }
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(EINTR) => {}
            // Out of request memory, or completions backed up: reap (top of the loop), back
            // off and retry. Give up only when none of our entries is in the kernel.
            Some(EAGAIN) | Some(EBUSY) => {
                stalls = stalls.saturating_add(1);
                if stalls > MAX_STALLS && in_flight == 0 {
                    submit_err = Some(e);
                } else {
                    backoff(stalls);
                }
            }
            _ if submitting => {
                // The kernel refuses to take the rest; stop submitting, but wait for what it
                // already has.
                submit_err = Some(e);
            }
            _ => {
                // Cannot even wait. Entries in flight still read the caller's buffers, so
                // returning is not an option; keep trying.
                stalls = stalls.saturating_add(1);
                backoff(stalls);
            }
        }
    }
}

/// Drains the completion queue; records completions tagged `tag` and drops all others.
/// Returns how many new completions of ours were recorded.
fn reap(ring: &mut IoUring, tag: u64, results: &mut [Option<i32>]) -> usize {
    let mut n = 0;
    for cqe in ring.completion() {
        let ud = cqe.user_data();
        if ud & !INDEX_MASK != tag {
            continue;
        }
        let slot = usize::try_from(ud & INDEX_MASK)
            .ok()
            .and_then(|i| results.get_mut(i));
        if let Some(slot @ None) = slot {
            *slot = Some(cqe.result());
            n += 1;
        }
    }
    n
}

/// Waits for `want` completions without submitting anything.
fn wait_only(ring: &mut IoUring, want: usize) -> io::Result<usize> {
    let want = u32::try_from(want).unwrap_or(u32::MAX);
    // SAFETY: submits nothing (`to_submit` is 0) and passes no argument pointer; the call only
    // waits for completions, which are read through the completion queue afterwards.
    unsafe {
        ring.submitter()
            .enter::<()>(0, want, EnterFlags::GETEVENTS.bits(), None)
    }
}

fn backoff(stalls: u32) {
    if stalls <= 3 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50 << stalls.min(8)));
    }
}

/// What is left to do after a batch without errors.
#[derive(Debug, PartialEq, Eq)]
struct Outcome<'a> {
    /// Parts (or remainders of parts) that still have to be written, in order.
    leftover: Vec<(&'a [u8], u64)>,
    /// The batch carried an fdatasync and it completed.
    synced: bool,
    /// Entries were cancelled with no failed link to explain it (the kernel cancels linked
    /// requests when the submitting thread takes a signal, as Go's runtime sends them all the
    /// time): nothing failed, so the cancelled work is simply submitted again.
    interrupted: bool,
}

/// Interprets a batch's completions (`results[i]` for `parts[i]`, then the sync if `sync`).
///
/// Errors: the first real error in chain order, preferred over the ECANCELED of entries that
/// were cancelled because an earlier link failed; a write that wrote nothing; an entry with no
/// completion. A cancellation with no failed link to explain it is not an error: the cancelled
/// writes are left over and the sync is not counted (`interrupted`).
///
/// Otherwise the leftover starts at the first write that did not complete in full (short or
/// cancelled behind a short write): its remainder, then every later part of the batch (some
/// may have been written already, but rewriting them keeps overlapping parts in order).
fn settle<'a>(
    parts: &[(&'a [u8], u64)],
    sync: bool,
    results: &[Option<i32>],
) -> io::Result<Outcome<'a>> {
    let mut first_err: Option<io::Error> = None;
    let mut cancelled = false;
    let mut short = false;
    let mut first_incomplete: Option<(usize, usize)> = None; // (part index, bytes written)
    let mut missing = false;
    for (i, (buf, _)) in parts.iter().enumerate() {
        match results.get(i).copied().flatten() {
            None => missing = true,
            Some(ECANCELED_NEG) => {
                cancelled = true;
                first_incomplete.get_or_insert((i, 0));
            }
            Some(r) if r < 0 => {
                first_err.get_or_insert_with(|| io::Error::from_raw_os_error(-r));
            }
            Some(r) => {
                let written = usize::try_from(r).unwrap_or(0);
                if written >= buf.len() {
                    continue;
                }
                if written == 0 {
                    first_err.get_or_insert_with(|| {
                        io::Error::new(io::ErrorKind::WriteZero, "io_uring write wrote nothing")
                    });
                } else {
                    short = true;
                    first_incomplete.get_or_insert((i, written));
                }
            }
        }
    }
    let mut synced = false;
    if sync {
        match results.get(parts.len()).copied().flatten() {
            None => missing = true,
            Some(ECANCELED_NEG) => cancelled = true,
            Some(r) if r < 0 => {
                first_err.get_or_insert_with(|| io::Error::from_raw_os_error(-r));
            }
            Some(_) => synced = true,
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if missing {
        return Err(io::Error::other("io_uring: entry did not complete"));
    }
    let interrupted = cancelled && !short;
    let mut leftover = Vec::new();
    if let Some((i, written)) = first_incomplete {
        if let Some(&(buf, off)) = parts.get(i) {
            let rest = buf.get(written..).unwrap_or(&[]);
            let off = off.saturating_add(written as u64);
            leftover.push((rest, off));
        }
        leftover.extend_from_slice(parts.get(i + 1..).unwrap_or(&[]));
    }
    Ok(Outcome {
        leftover,
        synced,
        interrupted,
    })
}

const ECANCELED_NEG: i32 = -ECANCELED;
/// Batches in a row cancelled without cause before `write_and_sync` gives up.
const MAX_INTERRUPTIONS: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn ring() -> Option<Ring> {
        match Ring::probe() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("io_uring unavailable ({e}); skipping");
                None
            }
        }
    }

    fn read_all(f: &File) -> Vec<u8> {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0).expect("read back");
        buf
    }

    /// Builds `n` parts of distinct contents laid end to end, and the expected file.
    fn contiguous(n: usize, seed: u8) -> (Vec<Vec<u8>>, Vec<u64>, Vec<u8>) {
        let mut bufs = Vec::new();
        let mut offs = Vec::new();
        let mut expect = Vec::new();
        for i in 0..n {
            let len = 1 + (i * 37) % 300;
            let b: Vec<u8> = (0..len)
                .map(|j| (i as u8).wrapping_mul(31) ^ (j as u8) ^ seed)
                .collect();
            offs.push(expect.len() as u64);
            expect.extend_from_slice(&b);
            bufs.push(b);
        }
        (bufs, offs, expect)
    }

    fn as_parts<'a>(bufs: &'a [Vec<u8>], offs: &[u64]) -> Vec<(&'a [u8], u64)> {
        bufs.iter()
            .zip(offs)
            .map(|(b, o)| (b.as_slice(), *o))
            .collect()
    }

    #[test]
    fn writes_parts_and_reads_back() {
        let Some(ring) = ring() else { return };
        let f = tempfile::tempfile().expect("tempfile");
        let a = b"hello ".to_vec();
        let b = b"world".to_vec();
        let c = vec![7u8; 10];
        let parts: Vec<(&[u8], u64)> = vec![(&a, 0), (&b, 6), (&[], 3), (&c, 20)];
        ring.write_and_sync(&f, &parts).expect("write_and_sync");
        let got = read_all(&f);
        let mut expect = b"hello world".to_vec();
        expect.resize(20, 0);
        expect.extend_from_slice(&c);
        assert_eq!(got, expect);
        // Nothing to write: only the sync.
        ring.write_and_sync(&f, &[]).expect("sync only");
        // Later parts overwrite earlier ones in order.
        ring.write_and_sync(&f, &[(b"xx", 0), (b"y", 1)])
            .expect("overlap");
        assert_eq!(&read_all(&f)[..3], b"xyl");
    }

    #[test]
    fn many_parts_in_one_call() {
        let Some(ring) = ring() else { return };
        let f = tempfile::tempfile().expect("tempfile");
        let n = ENTRIES as usize * 3 + 5;
        let (bufs, offs, expect) = contiguous(n, 0);
        ring.write_and_sync(&f, &as_parts(&bufs, &offs))
            .expect("write_and_sync");
        assert_eq!(read_all(&f), expect);
        // Exactly one batch of writes, and one write more.
        for n in [BATCH_WRITES, BATCH_WRITES + 1, BATCH_ENTRIES] {
            let f = tempfile::tempfile().expect("tempfile");
            let (bufs, offs, expect) = contiguous(n, 3);
            ring.write_and_sync(&f, &as_parts(&bufs, &offs))
                .expect("write_and_sync");
            assert_eq!(read_all(&f), expect, "{n} parts");
        }
    }

    #[test]
    fn concurrent_calls_on_different_files() {
        let Some(ring) = ring() else { return };
        let ring = Arc::new(ring);
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    let f = tempfile::tempfile().expect("tempfile");
                    let mut expect = Vec::new();
                    for round in 0..50u8 {
                        let (bufs, offs, exp) = contiguous(10 + round as usize, t ^ round);
                        ring.write_and_sync(&f, &as_parts(&bufs, &offs))
                            .expect("write_and_sync");
                        expect = exp;
                    }
                    let got = read_all(&f);
                    assert_eq!(got, expect, "thread {t}");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn error_on_read_only_file_does_not_leak_into_next_call() {
        let Some(ring) = ring() else { return };
        let mut tmp = tempfile::NamedTempFile::new().expect("tempfile");
        tmp.write_all(b"original").expect("write");
        let ro = File::open(tmp.path()).expect("open read-only");
        let (bufs, offs, _) = contiguous(ENTRIES as usize + 3, 1);
        let err = ring
            .write_and_sync(&ro, &as_parts(&bufs, &offs))
            .expect_err("write to a read-only fd must fail");
        // The cause, not the ECANCELED of the entries linked behind it.
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error()),
            "{err}"
        );
        assert_eq!(read_all(&ro), b"original");

        for round in 0..3u8 {
            let good = tempfile::tempfile().expect("tempfile");
            let (bufs, offs, expect) = contiguous(5, round);
            ring.write_and_sync(&good, &as_parts(&bufs, &offs))
                .expect("good file after a failure");
            assert_eq!(read_all(&good), expect);
            let e = ring.write_and_sync(&ro, &[(b"x", 0)]);
            assert!(e.is_err());
        }
    }

    #[test]
    fn stale_foreign_completions_are_ignored() {
        let Some(ring) = ring() else { return };
        // Leave a completion that is not part of any call in the queue, as a buggy earlier
        // call would have.
        {
            let mut inner = ring.inner.lock();
            let r = inner.ring.as_mut().expect("ring");
            let nop = opcode::Nop::new().build().user_data(1);
            // SAFETY: a no-op references no memory.
            unsafe { r.submission().push(&nop) }.expect("push");
            r.submit_and_wait(1).expect("submit");
        }
        let f = tempfile::tempfile().expect("tempfile");
        ring.write_and_sync(&f, &[(b"abc", 0)]).expect("write");
        assert_eq!(read_all(&f), b"abc");
    }

    fn ok(n: usize) -> Option<i32> {
        Some(n as i32)
    }

    #[test]
    fn settle_all_complete() {
        let (a, b) = (&b"aaaa"[..], &b"bb"[..]);
        let parts = [(a, 0), (b, 4)];
        let out = settle(&parts, true, &[ok(4), ok(2), ok(0)]).expect("ok");
        assert_eq!(
            out,
            Outcome {
                leftover: vec![],
                synced: true,
                interrupted: false
            }
        );
        let out = settle(&parts, false, &[ok(4), ok(2)]).expect("ok");
        assert!(out.leftover.is_empty() && !out.synced);
    }

    #[test]
    fn settle_short_write_resubmits_remainder_and_later_parts() {
        let (a, b, c) = (&b"aaaa"[..], &b"bb"[..], &b"c"[..]);
        let parts = [(a, 0), (b, 4), (c, 6)];
        let cancel = Some(-ECANCELED);
        // Modern kernels: a short write fails the link, cancelling the rest.
        let out = settle(&parts, true, &[ok(4), ok(1), cancel, cancel]).expect("ok");
        assert_eq!(
            out,
            Outcome {
                leftover: vec![(&b"b"[..], 5), (c, 6)],
                synced: false,
                interrupted: false
            }
        );
        // Kernels that keep the chain going: the sync ran, but must run again.
        let out = settle(&parts, true, &[ok(3), ok(2), ok(1), ok(0)]).expect("ok");
        assert_eq!(
            out,
            Outcome {
                leftover: vec![(&b"a"[..], 3), (b, 4), (c, 6)],
                synced: true,
                interrupted: false
            }
        );
    }

    #[test]
    fn settle_prefers_the_real_error() {
        let (a, b) = (&b"aaaa"[..], &b"bb"[..]);
        let parts = [(a, 0), (b, 4)];
        let cancel = Some(-ECANCELED);
        let e = settle(&parts, true, &[Some(-5), cancel, cancel]).expect_err("err");
        assert_eq!(e.raw_os_error(), Some(5));
        let e = settle(&parts, true, &[ok(4), ok(2), Some(-28)]).expect_err("err");
        assert_eq!(e.raw_os_error(), Some(28));
        // A cancellation with nothing to explain it (a signal) is retried, not an error:
        // the sync did not run, and writes cancelled with it are done again.
        let out = settle(&parts, true, &[ok(4), ok(2), cancel]).expect("ok");
        assert!(out.interrupted && !out.synced && out.leftover.is_empty());
        let out = settle(&parts, true, &[ok(4), cancel, cancel]).expect("ok");
        assert!(out.interrupted && !out.synced);
        assert_eq!(out.leftover, vec![(b, 4)]);
        // A write that writes nothing cannot make progress.
        let e = settle(&parts, true, &[ok(0), cancel, cancel]).expect_err("err");
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        // A missing completion.
        assert!(settle(&parts, true, &[ok(4), ok(2), None]).is_err());
    }

    /// Signals interrupt `io_uring_enter` while it waits (EINTR); every call must still
    /// complete and leave the right bytes behind.
    #[test]
    fn interrupted_waits_are_retried() {
        let Some(ring) = ring() else { return };
        extern "C" fn on_signal(_: libc::c_int) {}
        // SAFETY: installs a handler that does nothing, without SA_RESTART, for SIGUSR1,
        // which nothing else in the test binary uses; only the worker below is signalled.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        let ring = Arc::new(ring);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = {
            let ring = Arc::clone(&ring);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                tx.send(unsafe { libc::pthread_self() }).expect("send");
                let mut round = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    let f = tempfile::tempfile().expect("tempfile");
                    let (bufs, offs, expect) = contiguous(150, round);
                    ring.write_and_sync(&f, &as_parts(&bufs, &offs))
                        .expect("write_and_sync");
                    assert_eq!(read_all(&f), expect);
                    round = round.wrapping_add(1);
                }
            })
        };
        let thread = rx.recv().expect("worker thread");
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            // SAFETY: the worker thread is alive until `stop` is set and it is joined.
            unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
            std::thread::sleep(Duration::from_micros(50));
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("worker");
    }
}
