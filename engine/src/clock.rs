//! Time, behind a trait so expiry and redelivery tests move it by hand instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock time in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        // Read the clock directly: `SystemTime` arithmetic costs more than the call itself on
        // the append path.
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        t.tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ns: i64) -> Self {
        ManualClock(AtomicI64::new(start_ns))
    }
    pub fn advance_ns(&self, d: i64) {
        self.0.fetch_add(d, Ordering::SeqCst);
    }
    pub fn set_ns(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
