//! An in-memory file system: the storage of memory streams, and the disk that crash tests
//! "pull the plug" on. It remembers what was made durable (fdatasync for contents, directory
//! fsync for names) so a power loss can be simulated exactly.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{IoBackend, Mapping, OpenMode, VFile, Vfs};

#[derive(Default)]
struct MemFile {
    data: RwLock<Arc<Vec<u8>>>,
    synced: Mutex<Arc<Vec<u8>>>,
}

#[derive(Default)]
struct Fs {
    files: HashMap<PathBuf, Arc<MemFile>>,
    dirs: HashSet<PathBuf>,
    /// Directory entries as of the last `sync_dir` of their parent.
    durable: HashMap<PathBuf, Arc<MemFile>>,
    locks: HashSet<PathBuf>,
}

/// What survives a simulated crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The process died (SIGKILL): everything handed to the OS survives.
    Process,
    /// The machine lost power: only synced contents and synced directory entries survive.
    PowerLoss,
}

/// The capacity an in-memory file system reports (a store's default budget derives from it).
pub const MEM_FS_SIZE: u64 = 1 << 40;

/// An in-memory [`Vfs`].
#[derive(Clone, Default)]
pub struct MemVfs {
    fs: Arc<Mutex<Fs>>,
}

impl MemVfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The disk as a restarted process would find it after a crash of `kind`.
    pub fn after_crash(&self, kind: CrashKind) -> MemVfs {
        let fs = self.fs.lock();
        let mut out = Fs {
            dirs: fs.dirs.clone(),
            ..Fs::default()
        };
        let entries: Vec<(PathBuf, Arc<MemFile>)> = match kind {
            CrashKind::Process => fs
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.clone()))
                .collect(),
            CrashKind::PowerLoss => fs
                .durable
                .iter()
                .map(|(p, f)| (p.clone(), f.clone()))
                .collect(),
        };
        for (p, f) in entries {
            let contents = match kind {
                CrashKind::Process => f.data.read().clone(),
                CrashKind::PowerLoss => f.synced.lock().clone(),
            };
            let copy = Arc::new(MemFile {
                data: RwLock::new(contents.clone()),
                synced: Mutex::new(contents),
            });
            out.durable.insert(p.clone(), copy.clone());
            out.files.insert(p, copy);
        }
        MemVfs {
            fs: Arc::new(Mutex::new(out)),
        }
    }

    /// Total bytes held by all files.
    pub fn total_bytes(&self) -> u64 {
        let fs = self.fs.lock();
        fs.files.values().map(|f| f.data.read().len() as u64).sum()
    }

    /// Flips one byte of a file (tests of damage containment).
    pub fn corrupt(&self, path: &Path, off: usize, xor: u8) -> io::Result<()> {
        let fs = self.fs.lock();
        let f = fs.files.get(path).ok_or_else(not_found)?;
        let mut d = f.data.write();
        let v = Arc::make_mut(&mut d);
        let b = v
            .get_mut(off)
            .ok_or_else(|| io::Error::other("offset past end"))?;
        *b ^= xor;
        Ok(())
    }
}

/// Re-keys every entry below `from` to the same place below `to`.
fn move_under<V>(map: &mut HashMap<PathBuf, V>, from: &Path, to: &Path) {
    let keys: Vec<PathBuf> = map
        .keys()
        .filter(|p| p.starts_with(from))
        .cloned()
        .collect();
    for p in keys {
        if let (Some(v), Ok(rest)) = (map.remove(&p), p.strip_prefix(from)) {
            map.insert(to.join(rest), v);
        }
    }
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file")
}

impl VFile for MemFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.read().len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let d = self.data.read();
        let start = usize::try_from(off).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = d
            .get(start..start.saturating_add(buf.len()))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let start = usize::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
        let end = start + buf.len();
        let mut d = self.data.write();
        let v = Arc::make_mut(&mut d);
        if v.len() < end {
            v.resize(end, 0);
        }
        v[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        *self.synced.lock() = self.data.read().clone();
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        let mut d = self.data.write();
        Arc::make_mut(&mut d).resize(len, 0);
        Ok(())
    }
    fn map(&self) -> io::Result<Mapping> {
        Ok(Mapping::Shared(self.data.read().clone()))
    }
}

struct MemLock {
    fs: Arc<Mutex<Fs>>,
    path: PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Vfs for MemVfs {
    fn backend(&self) -> IoBackend {
        IoBackend::Memory
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut fs = self.fs.lock();
        match (fs.files.get(path), mode) {
            (Some(_), OpenMode::CreateNew) => {
                Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"))
            }
            (Some(f), _) => Ok(f.clone() as Arc<dyn VFile>),
            (None, OpenMode::Existing) => Err(not_found()),
            (None, _) => {
                let parent = super::parent(path);
                if !fs.dirs.contains(parent) {
                    return Err(not_found());
                }
                let f = Arc::new(MemFile::default());
                fs.files.insert(path.to_path_buf(), f.clone());
                Ok(f)
            }
        }
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        let mut p = Some(path);
        while let Some(d) = p {
            fs.dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.lock();
        if !fs.dirs.contains(dir) {
            return Err(not_found());
        }
        let names = fs
            .files
            .keys()
            .chain(fs.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        let fs = self.fs.lock();
        fs.files.contains_key(path) || fs.dirs.contains(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.fs
            .lock()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(not_found)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        fs.files.retain(|p, _| !p.starts_with(path));
        fs.dirs.retain(|p| !p.starts_with(path));
        fs.durable.retain(|p, _| !p.starts_with(path));
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        if let Some(f) = fs.files.remove(from) {
            fs.files.insert(to.to_path_buf(), f);
            return Ok(());
        }
        if fs.dirs.contains(from) {
            let moved: Vec<PathBuf> = fs
                .dirs
                .iter()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for d in moved {
                fs.dirs.remove(&d);
                if let Ok(rest) = d.strip_prefix(from) {
                    fs.dirs.insert(to.join(rest));
                }
            }
            move_under(&mut fs.files, from, to);
            // Entries inside a renamed directory keep their durability: they live in the
            // directory's own inode, which moved as a whole.
            move_under(&mut fs.durable, from, to);
            return Ok(());
        }
        Err(not_found())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.fs.lock();
        let current: Vec<(PathBuf, Arc<MemFile>)> = fs
            .files
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect();
        fs.durable.retain(|p, _| p.parent() != Some(dir));
        fs.durable.extend(current);
        Ok(())
    }
    fn fs_size(&self, _dir: &Path) -> io::Result<u64> {
        Ok(MEM_FS_SIZE)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let mut fs = self.fs.lock();
        if !fs.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"));
        }
        Ok(Box::new(MemLock {
            fs: self.fs.clone(),
            path: path.to_path_buf(),
        }))
    }
}
