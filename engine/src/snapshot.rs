//! Snapshots: a stream's live messages (from a sequence up to its last), its config and its
//! consumers as one byte stream (`docs/format.md`, "Snapshot"), and the restore that rebuilds
//! a stream from it, in another store or the same one.
//!
//! A snapshot is taken under the state lock held shared, so it is one point in time; writers
//! wait for it. Messages travel as their log records, checksums included: the restore checks
//! every record as it goes and the whole stream at its end, and writes straight into the new
//! stream (no staging copy, so the extra disk is nothing beyond the restored stream). A restore
//! cut short is resumed by restoring a snapshot taken from the restored stream's last sequence
//! + 1: records it already holds are passed over.

use std::io::{self, Read, Write};

use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::config::StreamConfig;
use crate::error::SnapshotError;
use crate::record::{self, Kind, FLAG_MARKER, FLAG_ROLLUP_ALL, FLAG_ROLLUP_SUB};
use crate::store::Store;
use crate::stream::{NewMessage, Stream};
use crate::ttl::Ttl;

const MAGIC: [u8; 8] = *b"TLSNAP\0\0";
const VERSION: u16 = 1;
/// A frame of whole message records, back to back.
const TAG_RECORDS: u8 = 1;
const TAG_CONSUMER: u8 = 2;
const TAG_END: u8 = 3;
/// Bytes of records per frame (a restore applies a frame per hold of the write lock).
const FRAME: usize = 1 << 20;
/// Largest frame accepted: a frame holds at least one record, of any size.
const MAX_FRAME: usize = FRAME + record::MAX_ENCODED_LEN;
/// Largest config or consumer frame accepted (a corrupt length must not allocate wildly).
const MAX_META: usize = 64 << 20;

/// What a snapshot held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// First sequence the snapshot covers.
    pub from_seq: u64,
    /// The stream's last sequence when it was taken.
    pub last_seq: u64,
    pub messages: u64,
    /// Bytes of the snapshot.
    pub bytes: u64,
}

/// Writes through, hashing and counting what passes.
struct Hashing<'a, W: Write + ?Sized> {
    out: &'a mut W,
    h: Xxh3,
    n: u64,
}

impl<W: Write + ?Sized> Hashing<'_, W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.h.update(b);
        self.n += b.len() as u64;
        self.out.write_all(b)
    }
}

/// Reads through, hashing what passes.
struct Hashed<'a, R: Read + ?Sized> {
    inp: &'a mut R,
    h: Xxh3,
    n: u64,
}

impl<R: Read + ?Sized> Hashed<'_, R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.inp.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => SnapshotError::Corrupt("snapshot ends early".into()),
            _ => SnapshotError::Io(e),
        })?;
        self.h.update(buf);
        self.n += buf.len() as u64;
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// A length-prefixed byte string of at most `max` bytes.
    fn blob(&mut self, max: usize) -> Result<Vec<u8>, SnapshotError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(SnapshotError::Corrupt(format!("frame of {len} bytes")));
        }
        let mut v = vec![0u8; len];
        self.take(&mut v)?;
        Ok(v)
    }
}

/// Writes `frame` (records back to back) as one frame and empties it.
fn put_frame<W: Write + ?Sized>(w: &mut Hashing<'_, W>, frame: &mut Vec<u8>) -> io::Result<()> {
    if frame.is_empty() {
        return Ok(());
    }
    w.put(&[TAG_RECORDS])?;
    blob(w, frame)?;
    frame.clear();
    Ok(())
}

fn blob<W: Write + ?Sized>(w: &mut Hashing<'_, W>, b: &[u8]) -> io::Result<()> {
    w.put(&(b.len() as u32).to_le_bytes())?;
    w.put(b)
}

impl Stream {
    /// Writes a snapshot of the live messages from `from_seq` on, the config and the
    /// consumers to `out`. Writers wait while it runs (one point in time).
    pub fn snapshot<W: Write + ?Sized>(
        &self,
        out: &mut W,
        from_seq: u64,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let consumers = self.consumer_snapshots();
        let config = serde_json::to_vec(&self.config())
            .map_err(|e| SnapshotError::Corrupt(format!("config: {e}")))?;
        let st = self.s.state.read();
        if self.s.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(SnapshotError::Closed);
        }
        let mut w = Hashing {
            out,
            h: Xxh3::new(),
            n: 0,
        };
        w.put(&MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        blob(&mut w, &config)?;
        let last_seq = st.last_seq;
        w.put(&from_seq.to_le_bytes())?;
        w.put(&last_seq.to_le_bytes())?;
        // The header is checked on its own, before a restore creates anything from it.
        let head_sum = w.h.digest();
        w.put(&head_sum.to_le_bytes())?;
        let mut messages = 0u64;
        let mut frame = Vec::with_capacity(FRAME + 4096);
        for b in &st.blocks {
            let bytes = b.bytes();
            for seq in b.first_seq.max(from_seq).max(st.floor)..b.end_seq() {
                // The block's own slots, not a search per sequence: `find` without the
                // block lookup.
                if seq > st.last_seq || st.deletes.contains(seq) {
                    continue;
                }
                let Some(off) = b.offset_of(seq) else {
                    continue;
                };
                // A damaged record is left out: the snapshot carries only what reads return.
                let Ok(r) = b.record_at(off) else { continue };
                if r.kind != Kind::Msg || r.seq != seq {
                    continue;
                }
                frame.extend_from_slice(&bytes[off..off + r.len]);
                messages += 1;
                if frame.len() >= FRAME {
                    put_frame(&mut w, &mut frame)?;
                }
            }
        }
        drop(st);
        put_frame(&mut w, &mut frame)?;
        for (name, saved) in &consumers {
            w.put(&[TAG_CONSUMER])?;
            blob(&mut w, name.as_bytes())?;
            blob(&mut w, saved)?;
        }
        w.put(&[TAG_END])?;
        w.put(&messages.to_le_bytes())?;
        let sum = w.h.digest();
        w.put(&sum.to_le_bytes())?;
        w.out.flush()?;
        Ok(SnapshotInfo {
            from_seq,
            last_seq,
            messages,
            bytes: w.n,
        })
    }

    /// Stores `recs` (decoded snapshot records, in sequence order) with their own sequences,
    /// timestamps, TTLs and flags, under one hold of the write lock; records at or below the
    /// last sequence (a resumed restore) are passed over. Rollups are not applied again: the
    /// snapshot holds what they left.
    fn restore_records(&self, recs: &[record::RecordRef<'_>]) -> Result<(), SnapshotError> {
        self.check_writable()?;
        let lsn = {
            let mut st = self.s.state.write();
            for r in recs {
                if r.seq <= st.last_seq {
                    continue;
                }
                let subject = std::str::from_utf8(r.subject)
                    .map_err(|_| SnapshotError::Corrupt(format!("subject of {}", r.seq)))?;
                let mut m = NewMessage::new(subject, r.payload).with_headers(r.headers);
                m.ttl = r.ttl.and_then(Ttl::from_raw);
                m.msg_id = Some(r.msg_id).filter(|id| !id.is_empty());
                let flags = r.flags & (FLAG_MARKER | FLAG_ROLLUP_SUB | FLAG_ROLLUP_ALL);
                self.put_unlimited(&mut st, r.seq, r.ts, flags, &m)?;
            }
            st.lsn
        };
        let last = self.s.state.read().last_seq;
        self.after_write(lsn, last)
            .map_err(|e| SnapshotError::Append(e.into()))?;
        Ok(())
    }
}

/// A snapshot's header.
struct Header {
    config: StreamConfig,
    last_seq: u64,
    from_seq: u64,
}

fn read_header<R: Read + ?Sized>(r: &mut Hashed<'_, R>) -> Result<Header, SnapshotError> {
    let mut magic = [0u8; 8];
    r.take(&mut magic)?;
    if magic != MAGIC {
        return Err(SnapshotError::Corrupt("not a tidelog snapshot".into()));
    }
    let mut v = [0u8; 2];
    r.take(&mut v)?;
    let version = u16::from_le_bytes(v);
    if version != VERSION {
        return Err(SnapshotError::Corrupt(format!(
            "snapshot version {version}"
        )));
    }
    let config = r.blob(MAX_META)?;
    let from_seq = r.u64()?;
    let last_seq = r.u64()?;
    let want = r.h.digest();
    if r.u64()? != want {
        return Err(SnapshotError::Corrupt(
            "snapshot header checksum does not match".into(),
        ));
    }
    let config: StreamConfig = serde_json::from_slice(&config)
        .map_err(|e| SnapshotError::Corrupt(format!("config: {e}")))?;
    Ok(Header {
        config,
        last_seq,
        from_seq,
    })
}

/// Reads one frame: records (into `buf`), a consumer, or the end. Returns its tag.
fn read_frame<R: Read + ?Sized>(
    r: &mut Hashed<'_, R>,
    buf: &mut Vec<u8>,
    consumers: &mut Vec<(String, Vec<u8>)>,
) -> Result<u8, SnapshotError> {
    let tag = r.u8()?;
    match tag {
        TAG_RECORDS => *buf = r.blob(MAX_FRAME)?,
        TAG_CONSUMER => {
            let name = String::from_utf8(r.blob(4096)?)
                .map_err(|_| SnapshotError::Corrupt("consumer name".into()))?;
            consumers.push((name, r.blob(MAX_META)?));
        }
        TAG_END => {}
        t => return Err(SnapshotError::Corrupt(format!("frame tag {t}"))),
    }
    Ok(tag)
}

impl Store {
    /// Restores a snapshot into the stream it names: created from the snapshot's config if
    /// absent, or continued if present (a resumed restore: what it already holds is passed
    /// over). Sequences and timestamps are the snapshot's; the stream's limits are enforced at
    /// the end, and its consumers are restored if it had none.
    pub fn restore<R: Read + ?Sized>(
        &self,
        inp: &mut R,
    ) -> Result<(Stream, SnapshotInfo), SnapshotError> {
        let mut r = Hashed {
            inp,
            h: Xxh3::new(),
            n: 0,
        };
        let head = read_header(&mut r)?;
        let s = match self.stream(&head.config.name) {
            Ok(s) => s,
            Err(_) => self.create_stream(head.config.clone())?,
        };
        let fresh_consumers = s.consumer_names().is_empty();
        let mut buf = Vec::new();
        let mut messages = 0u64;
        let mut consumers = Vec::new();
        loop {
            match read_frame(&mut r, &mut buf, &mut consumers)? {
                // A frame is applied as it arrives (every record checked first), so what came
                // intact before a failure stays: a resumed restore goes on from it.
                TAG_RECORDS => messages += apply_frame(&s, &buf)?,
                TAG_END => break,
                _ => {}
            }
        }
        let count = r.u64()?;
        let want = r.h.digest();
        let sum = r.u64()?;
        if sum != want || count != messages {
            return Err(SnapshotError::Corrupt(
                "snapshot checksum does not match".into(),
            ));
        }
        let last = s.state().last_seq;
        if last < head.last_seq {
            s.skip(head.last_seq - last)?;
        }
        if fresh_consumers {
            s.restore_consumers(&consumers)?;
        }
        // An interest stream keeps only what its restored consumers still need.
        s.recheck_retention();
        s.enforce_limits()?;
        Ok((
            s,
            SnapshotInfo {
                from_seq: head.from_seq,
                last_seq: head.last_seq,
                messages,
                bytes: r.n,
            },
        ))
    }
}

/// Decodes (checksums verified) and stores the records back to back in `frame`: every record
/// up to the first bad one, whose error is then returned. Returns how many it held.
fn apply_frame(s: &Stream, frame: &[u8]) -> Result<u64, SnapshotError> {
    let mut recs: Vec<record::RecordRef<'_>> = Vec::new();
    let mut at = 0;
    let mut bad = None;
    while at < frame.len() {
        let r = match record::decode(&frame[at..]) {
            Ok(r) if r.kind == Kind::Msg => r,
            Ok(r) => {
                bad = Some(format!("record {} is not a message", r.seq));
                break;
            }
            Err(e) => {
                bad = Some(format!("record at frame offset {at}: {e:?}"));
                break;
            }
        };
        if recs.last().is_some_and(|p| p.seq >= r.seq) {
            bad = Some(format!("record {} out of order", r.seq));
            break;
        }
        at += r.len;
        recs.push(r);
    }
    s.restore_records(&recs)?;
    match bad {
        Some(why) => Err(SnapshotError::Corrupt(why)),
        None => Ok(recs.len() as u64),
    }
}
