//! Progress bars on stderr that appear only once a phase has run for a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a phase runs before its bar is drawn.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// What a bar counts.
#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Items,
}

/// A progress bar that stays hidden for the first second (and for good with `--json`).
pub struct Bar {
    pb: ProgressBar,
    start: Instant,
    shown: AtomicBool,
}

impl Bar {
    pub fn new(enabled: bool, label: &'static str, len: u64, unit: Unit) -> Bar {
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        pb.set_style(style(unit));
        pb.set_prefix(label);
        Bar {
            pb,
            start: Instant::now(),
            shown: AtomicBool::new(!enabled),
        }
    }

    pub fn inc(&self, n: u64) {
        self.pb.inc(n);
        self.reveal();
    }

    pub fn set(&self, pos: u64) {
        self.pb.set_position(pos);
        self.reveal();
    }

    pub fn message(&self, msg: &'static str) {
        self.pb.set_message(msg);
        self.reveal();
    }

    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }

    fn reveal(&self) {
        if self.shown.load(Ordering::Relaxed) || self.start.elapsed() < SHOW_AFTER {
            return;
        }
        if !self.shown.swap(true, Ordering::AcqRel) {
            self.pb.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
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
