//! A file system that reads through to another and keeps every change in memory: what a store
//! opened read-only runs on. Recovery, expiry and checkpoints behave exactly as on a writable
//! open (they are the same code), but what they write lands in an in-memory upper layer and is
//! gone when the store closes; the directory below is only ever read.
//!
//! A file of the lower layer is copied up whole on its first change. Every open of one path
//! returns the same handle, so a reader never keeps seeing the lower file after a writer has
//! copied it up. Removing a lower file or directory hides it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{IoBackend, Mapping, MemVfs, OpenMode, VFile, Vfs};

/// A copy-on-write view of `lower`.
pub struct OverlayVfs {
    lower: Arc<dyn Vfs>,
    upper: MemVfs,
    /// Handles of lower files, one per path (see the module comment).
    handles: Mutex<HashMap<PathBuf, Arc<CowFile>>>,
    /// Lower paths removed through the overlay (a directory hides everything below it).
    hidden: Mutex<HashSet<PathBuf>>,
}

impl OverlayVfs {
    pub fn new(lower: Arc<dyn Vfs>) -> Self {
        OverlayVfs {
            lower,
            upper: MemVfs::new(),
            handles: Mutex::default(),
            hidden: Mutex::default(),
        }
    }

    /// Bytes the changes made so far hold in memory.
    pub fn changed_bytes(&self) -> u64 {
        self.upper.total_bytes()
    }

    fn in_lower(&self, path: &Path) -> bool {
        let hidden = self.hidden.lock();
        !path.ancestors().any(|a| hidden.contains(a)) && self.lower.exists(path)
    }

    fn is_upper_file(&self, path: &Path) -> bool {
        self.upper.open(path, OpenMode::Existing).is_ok()
    }

    fn hide(&self, path: &Path) {
        self.hidden.lock().insert(path.to_path_buf());
        self.handles.lock().retain(|p, _| !p.starts_with(path));
    }

    /// The shared handle of a lower file (`None` when there is no such lower file).
    fn lower_handle(&self, path: &Path) -> io::Result<Option<Arc<CowFile>>> {
        if let Some(h) = self.handles.lock().get(path) {
            return Ok(Some(h.clone()));
        }
        if !self.in_lower(path) {
            return Ok(None);
        }
        let file = self.lower.open(path, OpenMode::Existing)?;
        let h = Arc::new(CowFile {
            path: path.to_path_buf(),
            lower: file,
            upper: Mutex::new(None),
            layer: self.upper.clone(),
        });
        Ok(Some(
            self.handles
                .lock()
                .entry(path.to_path_buf())
                .or_insert(h)
                .clone(),
        ))
    }
}

impl Vfs for OverlayVfs {
    fn backend(&self) -> IoBackend {
        self.lower.backend()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let exists = || io::Error::new(io::ErrorKind::AlreadyExists, "file exists");
        if self.is_upper_file(path) {
            return match mode {
                OpenMode::CreateNew => Err(exists()),
                _ => self.upper.open(path, mode),
            };
        }
        if let Some(h) = self.lower_handle(path)? {
            return match mode {
                OpenMode::CreateNew => Err(exists()),
                _ => Ok(h),
            };
        }
        if mode == OpenMode::Existing {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        }
        let parent = super::parent(path);
        if !self.exists(parent) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        self.upper.create_dir_all(parent)?;
        self.upper.open(path, mode)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.upper.create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self.upper.list(dir).unwrap_or_default();
        if self.in_lower(dir) {
            let lower = self.lower.list(dir)?;
            names.extend(lower.into_iter().filter(|n| self.in_lower(&dir.join(n))));
        } else if !self.upper.exists(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        self.upper.exists(path) || self.in_lower(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let upper = self.upper.remove_file(path).is_ok();
        let lower = self.in_lower(path);
        if lower {
            self.hide(path);
        }
        match upper || lower {
            true => Ok(()),
            false => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.upper.remove_dir_all(path)?;
        self.hide(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if !self.is_upper_file(from) {
            match self.lower_handle(from)? {
                Some(h) => {
                    h.copy_up()?;
                }
                None if self.in_lower(from) => {
                    // A whole lower directory would have to be copied up; nothing a
                    // read-only open does renames one.
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "renaming a directory of a store opened read-only",
                    ));
                }
                None => {}
            }
        }
        self.upper.create_dir_all(super::parent(to))?;
        self.upper.rename(from, to)?;
        if self.in_lower(from) {
            self.hide(from);
        }
        // Later opens of `to` find the renamed file in the upper layer.
        self.handles.lock().remove(to);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.lower.lock(path)
    }

    fn fs_size(&self, dir: &Path) -> io::Result<u64> {
        self.lower.fs_size(dir)
    }

    fn disk_bytes(&self, path: &Path) -> io::Result<u64> {
        match self.handles.lock().get(path) {
            Some(h) if !h.copied() => self.lower.disk_bytes(path),
            _ if self.is_upper_file(path) => self.upper.disk_bytes(path),
            _ => self.lower.disk_bytes(path),
        }
    }
}

/// A lower file, copied into the upper layer on its first change.
struct CowFile {
    path: PathBuf,
    lower: Arc<dyn VFile>,
    upper: Mutex<Option<Arc<dyn VFile>>>,
    layer: MemVfs,
}

impl CowFile {
    fn copied(&self) -> bool {
        self.upper.lock().is_some()
    }

    /// The file to read: the copy once there is one.
    fn current(&self) -> Arc<dyn VFile> {
        match &*self.upper.lock() {
            Some(u) => u.clone(),
            None => self.lower.clone(),
        }
    }

    /// The upper copy, made on the first call.
    fn copy_up(&self) -> io::Result<Arc<dyn VFile>> {
        let mut upper = self.upper.lock();
        if let Some(u) = &*upper {
            return Ok(u.clone());
        }
        let len = usize::try_from(self.lower.size()?)
            .map_err(|_| io::Error::other("file too large to copy into memory"))?;
        let mut bytes = vec![0u8; len];
        self.lower.read_exact_at(&mut bytes, 0)?;
        self.layer.create_dir_all(super::parent(&self.path))?;
        if self.layer.exists(&self.path) {
            self.layer.remove_file(&self.path)?;
        }
        let f = self.layer.open(&self.path, OpenMode::CreateNew)?;
        f.write_all_at(&bytes, 0)?;
        *upper = Some(f.clone());
        Ok(f)
    }
}

impl VFile for CowFile {
    fn size(&self) -> io::Result<u64> {
        self.current().size()
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.current().read_exact_at(buf, off)
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.copy_up()?.write_all_at(buf, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.copy_up()?.set_len(len)
    }
    fn map(&self) -> io::Result<Mapping> {
        self.current().map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(vfs: &dyn Vfs, path: &str) -> Option<Vec<u8>> {
        crate::io::read_file(vfs, Path::new(path)).ok()
    }

    fn lower() -> MemVfs {
        let m = MemVfs::new();
        m.create_dir_all(Path::new("/d/sub")).unwrap();
        for (p, b) in [("/d/a", b"aaaa"), ("/d/sub/b", b"bbbb")] {
            m.open(Path::new(p), OpenMode::CreateNew)
                .unwrap()
                .write_all_at(b, 0)
                .unwrap();
        }
        m
    }

    #[test]
    fn changes_stay_above_and_the_lower_layer_is_untouched() {
        let low = lower();
        let o = OverlayVfs::new(Arc::new(low.clone()));
        let a = o.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
        let again = o.open(Path::new("/d/a"), OpenMode::CreateOrOpen).unwrap();
        a.write_all_at(b"AA", 1).unwrap();
        assert_eq!(contents(&o, "/d/a").unwrap(), b"aAAa");
        // The other handle sees the change: one handle per path.
        let mut buf = [0u8; 4];
        again.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"aAAa");
        o.open(Path::new("/d/new"), OpenMode::CreateNew)
            .unwrap()
            .write_all_at(b"n", 0)
            .unwrap();
        replace(&o, "/d/sub/b", b"B");
        o.remove_file(Path::new("/d/a")).unwrap();
        assert!(!o.exists(Path::new("/d/a")));
        assert_eq!(o.list(Path::new("/d")).unwrap(), ["new", "sub"]);
        assert_eq!(contents(&o, "/d/sub/b").unwrap(), b"B");
        o.remove_dir_all(Path::new("/d/sub")).unwrap();
        assert!(o.list(Path::new("/d/sub")).is_err());
        // Below, nothing changed.
        assert_eq!(contents(&low, "/d/a").unwrap(), b"aaaa");
        assert_eq!(contents(&low, "/d/sub/b").unwrap(), b"bbbb");
        assert!(!low.exists(Path::new("/d/new")));
        assert_eq!(low.list(Path::new("/d")).unwrap().len(), 2);
    }

    #[test]
    fn create_new_refuses_a_lower_file_and_existing_a_hidden_one() {
        let o = OverlayVfs::new(Arc::new(lower()));
        let e = o
            .open(Path::new("/d/a"), OpenMode::CreateNew)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        o.remove_file(Path::new("/d/a")).unwrap();
        let e = o.open(Path::new("/d/a"), OpenMode::Existing).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(o.remove_file(Path::new("/d/a")).is_err());
        // Created again, it is a new, empty file.
        let f = o.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        assert_eq!(f.size().unwrap(), 0);
    }

    fn replace(o: &OverlayVfs, path: &str, bytes: &[u8]) {
        crate::io::replace_file(o, Path::new(path), bytes).unwrap();
    }
}
