//! io_uring write path: a group commit is one submission of linked writes and an fdatasync.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::Mutex;

const ENTRIES: u32 = 64;

pub(crate) struct Ring {
    ring: Mutex<IoUring>,
}

impl Ring {
    /// Creates a ring and round-trips a no-op through it; seccomp profiles that forbid
    /// io_uring fail here (ENOSYS/EPERM), not on the first real write.
    pub(crate) fn probe() -> io::Result<Ring> {
        let mut ring = IoUring::new(ENTRIES)?;
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: a no-op references no memory.
        unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("sq full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("io_uring probe: no completion"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(Ring {
            ring: Mutex::new(ring),
        })
    }

    pub(crate) fn write_and_sync(&self, file: &File, parts: &[(&[u8], u64)]) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        let mut ring = self.ring.lock();
        // Writes are split into batches that fit the ring; only the last batch carries the
        // fdatasync, linked behind its writes so it runs only if they all succeeded.
        let batch = (ENTRIES as usize) - 1;
        let chunks: Vec<&[(&[u8], u64)]> = parts.chunks(batch.max(1)).collect();
        if chunks.is_empty() {
            return submit(&mut ring, &[], fd, true);
        }
        for (i, c) in chunks.iter().enumerate() {
            submit(&mut ring, c, fd, i + 1 == chunks.len())?;
        }
        Ok(())
    }
}

fn submit(ring: &mut IoUring, parts: &[(&[u8], u64)], fd: types::Fd, sync: bool) -> io::Result<()> {
    let mut n = 0usize;
    for (buf, off) in parts {
        let len = u32::try_from(buf.len()).map_err(|_| io::Error::other("write too large"))?;
        let mut e = opcode::Write::new(fd, buf.as_ptr(), len)
            .offset(*off)
            .build()
            .user_data(n as u64);
        if sync || n + 1 < parts.len() {
            e = e.flags(squeue::Flags::IO_LINK);
        }
        // SAFETY: `buf` outlives the submission: we wait for every completion below before
        // returning, and the caller's borrow lasts for the whole call.
        unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("sq full"))?;
        n += 1;
    }
    if sync {
        let e = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(n as u64);
        // SAFETY: fsync references no memory.
        unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("sq full"))?;
        n += 1;
    }
    ring.submit_and_wait(n)?;
    let mut first_err: Option<io::Error> = None;
    let mut first_was_cancel = false;
    let mut seen = 0;
    while seen < n {
        let cqes: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        if cqes.is_empty() {
            ring.submit_and_wait(n - seen)?;
            continue;
        }
        for (ud, res) in cqes {
            seen += 1;
            let short = (ud as usize) < parts.len()
                && res >= 0
                && res as usize != parts[ud as usize].0.len();
            let err = if res < 0 {
                Some(io::Error::from_raw_os_error(-res))
            } else if short {
                // A short write through io_uring: reported, and the caller poisons the stream.
                Some(io::Error::new(io::ErrorKind::WriteZero, "short write"))
            } else {
                None
            };
            // Entries cancelled because an earlier link failed say ECANCELED; keep the cause.
            let cancelled = res == -rustix::io::Errno::CANCELED.raw_os_error();
            if let Some(e) = err {
                if first_err.is_none() || (!cancelled && first_was_cancel) {
                    first_err = Some(e);
                    first_was_cancel = cancelled;
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
