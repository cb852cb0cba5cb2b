//! The operating system's file system, with a pwrite/fdatasync or an io_uring write path.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{IoBackend, Mapping, OpenMode, VFile, Vfs};

/// Which write path to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoBackendChoice {
    /// io_uring when the kernel and the seccomp profile allow it, pwrite otherwise.
    #[default]
    Auto,
    /// io_uring or an error at open.
    IoUring,
    /// pwrite/fdatasync.
    Pwrite,
}

impl IoBackendChoice {
    /// Reads `TIDELOG_IO` (`auto`, `io_uring`, `pwrite`); tests use it to run on both paths.
    pub fn from_env() -> Self {
        match std::env::var("TIDELOG_IO").as_deref() {
            Ok("io_uring") | Ok("uring") => IoBackendChoice::IoUring,
            Ok("pwrite") => IoBackendChoice::Pwrite,
            _ => IoBackendChoice::Auto,
        }
    }
}

/// The real file system.
pub struct OsVfs {
    #[cfg(target_os = "linux")]
    ring: Option<Arc<super::uring::Ring>>,
}

impl OsVfs {
    /// Probes io_uring when asked to; falls back to pwrite on `Auto`.
    pub fn new(choice: IoBackendChoice) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            let ring = match choice {
                IoBackendChoice::Pwrite => None,
                IoBackendChoice::Auto => super::uring::Ring::probe().ok().map(Arc::new),
                IoBackendChoice::IoUring => Some(Arc::new(super::uring::Ring::probe()?)),
            };
            Ok(OsVfs { ring })
        }
        #[cfg(not(target_os = "linux"))]
        {
            match choice {
                IoBackendChoice::IoUring => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring is only available on Linux",
                )),
                _ => Ok(OsVfs {}),
            }
        }
    }
}

struct OsFile {
    file: File,
    #[cfg(target_os = "linux")]
    ring: Option<Arc<super::uring::Ring>>,
}

impl VFile for OsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn write_and_sync(&self, parts: &[(&[u8], u64)]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(ring) = &self.ring {
            return ring.write_and_sync(&self.file, parts);
        }
        for (buf, off) in parts {
            self.file.write_all_at(buf, *off)?;
        }
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn map(&self) -> io::Result<Mapping> {
        if self.size()? == 0 {
            return Ok(Mapping::Empty);
        }
        // SAFETY: only sealed block files are mapped; the engine never truncates or writes
        // them again except for `erase`, which overwrites bytes in place without changing the
        // length, so the mapping never refers past the end of the file.
        let map = unsafe { memmap2::Mmap::map(&self.file)? };
        Ok(Mapping::Mmap(map))
    }
}

impl Vfs for OsVfs {
    fn backend(&self) -> IoBackend {
        #[cfg(target_os = "linux")]
        if self.ring.is_some() {
            return IoBackend::IoUring;
        }
        IoBackend::Pwrite
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                o.create(true);
            }
            OpenMode::CreateNew => {
                o.create_new(true);
            }
        }
        let file = o.open(path)?;
        Ok(Arc::new(OsFile {
            file,
            #[cfg(target_os = "linux")]
            ring: self.ring.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn fs_size(&self, dir: &Path) -> io::Result<u64> {
        let v = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
        Ok(v.f_blocks.saturating_mul(v.f_frsize))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(OsFile {
            file: File::open(path)?,
            #[cfg(target_os = "linux")]
            ring: None,
        }))
    }
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let f = match File::open(path) {
            Ok(f) => f,
            // No process has opened the store since the file went missing: there is no
            // writer to keep out, and a reader must not create the file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Box::new(())),
            Err(e) => return Err(e),
        };
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared)
            .map_err(io::Error::from)?;
        Ok(Box::new(f))
    }
    fn disk_bytes(&self, path: &Path) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::metadata(path)?.blocks() * 512)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)?;
        Ok(Box::new(f))
    }
}
