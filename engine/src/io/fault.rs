//! Fault injection: wraps any [`Vfs`] and makes a chosen mutating operation fail, tear, or
//! become the instant the process "dies" (every later operation fails too).

use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{IoBackend, Mapping, OpenMode, VFile, Vfs};

/// What happens at the chosen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This operation fails with EIO; later ones succeed.
    Eio,
    /// This operation fails with ENOSPC; later ones succeed.
    NoSpace,
    /// The process dies here: this and every later operation fail.
    Crash,
    /// A write stores only its first half, then the process dies.
    TornWrite,
}

/// Which mutating operation (counted from 0) gets which fault.
#[derive(Debug, Default)]
pub struct FaultPlan {
    ops: u64,
    at: Option<(u64, Fault)>,
    /// Only `fdatasync` calls fail (with EIO) from this sync count on.
    fail_syncs_from: Option<u64>,
    syncs: u64,
    crashed: bool,
    /// The device is full: every write stores its first half, then fails with ENOSPC, until
    /// `set_full(false)` (space freed).
    full: bool,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn at(op: u64, fault: Fault) -> Self {
        FaultPlan {
            at: Some((op, fault)),
            ..Self::default()
        }
    }
    pub fn fail_syncs_from(n: u64) -> Self {
        FaultPlan {
            fail_syncs_from: Some(n),
            ..Self::default()
        }
    }
    /// Mutating operations seen so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }
    pub fn crashed(&self) -> bool {
        self.crashed
    }
    /// Fills (or frees) the device: see `full`.
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }
    pub fn is_full(&self) -> bool {
        self.full
    }
}

enum Verdict {
    Go,
    Fail(io::Error),
    Tear,
    /// Store the first half, then fail with this error (a short write on a full device).
    Short(io::Error),
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error())
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
}

impl FaultPlan {
    fn next(&mut self, is_write: bool, is_sync: bool) -> Verdict {
        if self.crashed {
            return Verdict::Fail(io::Error::other("injected crash: process is dead"));
        }
        let n = self.ops;
        self.ops += 1;
        if self.full && is_write {
            return Verdict::Short(enospc());
        }
        if is_sync {
            let s = self.syncs;
            self.syncs += 1;
            if self.fail_syncs_from.is_some_and(|from| s >= from) {
                return Verdict::Fail(eio());
            }
        }
        match self.at {
            Some((at, fault)) if at == n => match fault {
                Fault::Eio => Verdict::Fail(eio()),
                Fault::NoSpace => Verdict::Fail(enospc()),
                Fault::Crash => {
                    self.crashed = true;
                    Verdict::Fail(io::Error::other("injected crash"))
                }
                Fault::TornWrite if is_write => {
                    self.crashed = true;
                    Verdict::Tear
                }
                Fault::TornWrite => {
                    self.crashed = true;
                    Verdict::Fail(io::Error::other("injected crash"))
                }
            },
            _ => Verdict::Go,
        }
    }
}

/// A [`Vfs`] that injects the faults of a shared [`FaultPlan`].
#[derive(Clone)]
pub struct FaultyVfs {
    inner: Arc<dyn Vfs>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyVfs {
    pub fn new(inner: Arc<dyn Vfs>, plan: FaultPlan) -> Self {
        FaultyVfs {
            inner,
            plan: Arc::new(Mutex::new(plan)),
        }
    }
    /// The plan, to inspect or change while the store runs.
    pub fn plan(&self) -> &Arc<Mutex<FaultPlan>> {
        &self.plan
    }
    fn check(&self, is_write: bool, is_sync: bool) -> io::Result<()> {
        match self.plan.lock().next(is_write, is_sync) {
            Verdict::Go => Ok(()),
            Verdict::Fail(e) => Err(e),
            Verdict::Tear => Err(io::Error::other("torn write")),
            Verdict::Short(e) => Err(e),
        }
    }
}

struct FaultyFile {
    inner: Arc<dyn VFile>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyFile {
    fn write_one(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let verdict = self.plan.lock().next(true, false);
        match verdict {
            Verdict::Go => self.inner.write_all_at(buf, off),
            Verdict::Fail(e) => Err(e),
            Verdict::Tear => {
                self.inner.write_all_at(&buf[..buf.len() / 2], off)?;
                Err(io::Error::other("injected torn write"))
            }
            Verdict::Short(e) => {
                self.inner.write_all_at(&buf[..buf.len() / 2], off)?;
                Err(e)
            }
        }
    }
    fn sync_one(&self) -> io::Result<()> {
        let verdict = self.plan.lock().next(false, true);
        match verdict {
            Verdict::Go => self.inner.sync_data(),
            Verdict::Fail(e) => Err(e),
            Verdict::Tear => Err(eio()),
            Verdict::Short(e) => Err(e),
        }
    }
}

impl VFile for FaultyFile {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, off)
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.write_one(buf, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sync_one()
    }
    fn write_and_sync(&self, parts: &[(&[u8], u64)]) -> io::Result<()> {
        for (buf, off) in parts {
            self.write_one(buf, *off)?;
        }
        self.sync_one()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let verdict = self.plan.lock().next(false, false);
        match verdict {
            Verdict::Go => self.inner.set_len(len),
            Verdict::Fail(e) => Err(e),
            Verdict::Tear => Err(eio()),
            Verdict::Short(e) => Err(e),
        }
    }
    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }
}

impl Vfs for FaultyVfs {
    fn backend(&self) -> IoBackend {
        self.inner.backend()
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        if mode != OpenMode::Existing {
            self.check(false, false)?;
        }
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultyFile {
            inner,
            plan: self.plan.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(false, false)?;
        self.inner.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(false, false)?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(false, false)?;
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(false, false)?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(false, true)?;
        self.inner.sync_dir(dir)
    }
    fn fs_size(&self, dir: &Path) -> io::Result<u64> {
        self.inner.fs_size(dir)
    }
    fn disk_bytes(&self, path: &Path) -> io::Result<u64> {
        self.inner.disk_bytes(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.inner.lock(path)
    }
}
