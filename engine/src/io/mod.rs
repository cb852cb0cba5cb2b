//! The file-system boundary. Everything the engine does to storage goes through [`Vfs`] and
//! [`VFile`], so tests can swap in an in-memory file system ([`MemVfs`]) or one that injects
//! faults and crash points ([`FaultyVfs`]).

mod fault;
mod mem;
mod os;
mod overlay;
#[cfg(target_os = "linux")]
mod uring;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fault::{Fault, FaultPlan, FaultyVfs};
pub use mem::{CrashKind, MemVfs};
pub use os::{IoBackendChoice, OsVfs};
pub use overlay::OverlayVfs;

/// Which write path a store is using.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoBackend {
    /// Linked write + fdatasync submissions through io_uring.
    IoUring,
    /// `pwrite(2)` + `fdatasync(2)`.
    Pwrite,
    /// No files: an in-memory file system (memory streams and tests).
    Memory,
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::IoUring => "io_uring",
            IoBackend::Pwrite => "pwrite",
            IoBackend::Memory => "memory",
        })
    }
}

/// An open file. Offsets are explicit, so writers never share a cursor.
pub trait VFile: Send + Sync {
    fn size(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `off` (short files are an `UnexpectedEof` error).
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at `off`.
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Makes previously written data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Writes every `(bytes, offset)` pair, then makes them durable. The io_uring back end
    /// submits them as one linked chain so a group commit costs one submission.
    fn write_and_sync(&self, parts: &[(&[u8], u64)]) -> io::Result<()> {
        for (buf, off) in parts {
            self.write_all_at(buf, *off)?;
        }
        self.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// A read-only view of the whole file as it is now. Only called for files that are never
    /// truncated or appended to again (sealed blocks), so an OS mapping cannot fault.
    fn map(&self) -> io::Result<Mapping>;
}

/// A read-only view of a sealed file.
pub enum Mapping {
    Mmap(memmap2::Mmap),
    Shared(Arc<Vec<u8>>),
    Empty,
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapping::Mmap(m) => m,
            Mapping::Shared(v) => v,
            Mapping::Empty => &[],
        }
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Must exist.
    Existing,
    /// Created if missing, kept if present.
    CreateOrOpen,
    /// Must not exist.
    CreateNew,
}

/// A file system.
pub trait Vfs: Send + Sync {
    fn backend(&self) -> IoBackend;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// File and directory names directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive, non-blocking lock on `path` for the lifetime of the returned guard.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>>;
    /// Size of the file system holding `dir` (its capacity, not its free space).
    fn fs_size(&self, dir: &Path) -> io::Result<u64>;
    /// Bytes the file at `path` occupies on disk.
    fn disk_bytes(&self, path: &Path) -> io::Result<u64> {
        Ok(crate::budget::on_disk(
            self.open(path, OpenMode::Existing)?.size()?,
        ))
    }
    /// Opens an existing file only to read it (a read-only store never writes below, and
    /// may sit on a read-only mount).
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        self.open(path, OpenMode::Existing)
    }
    /// A lock that keeps out whoever holds `lock` but may be shared with other readers; it
    /// creates no file.
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.lock(path)
    }
    /// False when removing records frees no space (an overlay keeps changes in memory):
    /// compaction would only copy blocks into memory.
    fn reclaims_space(&self) -> bool {
        true
    }
}

/// Reads a whole file.
pub fn read_file(vfs: &dyn Vfs, path: &Path) -> io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenMode::Existing)?;
    let len = usize::try_from(f.size()?).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new contents:
/// write a temporary file, fsync it, rename it over `path`, fsync the directory.
pub fn replace_file(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    if vfs.exists(&tmp) {
        vfs.remove_file(&tmp)?;
    }
    let f = vfs.open(&tmp, OpenMode::CreateNew)?;
    f.write_and_sync(&[(bytes, 0)])?;
    drop(f);
    vfs.rename(&tmp, path)?;
    vfs.sync_dir(parent(path))
}

/// The temporary name used by [`replace_file`]; recovery removes leftovers.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// True when `e` means the device or quota is full.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error())
        || e.kind() == io::ErrorKind::StorageFull
}
