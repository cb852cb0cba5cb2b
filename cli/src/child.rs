//! `tidelog bench-child` (hidden): appends until killed, reporting acknowledged messages on
//! stdout, so `tidelog bench` can SIGKILL it and time crash recovery.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tidelog::{NewMessage, Store, StoreOptions, Stream};

use crate::fail::{Context, Fail};
use crate::parse::{number32, size_range};
use crate::workload::{Mode, SizeRange, Workload, STREAM};

/// Acknowledged messages between progress lines.
pub const LINE_EVERY: u64 = 10_000;
/// Longest time between progress lines (slow durable appends still report).
const LINE_AT_LEAST_EVERY: Duration = Duration::from_millis(50);

/// Options of the hidden `tidelog bench-child`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChildArgs {
    /// Store directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::None)]
    pub durability: Mode,
    #[arg(long, value_name = "SIZE|MIN..MAX", default_value = "128", value_parser = size_range)]
    pub message_size: SizeRange,
    #[arg(long, value_name = "K", default_value_t = 1_000,
          value_parser = number32::<1, 10_000_000>)]
    pub subjects: u32,
    #[arg(long, value_name = "B", default_value_t = 1,
          value_parser = number32::<1, 1_000_000>)]
    pub batch: u32,
    /// Stop after this many messages (a safety net should the parent vanish).
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub max_messages: u64,
    /// Stop after this many seconds (a safety net should the parent vanish).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub max_secs: u64,
}

/// Appends until killed (or a safety limit), printing `acked <count>` lines. Without TTLs,
/// whatever the parent's run used: an expired message must not look like a lost one.
pub fn run(a: &ChildArgs) -> Result<(), Fail> {
    let w = Workload::new(a.message_size, a.subjects, a.durability, None);
    let store = Store::open(&a.dir, StoreOptions::default())
        .with_context(|| format!("opening a store in {}", a.dir.display()))?;
    let stream = match store.stream(STREAM) {
        Ok(s) => s,
        Err(_) => store.create_stream(w.config()).context("creating stream")?,
    };
    append_until_killed(&stream, &w, a)?;
    store.close().context("closing the store")
}

fn append_until_killed(stream: &Stream, w: &Workload, a: &ChildArgs) -> Result<(), Fail> {
    // None: a limit too far off for the clock to hold is no limit.
    let deadline = Instant::now().checked_add(Duration::from_secs(a.max_secs));
    let batch = u64::from(a.batch);
    let mut out = std::io::stdout().lock();
    let mut msgs: Vec<NewMessage<'_>> = Vec::with_capacity(a.batch as usize);
    let (mut acked, mut next_line, mut last_line) = (0u64, LINE_EVERY, Instant::now());
    while acked < a.max_messages && deadline.is_none_or(|d| Instant::now() < d) {
        if batch == 1 {
            stream.append_msg(&w.message(acked)).context("append")?;
        } else {
            msgs.clear();
            msgs.extend((acked..acked + batch).map(|i| w.message(i)));
            stream.append_batch(&msgs).context("append_batch")?;
        }
        acked += batch;
        if acked >= next_line || last_line.elapsed() >= LINE_AT_LEAST_EVERY {
            writeln!(out, "acked {acked}").context("reporting to the parent")?;
            next_line = (acked / LINE_EVERY + 1) * LINE_EVERY;
            last_line = Instant::now();
        }
    }
    writeln!(out, "acked {acked}").context("reporting to the parent")
}
