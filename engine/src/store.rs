//! A store: a locked directory of named streams and the background thread that keeps them
//! flushed, synced and checkpointed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_64;

use crate::budget::{BudgetInfo, Usage, PAGE};
use crate::clock::{Clock, SystemClock};
use crate::config::{Storage, StoreOptions, StreamConfig};
use crate::error::{StoreError, StreamError};
use crate::io::{read_file, IoBackend, OpenMode, OsVfs, OverlayVfs, Vfs};
use crate::recovery::{recover, RecoveryReport};
use crate::state::LogState;
use crate::stream::Stream;

const STREAMS_DIR: &str = "streams";
const LOCK_FILE: &str = "LOCK";
pub(crate) const CONFIG_FILE: &str = "config";
const CONFIG_MAGIC: [u8; 8] = *b"TLCONF\0\0";
const CONFIG_VERSION: u16 = 1;
/// Shortest maintainer tick (for very short sync intervals).
const MIN_TICK: Duration = Duration::from_micros(500);
/// How often the maintainer looks at every stream.
const TICK: Duration = Duration::from_millis(10);
/// Longest stretch of expiry work between two rounds of a stream's upkeep.
const EXPIRY_SLICE: Duration = Duration::from_millis(10);

type Streams = Arc<Mutex<BTreeMap<String, Stream>>>;

struct Inner {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    clock: Arc<dyn Clock>,
    streams: Streams,
    /// Wakes the maintainer early, to stop.
    wake: Option<Sender<()>>,
    stop: Arc<AtomicBool>,
    maintainer: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    damaged: Mutex<Vec<DamagedStream>>,
    /// The byte budget and what every stream uses of it.
    usage: Arc<Usage>,
    _lock: Box<dyn Send + Sync>,
}

/// A stream that could not be opened because its metadata is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedStream {
    pub name: String,
    pub why: String,
}

/// An open store. Cheap to clone; closing (or dropping the last handle) flushes and
/// checkpoints every stream.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn encode_config(stream_id: u64, cfg: &StreamConfig) -> Result<Vec<u8>, StreamError> {
    let json = serde_json::to_vec(cfg).map_err(|e| StreamError::Corrupt {
        what: "config".into(),
        why: e.to_string(),
    })?;
    let mut b = Vec::with_capacity(json.len() + 32);
    b.extend_from_slice(&CONFIG_MAGIC);
    b.extend_from_slice(&CONFIG_VERSION.to_le_bytes());
    b.extend_from_slice(&[0u8; 2]);
    b.extend_from_slice(&(json.len() as u32).to_le_bytes());
    b.extend_from_slice(&stream_id.to_le_bytes());
    b.extend_from_slice(&json);
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    Ok(b)
}

/// Replaces a stream's config file (temp file, fsync, rename, directory fsync).
pub(crate) fn write_config(
    vfs: &dyn Vfs,
    dir: &Path,
    stream_id: u64,
    cfg: &StreamConfig,
) -> io::Result<()> {
    let bytes = encode_config(stream_id, cfg).map_err(|e| io::Error::other(e.to_string()))?;
    crate::io::replace_file(vfs, &dir.join(CONFIG_FILE), &bytes)
}

fn decode_config(b: &[u8]) -> Result<(u64, StreamConfig), String> {
    if b.len() < 32 || b[0..8] != CONFIG_MAGIC {
        return Err("bad magic".into());
    }
    if u16::from_le_bytes([b[8], b[9]]) != CONFIG_VERSION {
        return Err("unknown version".into());
    }
    let n = b.len() - 8;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&b[n..]);
    if u64::from_le_bytes(sum) != xxh3_64(&b[..n]) {
        return Err("checksum mismatch".into());
    }
    let len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    if 24 + len != n {
        return Err("length mismatch".into());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[16..24]);
    let cfg: StreamConfig = serde_json::from_slice(&b[24..n]).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok((u64::from_le_bytes(id), cfg))
}

impl Store {
    /// Opens (creating if needed) the store in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store, StoreError> {
        let vfs = OsVfs::new(opts.io_backend)?;
        Self::open_with_vfs(dir, Arc::new(vfs), opts)
    }

    /// Opens a store over any [`Vfs`] (an in-memory one, or one that injects faults).
    pub fn open_with_vfs(
        dir: impl AsRef<Path>,
        vfs: Arc<dyn Vfs>,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let sdir = dir.join(STREAMS_DIR);
        let vfs: Arc<dyn Vfs> = match opts.read_only {
            true if !vfs.exists(&sdir) => {
                return Err(StoreError::NotAStore(dir.display().to_string()))
            }
            true => Arc::new(OverlayVfs::new(vfs)),
            false => vfs,
        };
        vfs.create_dir_all(&sdir)?;
        let lock = vfs.lock(&dir.join(LOCK_FILE)).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                StoreError::Locked(e)
            } else {
                StoreError::Io(e)
            }
        })?;
        let (max_bytes, reserve) = opts.budget.resolve(vfs.fs_size(&dir)?)?;
        let usage = Usage::new(max_bytes, reserve);
        // The store's own directories; each stream counts its own files.
        usage.add(2 * PAGE as i64);
        let clock = opts.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
        let (wake_tx, wake_rx) = channel::bounded::<()>(1);
        let wake = (!opts.manual_maintenance).then_some(wake_tx);
        let streams: Streams = Arc::default();
        let mut damaged = Vec::new();
        let mut names = vfs.list(&sdir)?;
        names.sort();
        for name in names {
            if name.starts_with('.') {
                // An interrupted create or delete.
                vfs.remove_dir_all(&sdir.join(&name))?;
                continue;
            }
            match open_stream(&sdir.join(&name), vfs.clone(), clock.clone(), &usage) {
                Ok(s) => {
                    streams.lock().insert(name, s);
                }
                // The store still opens: a stream whose metadata is damaged or whose files
                // cannot be read is set aside and reported (with the whole error chain), and
                // can be deleted; its files are left untouched for inspection.
                Err(e) => damaged.push(DamagedStream {
                    name,
                    why: error_chain(&e),
                }),
            }
        }
        vfs.sync_dir(&sdir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let maintainer = match wake {
            Some(_) => Some(spawn_maintainer(streams.clone(), wake_rx, stop.clone())?),
            None => None,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                vfs,
                clock,
                streams,
                wake,
                stop,
                maintainer: Mutex::new(maintainer),
                closed: AtomicBool::new(false),
                damaged: Mutex::new(damaged),
                usage,
                _lock: lock,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The byte budget and how much of it is in use.
    pub fn budget(&self) -> BudgetInfo {
        self.inner.usage.info()
    }

    /// The write path in use.
    pub fn io_backend(&self) -> IoBackend {
        self.inner.vfs.backend()
    }

    fn check_open(&self) -> Result<(), StreamError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    /// Creates a stream. Nothing is created when the config is invalid or the name is taken.
    pub fn create_stream(&self, cfg: StreamConfig) -> Result<Stream, StreamError> {
        self.check_open()?;
        cfg.validate()?;
        let mut streams = self.inner.streams.lock();
        if streams.contains_key(&cfg.name)
            || self.inner.damaged.lock().iter().any(|d| d.name == cfg.name)
        {
            return Err(StreamError::AlreadyExists(cfg.name));
        }
        let stream_id = xxh3_64(
            format!(
                "{}:{}:{}",
                cfg.name,
                self.inner.clock.now_ns(),
                std::process::id()
            )
            .as_bytes(),
        );
        let sdir = self.inner.dir.join(STREAMS_DIR);
        let dir = sdir.join(&cfg.name);
        let persistent = cfg.storage == Storage::File;
        if persistent {
            let vfs = &*self.inner.vfs;
            let tmp = sdir.join(format!(".{}.new", cfg.name));
            if vfs.exists(&tmp) {
                vfs.remove_dir_all(&tmp)?;
            }
            vfs.create_dir_all(&tmp)?;
            let f = vfs.open(&tmp.join(CONFIG_FILE), OpenMode::CreateNew)?;
            f.write_and_sync(&[(&encode_config(stream_id, &cfg)?, 0)])?;
            vfs.sync_dir(&tmp)?;
            vfs.rename(&tmp, &dir)?;
            vfs.sync_dir(&sdir)?;
        }
        let mut state =
            LogState::empty(stream_id, dir.clone(), cfg.block_size as usize, persistent);
        state.attach(self.inner.usage.clone());
        let s = Stream::from_parts(
            cfg.clone(),
            self.inner.vfs.clone(),
            self.inner.clock.clone(),
            dir,
            persistent,
            state,
            0,
            RecoveryReport::default(),
        );
        s.refresh_meta_usage();
        streams.insert(cfg.name, s.clone());
        Ok(s)
    }

    /// A handle to an existing stream.
    pub fn stream(&self, name: &str) -> Result<Stream, StreamError> {
        self.check_open()?;
        self.inner
            .streams
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| StreamError::NotFound(name.to_owned()))
    }

    /// Streams set aside at open because their metadata is damaged. `delete_stream` removes
    /// them; until then their names cannot be reused.
    pub fn damaged_streams(&self) -> Vec<DamagedStream> {
        self.inner.damaged.lock().clone()
    }

    /// Stream names, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        self.inner.streams.lock().keys().cloned().collect()
    }

    /// Deletes a stream and its files. Handles to it return `Closed` from then on.
    pub fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
        self.check_open()?;
        let s = self.inner.streams.lock().remove(name);
        let dir = match &s {
            Some(s) => {
                s.mark_deleted();
                s.release_usage();
                s.s.persistent.then(|| s.dir().to_path_buf())
            }
            None => {
                let mut damaged = self.inner.damaged.lock();
                let i = damaged
                    .iter()
                    .position(|d| d.name == name)
                    .ok_or_else(|| StreamError::NotFound(name.to_owned()))?;
                damaged.remove(i);
                Some(self.inner.dir.join(STREAMS_DIR).join(name))
            }
        };
        if let Some(dir) = dir {
            let vfs = &*self.inner.vfs;
            let sdir = self.inner.dir.join(STREAMS_DIR);
            let doomed = sdir.join(format!(".{name}.deleted"));
            if vfs.exists(&doomed) {
                vfs.remove_dir_all(&doomed)?;
            }
            vfs.rename(&dir, &doomed)?;
            vfs.sync_dir(&sdir)?;
            vfs.remove_dir_all(&doomed)?;
        }
        Ok(())
    }

    /// Flushes, syncs and checkpoints every stream, then stops the background thread. The
    /// first error is returned; every stream is still closed.
    pub fn close(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.stop.store(true, Ordering::Release);
        if let Some(w) = &self.inner.wake {
            let _ = w.try_send(());
        }
        if let Some(h) = self.inner.maintainer.lock().take() {
            let _ = h.join();
        }
        let mut first: Option<StoreError> = None;
        for (name, s) in self.inner.streams.lock().iter() {
            if let Err(e) = s.close() {
                first.get_or_insert(StoreError::Stream {
                    name: name.clone(),
                    source: Box::new(StreamError::Io(io::Error::other(e))),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.maintainer.lock().take() {
            let _ = h.join();
        }
        for s in self.streams.lock().values() {
            // Errors here have already poisoned the stream; a drop cannot report them.
            let _ = s.close();
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Why a stream's config file could not be read, naming the file (relative to the store):
/// the store reports the stream as damaged with this text.
fn config_unreadable(dir: &Path, e: io::Error) -> StreamError {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = format!("{STREAMS_DIR}/{name}/{CONFIG_FILE}");
    if e.kind() == io::ErrorKind::NotFound {
        // A stream directory is only renamed into place with its config inside.
        return StreamError::Corrupt {
            what: format!("stream {name}"),
            why: format!("config file {file} is missing"),
        };
    }
    StreamError::Io(io::Error::new(e.kind(), format!("config file {file}: {e}")))
}

fn open_stream(
    dir: &Path,
    vfs_arc: Arc<dyn Vfs>,
    clock: Arc<dyn Clock>,
    usage: &Arc<Usage>,
) -> Result<Stream, StreamError> {
    let vfs = &*vfs_arc;
    let bytes = read_file(vfs, &dir.join(CONFIG_FILE)).map_err(|e| config_unreadable(dir, e))?;
    let (stream_id, cfg) = decode_config(&bytes).map_err(|why| StreamError::Corrupt {
        what: format!("{}/config", dir.display()),
        why,
    })?;
    let mut rec = recover(vfs, dir, stream_id, cfg.block_size as usize)?;
    rec.state.attach(usage.clone());
    let s = Stream::from_parts(
        cfg,
        vfs_arc,
        clock,
        dir.to_path_buf(),
        true,
        rec.state,
        rec.lease,
        rec.report,
    );
    s.load_consumers()?;
    s.refresh_meta_usage();
    s.settle();
    Ok(s)
}

/// One tick of upkeep for every stream. A mass expiry goes in slices of `EXPIRY_SLICE`, one
/// slice per busy stream per round, with every stream's upkeep (sealing, flushing, interval
/// syncs) after each round, so one stream's expiry never holds up the others. A failure
/// poisons that stream and is reported to its next writer; the other streams carry on.
fn maintain_round(list: &[Stream], stop: &AtomicBool) {
    let mut busy: Vec<bool> = vec![true; list.len()];
    while busy.iter().any(|&b| b) && !stop.load(Ordering::Acquire) {
        for (s, more) in list.iter().zip(busy.iter_mut()) {
            if *more {
                let slice = Instant::now() + EXPIRY_SLICE;
                *more = s.expire_until(Some(slice)).is_ok_and(|(_, more)| more);
            }
            let _ = s.maintain();
            let _ = s.save_consumers(false);
        }
    }
}

fn spawn_maintainer(
    streams: Streams,
    wake: channel::Receiver<()>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tidelog-maintainer".into())
        .spawn(move || {
            let mut tick = TICK;
            loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                match wake.recv_timeout(tick) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let list: Vec<Stream> = streams.lock().values().cloned().collect();
                // An `Interval(d)` shorter than the tick is still a hard bound when appends stop.
                tick = list
                    .iter()
                    .filter_map(|s| s.sync_interval())
                    .map(|d| d / 2)
                    .fold(TICK, Duration::min)
                    .max(MIN_TICK);
                maintain_round(&list, &stop);
            }
        })
}
