//! Progress bars on stderr that appear only once a phase has run for a second, and never
//! with `--json` or when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a phase runs before its bar is drawn.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Redraw period of a shown bar, and of a spinner (a call that reports no progress of its own).
const SPIN_EVERY: Duration = Duration::from_millis(100);

/// What a bar counts.
#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Items,
}

/// Every bar is drawn through one `MultiProgress`, so bars of concurrent phases (appends
/// and consumers) stack instead of overwriting each other's line.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// Whether bars may be drawn at all; a bar in a log file is noise.
fn drawable(enabled: bool) -> bool {
    enabled && std::io::stderr().is_terminal()
}

/// A progress bar that stays hidden for the first second (and for good with `--json`). A
/// timer reveals it, so a phase that reports nothing for a while (one long fdatasync, or the
/// first batch of huge messages) still shows its bar, and a steady tick keeps it moving.
pub struct Bar {
    pb: ProgressBar,
    /// Dropping the sender tells the timer the phase is over.
    done: Mutex<Option<Sender<()>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl Bar {
    pub fn new(enabled: bool, label: &'static str, len: u64, unit: Unit) -> Bar {
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        pb.set_style(style(unit));
        pb.set_prefix(label);
        // An empty bar (no consumers to count) has nothing to show.
        let (done, timer) = match drawable(enabled) && len > 0 {
            true => reveal_later(&pb),
            false => (None, None),
        };
        Bar {
            pb,
            done: Mutex::new(done),
            timer: Mutex::new(timer),
        }
    }

    pub fn inc(&self, n: u64) {
        self.pb.inc(n);
    }

    pub fn set(&self, pos: u64) {
        self.pb.set_position(pos);
    }

    pub fn message(&self, msg: &'static str) {
        self.pb.set_message(msg);
    }

    /// Ends the phase: the timer is stopped (and waited for, so it cannot reveal the bar
    /// afterwards), then the bar is cleared.
    pub fn finish(&self) {
        drop(take(&self.done));
        if let Some(t) = take(&self.timer) {
            let _ = t.join();
        }
        self.pb.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The value in `m`, whatever a panicking holder left (a bar is only drawing).
fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// A thread that draws `pb` if the phase is still running after `SHOW_AFTER`. Without the
/// thread the phase still runs; only its bar is lost.
fn reveal_later(pb: &ProgressBar) -> (Option<Sender<()>>, Option<JoinHandle<()>>) {
    let (done, rx) = mpsc::channel::<()>();
    let pb = pb.clone();
    let timer = thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            if rx.recv_timeout(SHOW_AFTER) == Err(RecvTimeoutError::Timeout) {
                bars().add(pb.clone());
                pb.enable_steady_tick(SPIN_EVERY);
            }
        })
        .ok();
    (Some(done), timer)
}

/// Runs `f`, which reports no progress (a `Store::open`), under a spinner that appears if it
/// takes longer than a second.
pub fn during<T>(enabled: bool, label: &'static str, f: impl FnOnce() -> T) -> T {
    if !drawable(enabled) {
        return f();
    }
    let (done, rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        // Without the spinner thread the call still runs; only the spinner is lost.
        let _ = thread::Builder::new()
            .name("progress".into())
            .spawn_scoped(s, move || spin(label, &rx));
        let r = f();
        drop(done);
        r
    })
}

fn spin(label: &'static str, done: &Receiver<()>) {
    if done.recv_timeout(SHOW_AFTER) != Err(RecvTimeoutError::Timeout) {
        return;
    }
    let pb = bars().add(ProgressBar::new_spinner());
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} {spinner} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_prefix(label);
    pb.enable_steady_tick(SPIN_EVERY);
    let _ = done.recv();
    pb.finish_and_clear();
}

fn style(unit: Unit) -> ProgressStyle {
    let template = match unit {
        Unit::Bytes => "{prefix:>12} [{bar:24}] {binary_bytes}/{binary_total_bytes} {msg}",
        Unit::Items => "{prefix:>12} [{bar:24}] {human_pos}/{human_len} eta {eta} {msg}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
