//! Opening an existing store for the inspection commands (`info`, `verify`, `dump`).

use std::path::Path;
use std::time::{Duration, Instant};

use tidelog::{DamagedStream, Store, StoreError, StoreOptions, Stream};

use crate::fail::{chain, Fail};

/// Opens the store at `dir`, which must already be one: inspecting a typo must not create an
/// empty store. No maintenance thread runs, so nothing is compacted behind the command's back.
/// Unless `write`, the store is opened read-only: recovery, expiry and the close run on an
/// in-memory copy of what they change, and not a byte of the directory changes (see
/// `docs/durability.md`), so a second look finds the same damage as the first.
pub fn existing(dir: &Path, write: bool) -> Result<Store, Fail> {
    if !dir.join("streams").is_dir() {
        let why = match dir.metadata() {
            Err(e) => e.to_string(),
            Ok(m) if !m.is_dir() => "not a directory".to_owned(),
            Ok(_) => "no streams/ directory in it".to_owned(),
        };
        return Err(Fail::new(format!(
            "{} is not a tidelog store: {why}",
            dir.display()
        )));
    }
    let opts = StoreOptions {
        manual_maintenance: true,
        read_only: !write,
        ..Default::default()
    };
    open_waiting(dir, opts).map_err(|e| match e {
        StoreError::Locked(_) => Fail::new(format!(
            "store {} is open in another process (its LOCK is held); stop that process first",
            dir.display()
        )),
        e => Fail::new(format!(
            "cannot open store {}: {}",
            dir.display(),
            chain(&e)
        )),
    })
}

/// How long a command waits for a store's lock. A process that has just closed the store can
/// still hold its lock for a moment: a child it forked keeps a copy of the lock's descriptor
/// until that child execs.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// `Store::open`, retried while the lock is held, for up to `LOCK_WAIT`.
fn open_waiting(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match Store::open(dir, opts.clone()) {
            Err(StoreError::Locked(_)) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// The stream `name` when the store could not open it because its metadata is damaged.
pub fn damaged(store: &Store, name: &str) -> Option<DamagedStream> {
    store.damaged_streams().into_iter().find(|d| d.name == name)
}

/// The stream called `name`, with the store's stream names in the error when there is none.
pub fn stream(store: &Store, name: &str) -> Result<Stream, Fail> {
    if let Some(d) = damaged(store, name) {
        return Err(Fail::new(format!(
            "stream {name} is damaged and was not opened: {} (see 'tidelog verify')",
            d.why
        )));
    }
    store.stream(name).map_err(|e| {
        let mut names = store.stream_names();
        names.sort();
        let have = match names.is_empty() {
            true => "the store has no streams".to_owned(),
            false => format!("streams: {}", names.join(", ")),
        };
        Fail::new(format!("{} ({have})", chain(&e)))
    })
}

/// The streams a command covers: `name` alone, or every stream in name order.
pub fn streams(store: &Store, name: Option<&str>) -> Result<Vec<Stream>, Fail> {
    if let Some(n) = name {
        return Ok(vec![stream(store, n)?]);
    }
    let mut names = store.stream_names();
    names.sort();
    names.iter().map(|n| stream(store, n)).collect()
}
