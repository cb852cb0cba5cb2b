//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus replay test, so the
//! normal test run exercises exactly what the fuzzers do. None of them may panic.

use std::path::Path;
use std::sync::Arc;

use crate::block::{self, Scanned};
use crate::checkpoint::Checkpoint;
use crate::io::{MemVfs, OpenMode, Vfs};
use crate::record;
use crate::recovery::recover;
use crate::state::Block;

/// Decodes arbitrary bytes as a record; a record that decodes must re-encode identically.
pub fn record_decoder(data: &[u8]) {
    if let Ok(r) = record::decode(data) {
        let mut again = vec![0u8; r.len];
        record::encode_into(
            &mut again,
            r.kind,
            r.flags,
            r.seq,
            r.ts,
            r.subject,
            r.headers,
            r.payload,
            record::Extras {
                ttl: r.ttl,
                msg_id: r.msg_id,
            },
        );
        assert_eq!(&again[..], &data[..r.len], "decode/encode round trip");
    }
    let _ = block::scan(data, 0, data.len(), data.first() == Some(&1), |_, s| {
        if let Scanned::Record(r) = s {
            assert!(r.len >= record::MIN_RECORD_LEN);
        }
    });
    let _ = Checkpoint::decode(data);
    if let Some(t) = block::decode_trailer(data) {
        // Either trailer form: its tables must read within the file.
        let map = Arc::new(crate::io::Mapping::Shared(Arc::new(data.to_vec())));
        let offsets = t.offsets(&map, t.slots);
        for i in 0..t.slots.min(1 << 16) {
            let _ = offsets.get(i);
        }
        if let Some(s) = t.subjects(data) {
            for i in 0..t.slots.min(1 << 16) {
                let _ = s.id(i);
            }
        }
    }
}

/// Recovers a stream whose only block file holds `data` (after a valid header when
/// `data` starts with a 0 byte), then checks its invariants and that it accepts appends.
pub fn block_recovery(data: &[u8]) {
    let vfs = MemVfs::new();
    let dir = Path::new("/s");
    if vfs.create_dir_all(dir).is_err() {
        return;
    }
    let mut bytes = Vec::new();
    if data.first() == Some(&0) {
        let h = block::BlockHeader {
            stream_id: 7,
            block_id: 1,
            first_seq: 1,
            created_ns: 0,
        };
        bytes.extend_from_slice(&h.encode());
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let Ok(f) = vfs.open(&Block::path(dir, 1), OpenMode::CreateNew) else {
        return;
    };
    if f.write_all_at(&bytes, 0).is_err() {
        return;
    }
    let Ok(rec) = recover(&vfs, dir, 7, 1 << 16) else {
        return;
    };
    if let Err(e) = rec.state.check_invariants() {
        panic!("invariants after recovery: {e}");
    }
    let clock: Arc<dyn crate::Clock> = Arc::new(crate::ManualClock::new(1));
    let cfg = crate::StreamConfig::new("s").durability(crate::Durability::None);
    let s = crate::Stream::from_parts(
        cfg,
        Arc::new(vfs),
        clock,
        dir.to_path_buf(),
        true,
        rec.state,
        rec.lease,
        rec.report,
    );
    if let Ok(a) = s.append("a.b", b"", b"x") {
        assert!(s.load(a.seq).is_ok(), "fresh append must load");
    }
}

/// Restores arbitrary bytes as a snapshot into an empty store: never a panic, and whatever it
/// restored (all of it, or the frames before the damage) passes the invariants and reads back.
pub fn snapshot_restore(data: &[u8]) {
    let opts = crate::StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let Ok(store) = crate::Store::open_with_vfs("/f", Arc::new(MemVfs::new()), opts) else {
        return;
    };
    let _ = store.restore(&mut &data[..]);
    for name in store.stream_names() {
        let Ok(s) = store.stream(&name) else { continue };
        if let Err(e) = s.check_invariants() {
            panic!("invariants after a restore: {e}");
        }
        let mut from = 1;
        while let Ok(Some(m)) = s.load_next(">", from) {
            from = m.seq + 1;
        }
    }
}
