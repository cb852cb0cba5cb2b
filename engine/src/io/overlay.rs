//! A file system that reads through to another and keeps every change in memory: what a store
//! opened read-only runs on. Recovery, expiry and checkpoints behave exactly as on a writable
//! open (they are the same code), but what they write lands in an in-memory upper layer and is
//! gone when the store closes; the directory below is only ever read, through read-only
//! descriptors and a shared lock, so a read-only mount works too.
//!
//! A file below is copied up whole on its first change. While any handle of a path is alive,
//! every open of that path returns it, so no reader keeps seeing the lower file after a writer
//! copied it up. Removing a lower file or directory hides it; renaming a lower directory shows
//! its lower contents under the new name. A handle whose path was removed or renamed over
//! keeps working on a private copy, as a descriptor of an unlinked file does.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{parent, IoBackend, Mapping, MemVfs, OpenMode, VFile, Vfs};

/// A copy-on-write view of `lower`.
pub struct OverlayVfs {
    lower: Arc<dyn Vfs>,
    upper: MemVfs,
    names: Arc<Mutex<Names>>,
}

/// What the overlay changed about names. One lock guards it all, so a lookup and the change
/// it leads to are never split by another thread's remove or rename.
#[derive(Default)]
struct Names {
    /// The live handle of each lower file that has one (see the module comment).
    handles: HashMap<PathBuf, Weak<CowFile>>,
    /// Dead entries are dropped when `handles` grows past this.
    prune_at: usize,
    /// Paths removed through the overlay: they hide everything below them.
    hidden: HashSet<PathBuf>,
    /// Lower directories renamed through the overlay: (new path, the lower path it shows).
    moved: Vec<(PathBuf, PathBuf)>,
}

impl Names {
    fn is_hidden(&self, path: &Path) -> bool {
        path.ancestors().any(|a| self.hidden.contains(a))
    }

    /// The lower path that `path` shows (itself unless a renamed directory holds it).
    fn below(&self, path: &Path) -> PathBuf {
        for (to, from) in self.moved.iter().rev() {
            if let Ok(rest) = path.strip_prefix(to) {
                return from.join(rest);
            }
        }
        path.to_path_buf()
    }

    fn live(&self, path: &Path) -> Option<Arc<CowFile>> {
        self.handles.get(path).and_then(Weak::upgrade)
    }

    /// Detaches the handles at or below `path` from their paths.
    fn unlink(&mut self, path: &Path) {
        self.handles.retain(|p, w| {
            if !p.starts_with(path) {
                return true;
            }
            if let Some(h) = w.upgrade() {
                h.linked.store(false, Ordering::Release);
            }
            false
        });
    }

    fn hide(&mut self, path: &Path) {
        self.hidden.insert(path.to_path_buf());
        self.unlink(path);
    }

    fn remember(&mut self, path: &Path, h: &Arc<CowFile>) {
        if self.handles.len() >= self.prune_at {
            self.handles.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (2 * self.handles.len()).max(64);
        }
        self.handles.insert(path.to_path_buf(), Arc::downgrade(h));
    }
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file or directory")
}

fn already_exists() -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, "file exists")
}

impl OverlayVfs {
    pub fn new(lower: Arc<dyn Vfs>) -> Self {
        OverlayVfs {
            lower,
            upper: MemVfs::new(),
            names: Arc::default(),
        }
    }

    /// Bytes the changes made so far hold in memory.
    pub fn changed_bytes(&self) -> u64 {
        self.upper.total_bytes()
    }

    /// The lower path `path` shows, when there is one and it is not hidden.
    fn in_lower(&self, n: &Names, path: &Path) -> Option<PathBuf> {
        if n.is_hidden(path) {
            return None;
        }
        let below = n.below(path);
        self.lower.exists(&below).then_some(below)
    }

    fn is_upper_file(&self, path: &Path) -> bool {
        self.upper.open(path, OpenMode::Existing).is_ok()
    }

    fn exists_in(&self, n: &Names, path: &Path) -> bool {
        self.upper.exists(path) || self.in_lower(n, path).is_some()
    }

    /// The handle of the lower file at `path` (`None` when there is none).
    fn lower_file(&self, n: &mut Names, path: &Path) -> io::Result<Option<Arc<CowFile>>> {
        if let Some(h) = n.live(path) {
            return Ok(Some(h));
        }
        let Some(below) = self.in_lower(n, path) else {
            return Ok(None);
        };
        let h = Arc::new(CowFile {
            path: path.to_path_buf(),
            lower: self.lower.open_read(&below)?,
            upper: Mutex::new(None),
            linked: AtomicBool::new(true),
            layer: self.upper.clone(),
            names: self.names.clone(),
        });
        n.remember(path, &h);
        Ok(Some(h))
    }

    /// True when `path` shows a lower directory (a listing works only on directories).
    fn is_lower_dir(&self, n: &Names, path: &Path) -> bool {
        self.in_lower(n, path)
            .is_some_and(|below| self.lower.list(&below).is_ok())
    }

    /// Renames a directory that shows lower contents. Its upper entries move; its lower ones
    /// show under `to` from now on. Handles of files below it are detached (the engine renames
    /// only a closed stream's directory, to remove it).
    fn rename_lower_dir(&self, n: &mut Names, from: &Path, to: &Path) -> io::Result<()> {
        if self.exists_in(n, to) {
            return Err(already_exists());
        }
        let below = n.below(from);
        if self.upper.exists(from) {
            self.upper.create_dir_all(parent(to))?;
            self.upper.rename(from, to)?;
        } else {
            self.upper.create_dir_all(to)?;
        }
        let moved_hidden: Vec<PathBuf> = n
            .hidden
            .iter()
            .filter_map(|h| Some(to.join(h.strip_prefix(from).ok()?)))
            .collect();
        n.hidden.retain(|h| !h.starts_with(to));
        n.hidden.extend(moved_hidden);
        n.moved.push((to.to_path_buf(), below));
        n.hide(from);
        Ok(())
    }
}

impl Vfs for OverlayVfs {
    fn backend(&self) -> IoBackend {
        self.lower.backend()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut n = self.names.lock();
        if self.is_upper_file(path) {
            return match mode {
                OpenMode::CreateNew => Err(already_exists()),
                _ => self.upper.open(path, mode),
            };
        }
        if let Some(h) = self.lower_file(&mut n, path)? {
            return match mode {
                OpenMode::CreateNew => Err(already_exists()),
                _ => Ok(h),
            };
        }
        if mode == OpenMode::Existing || !self.exists_in(&n, parent(path)) {
            return Err(not_found());
        }
        self.upper.create_dir_all(parent(path))?;
        self.upper.open(path, mode)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.upper.create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let n = self.names.lock();
        let mut names = self.upper.list(dir).unwrap_or_default();
        match self.in_lower(&n, dir) {
            Some(below) => names.extend(
                self.lower
                    .list(&below)?
                    .into_iter()
                    .filter(|name| !n.is_hidden(&dir.join(name))),
            ),
            None if !self.upper.exists(dir) => return Err(not_found()),
            None => {}
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        self.exists_in(&self.names.lock(), path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut n = self.names.lock();
        let upper = self.upper.remove_file(path).is_ok();
        let lower = self.in_lower(&n, path).is_some();
        if lower {
            n.hide(path);
        }
        match upper || lower {
            true => Ok(()),
            false => Err(not_found()),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut n = self.names.lock();
        if !self.exists_in(&n, path) {
            return Err(not_found());
        }
        self.upper.remove_dir_all(path)?;
        n.hide(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut n = self.names.lock();
        if !self.is_upper_file(from) {
            if self.is_lower_dir(&n, from) {
                return self.rename_lower_dir(&mut n, from, to);
            }
            if let Some(h) = self.lower_file(&mut n, from)? {
                // Copied up (at `from`, the handle is linked) so it can move in memory.
                h.copy_up_locked()?;
            }
        }
        self.upper.create_dir_all(parent(to))?;
        self.upper.rename(from, to)?;
        // Whatever `to` named before is gone; what `from` named now lives at `to`.
        n.unlink(to);
        if self.in_lower(&n, from).is_some() {
            n.hide(from);
        } else {
            n.unlink(from);
        }
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        self.lower.lock_shared(path)
    }

    fn fs_size(&self, dir: &Path) -> io::Result<u64> {
        self.lower.fs_size(dir)
    }

    fn disk_bytes(&self, path: &Path) -> io::Result<u64> {
        let n = self.names.lock();
        if self.is_upper_file(path) {
            return self.upper.disk_bytes(path);
        }
        match self.in_lower(&n, path) {
            Some(below) => self.lower.disk_bytes(&below),
            None => Err(not_found()),
        }
    }

    fn reclaims_space(&self) -> bool {
        false
    }
}

/// A lower file, copied into memory on its first change.
struct CowFile {
    path: PathBuf,
    lower: Arc<dyn VFile>,
    upper: Mutex<Option<Arc<dyn VFile>>>,
    /// Still reachable at `path` (changed only under the overlay's `names` lock).
    linked: AtomicBool,
    layer: MemVfs,
    /// The overlay's names: a first write takes their lock, so a concurrent remove or rename
    /// cannot detach the handle halfway through its copy.
    names: Arc<Mutex<Names>>,
}

impl CowFile {
    /// The file to read: the copy once there is one.
    fn current(&self) -> Arc<dyn VFile> {
        match &*self.upper.lock() {
            Some(u) => u.clone(),
            None => self.lower.clone(),
        }
    }

    /// The copy to write, made on the first call: at the path in the upper layer while the
    /// handle is linked, else a private file. The caller holds the overlay's `names` lock.
    fn copy_up_locked(&self) -> io::Result<Arc<dyn VFile>> {
        let mut upper = self.upper.lock();
        if let Some(u) = &*upper {
            return Ok(u.clone());
        }
        let len = usize::try_from(self.lower.size()?)
            .map_err(|_| io::Error::other("file too large to copy into memory"))?;
        let mut bytes = vec![0u8; len];
        self.lower.read_exact_at(&mut bytes, 0)?;
        let layer = match self.linked.load(Ordering::Acquire) {
            true => self.layer.clone(),
            false => MemVfs::new(),
        };
        layer.create_dir_all(parent(&self.path))?;
        let f = layer.open(&self.path, OpenMode::CreateNew)?;
        f.write_all_at(&bytes, 0)?;
        *upper = Some(f.clone());
        Ok(f)
    }

    fn writable(&self) -> io::Result<Arc<dyn VFile>> {
        if let Some(u) = &*self.upper.lock() {
            return Ok(u.clone());
        }
        let _names = self.names.lock();
        self.copy_up_locked()
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
        self.writable()?.write_all_at(buf, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?.set_len(len)
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

    fn put(vfs: &dyn Vfs, path: &str, bytes: &[u8]) {
        vfs.open(Path::new(path), OpenMode::CreateOrOpen)
            .unwrap()
            .write_all_at(bytes, 0)
            .unwrap();
    }

    /// `/d/a`, `/d/sub/b`, `/d/sub/c` below.
    fn lower() -> MemVfs {
        let m = MemVfs::new();
        m.create_dir_all(Path::new("/d/sub")).unwrap();
        for (p, b) in [
            ("/d/a", b"aaaa"),
            ("/d/sub/b", b"bbbb"),
            ("/d/sub/c", b"cccc"),
        ] {
            put(&m, p, b);
        }
        m
    }

    fn ls(vfs: &dyn Vfs, dir: &str) -> Vec<String> {
        let mut v = vfs.list(Path::new(dir)).unwrap();
        v.sort();
        v
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
        put(&o, "/d/new", b"n");
        crate::io::replace_file(&o, Path::new("/d/sub/b"), b"B").unwrap();
        o.remove_file(Path::new("/d/a")).unwrap();
        assert!(!o.exists(Path::new("/d/a")));
        assert_eq!(ls(&o, "/d"), ["new", "sub"]);
        assert_eq!(contents(&o, "/d/sub/b").unwrap(), b"B");
        o.remove_dir_all(Path::new("/d/sub")).unwrap();
        assert!(o.list(Path::new("/d/sub")).is_err());
        assert!(o.remove_dir_all(Path::new("/d/sub")).is_err());
        // Below, nothing changed.
        assert_eq!(contents(&low, "/d/a").unwrap(), b"aaaa");
        assert_eq!(contents(&low, "/d/sub/b").unwrap(), b"bbbb");
        assert!(!low.exists(Path::new("/d/new")));
        assert_eq!(ls(&low, "/d"), ["a", "sub"]);
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
        assert!(o.disk_bytes(Path::new("/d/a")).is_err());
        // Created again, it is a new, empty file.
        let f = o.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        assert_eq!(f.size().unwrap(), 0);
    }

    #[test]
    fn a_handle_whose_path_went_away_writes_to_its_own_copy() {
        let o = OverlayVfs::new(Arc::new(lower()));
        // Renamed over: the path keeps the new contents.
        let old = o.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
        crate::io::replace_file(&o, Path::new("/d/a"), b"new!").unwrap();
        old.write_all_at(b"X", 0).unwrap();
        assert_eq!(contents(&o, "/d/a").unwrap(), b"new!");
        let mut buf = [0u8; 4];
        old.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"Xaaa");
        // Removed: the path stays gone.
        let gone = o.open(Path::new("/d/sub/b"), OpenMode::Existing).unwrap();
        o.remove_file(Path::new("/d/sub/b")).unwrap();
        gone.write_all_at(b"Y", 0).unwrap();
        assert_eq!(ls(&o, "/d/sub"), ["c"]);
        // A directory removed under a handle stays gone too.
        let c = o.open(Path::new("/d/sub/c"), OpenMode::Existing).unwrap();
        o.remove_dir_all(Path::new("/d/sub")).unwrap();
        c.set_len(1).unwrap();
        assert_eq!(ls(&o, "/d"), ["a"]);
    }

    #[test]
    fn a_renamed_lower_directory_shows_its_files_under_the_new_name() {
        let low = lower();
        let o = OverlayVfs::new(Arc::new(low.clone()));
        put(&o, "/d/sub/up", b"u");
        o.remove_file(Path::new("/d/sub/c")).unwrap();
        o.rename(Path::new("/d/sub"), Path::new("/d/.sub.gone"))
            .unwrap();
        assert!(!o.exists(Path::new("/d/sub")));
        assert_eq!(ls(&o, "/d"), [".sub.gone", "a"]);
        assert_eq!(ls(&o, "/d/.sub.gone"), ["b", "up"]);
        assert_eq!(contents(&o, "/d/.sub.gone/b").unwrap(), b"bbbb");
        assert_eq!(contents(&o, "/d/.sub.gone/up").unwrap(), b"u");
        // Onto an existing name: refused.
        put(&o, "/d/other", b"o");
        let e = o.rename(Path::new("/d/.sub.gone"), Path::new("/d/other"));
        assert_eq!(e.err().unwrap().kind(), io::ErrorKind::AlreadyExists);
        o.remove_dir_all(Path::new("/d/.sub.gone")).unwrap();
        assert_eq!(ls(&o, "/d"), ["a", "other"]);
        // A new directory of the old name starts empty.
        o.create_dir_all(Path::new("/d/sub")).unwrap();
        assert!(ls(&o, "/d/sub").is_empty());
        assert_eq!(ls(&low, "/d/sub"), ["b", "c"]);
    }

    #[test]
    fn handles_nobody_holds_are_let_go() {
        let low = MemVfs::new();
        low.create_dir_all(Path::new("/d")).unwrap();
        for i in 0..500 {
            put(&low, &format!("/d/{i}"), b"x");
        }
        let o = OverlayVfs::new(Arc::new(low));
        for i in 0..500 {
            let f = o
                .open(Path::new(&format!("/d/{i}")), OpenMode::Existing)
                .unwrap();
            assert_eq!(f.size().unwrap(), 1);
        }
        assert!(o.names.lock().handles.len() < 200);
    }
}
