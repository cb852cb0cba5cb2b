//! The consumers of `tidelog bench`: one durable consumer and one thread each, started with
//! the producers, each reading every matching message once and acknowledging as `--ack`
//! says, until the producers are done and nothing is left to fetch.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{AckOutcome, Clock, Consumer, ConsumerConfig, Delivery, Stream, SystemClock};

use super::{new_histogram, AckMode, BenchArgs, Signals};
use crate::fail::{Context, Fail};
use crate::progress::Bar;

/// Most messages one fetch asks for; also each consumer's max_ack_pending, so an explicit
/// consumer that acknowledged its last fetch always has room for a full one.
pub const FETCH: usize = 256;
/// Most bytes one fetch asks for (one message always comes): bounds a fetch of large
/// messages as a client's pull would.
pub const FETCH_BYTES: usize = 8 << 20;
/// First and longest pause after a fetch that found nothing new (the consumer caught up with
/// the producers): short enough not to inflate end-to-end latency much, long enough not to
/// take a core from the producers.
const IDLE_MIN: Duration = Duration::from_micros(50);
const IDLE_MAX: Duration = Duration::from_millis(1);

/// What one consumer saw.
pub struct Tally {
    pub name: String,
    /// First deliveries.
    pub msgs: u64,
    /// From the producers' start to this consumer's last delivery.
    pub secs: f64,
    /// Fetches that returned messages, and those that found nothing.
    pub fetches: u64,
    pub idle_fetches: u64,
    /// Deliveries of a message delivered before (none expected: every message is acked at once).
    pub redelivered: u64,
    /// Acks the consumer refused as not pending (a message that expired after its delivery).
    pub acks_not_pending: u64,
    /// The consumer's own counters once it was done.
    pub ack_floor: u64,
    pub last_delivered: u64,
    pub ack_pending: u64,
    /// Fetch call latency (non-empty fetches), ack call latency, and stored -> fetched.
    pub fetch: Histogram<u64>,
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
}

/// The consume figures of a run.
pub struct ConsumeResult {
    pub ack: AckMode,
    /// Matching messages appended: what each consumer should read.
    pub expected: u64,
    pub runs: Vec<Tally>,
    /// The slowest consumer's time.
    pub secs: f64,
    pub fetch: Histogram<u64>,
    pub ack_lat: Histogram<u64>,
    pub e2e: Histogram<u64>,
}

/// Creates the consumers `bench-c0`, `bench-c1`, ... before anything is appended.
pub fn create(stream: &Stream, args: &BenchArgs) -> Result<Vec<Consumer>, Fail> {
    (0..args.consumer_count())
        .map(|i| {
            let mut cfg = ConsumerConfig::new(format!("bench-c{i}"))
                .ack(args.ack_mode().policy())
                .max_ack_pending(FETCH as u64);
            if let Some(f) = &args.filter {
                cfg = cfg.filters([f.as_str()]);
            }
            stream
                .create_consumer(cfg)
                .with_context(|| format!("creating consumer bench-c{i}"))
        })
        .collect()
}

/// One consumer thread's view of the run.
pub struct Reader<'a> {
    pub consumer: &'a Consumer,
    pub ack: AckMode,
    pub bar: &'a Bar,
    pub sig: &'a Signals,
}

impl Reader<'_> {
    pub fn run(self) -> Result<Tally, Fail> {
        drop(self.sig.gate.read());
        let start = Instant::now();
        let mut t = Tally::new(self.consumer.name())?;
        let mut idle = IDLE_MIN;
        while !self.sig.stop.load(Ordering::Relaxed) {
            // Read before the fetch: an empty fetch after every append returned means done.
            let appended = self.sig.appended.load(Ordering::Acquire);
            let batch = self.fetch(&mut t)?;
            if batch.is_empty() {
                if appended {
                    break;
                }
                thread::sleep(idle);
                idle = (idle * 2).min(IDLE_MAX);
                continue;
            }
            idle = IDLE_MIN;
            let fresh = take(&batch, &mut t)?;
            self.acknowledge(&batch, &mut t)?;
            self.bar.inc(fresh);
            t.secs = start.elapsed().as_secs_f64();
        }
        self.settle(t)
    }

    fn fetch(&self, t: &mut Tally) -> Result<Vec<Delivery>, Fail> {
        let start = Instant::now();
        let batch = self
            .consumer
            .fetch(FETCH, FETCH_BYTES)
            .with_context(|| format!("fetch by consumer {}", t.name))?;
        if batch.is_empty() {
            t.idle_fetches += 1;
        } else {
            t.fetches += 1;
            t.fetch.saturating_record(start.elapsed().as_nanos() as u64);
        }
        Ok(batch)
    }

    fn acknowledge(&self, batch: &[Delivery], t: &mut Tally) -> Result<(), Fail> {
        let seqs: Vec<u64> = match self.ack {
            AckMode::Explicit => batch.iter().map(|d| d.message.seq).collect(),
            AckMode::All => batch
                .iter()
                .map(|d| d.message.seq)
                .max()
                .into_iter()
                .collect(),
            AckMode::None => Vec::new(),
        };
        for seq in seqs {
            let start = Instant::now();
            let outcome = self
                .consumer
                .ack(seq)
                .with_context(|| format!("ack of {seq} by consumer {}", t.name))?;
            t.ack.saturating_record(start.elapsed().as_nanos() as u64);
            if outcome == AckOutcome::NotPending {
                t.acks_not_pending += 1;
            }
        }
        Ok(())
    }

    /// Reads the consumer's counters once it is done (where its ack floor ended up).
    fn settle(self, mut t: Tally) -> Result<Tally, Fail> {
        let st = self
            .consumer
            .state()
            .with_context(|| format!("state of consumer {}", t.name))?;
        t.ack_floor = st.ack_floor.stream_seq;
        t.last_delivered = st.delivered.stream_seq;
        t.ack_pending = st.num_ack_pending;
        Ok(t)
    }
}

/// Counts a fetched batch; returns its first deliveries. First deliveries must come in
/// stream order: anything else is a consumer bug worth failing the run for.
fn take(batch: &[Delivery], t: &mut Tally) -> Result<u64, Fail> {
    let now = SystemClock.now_ns();
    let mut fresh = 0;
    for d in batch {
        let m = &d.message;
        t.e2e
            .saturating_record(now.saturating_sub(m.ts).max(0) as u64);
        if d.delivery_count > 1 {
            t.redelivered += 1;
            continue;
        }
        if m.seq <= t.last_delivered {
            return Err(Fail::new(format!(
                "consumer {} delivered sequence {} after {}",
                t.name, m.seq, t.last_delivered
            )));
        }
        t.last_delivered = m.seq;
        fresh += 1;
    }
    t.msgs += fresh;
    Ok(fresh)
}

impl Tally {
    fn new(name: &str) -> Result<Tally, Fail> {
        Ok(Tally {
            name: name.to_owned(),
            msgs: 0,
            secs: 0.0,
            fetches: 0,
            idle_fetches: 0,
            redelivered: 0,
            acks_not_pending: 0,
            ack_floor: 0,
            last_delivered: 0,
            ack_pending: 0,
            fetch: new_histogram()?,
            ack: new_histogram()?,
            e2e: new_histogram()?,
        })
    }
}

/// Merges the consumers' figures. Without a TTL every consumer must have read every
/// matching message; with one, those that expired first are missing, and counted.
pub fn result(
    runs: Vec<Tally>,
    ack: AckMode,
    expected: u64,
    ttl: bool,
) -> Result<ConsumeResult, Fail> {
    let (mut fetch, mut ack_lat, mut e2e) = (new_histogram()?, new_histogram()?, new_histogram()?);
    for t in &runs {
        if !ttl && t.msgs != expected {
            return Err(Fail::new(format!(
                "consumer {} received {} of the {expected} matching messages",
                t.name, t.msgs
            )));
        }
        fetch.add(&t.fetch).context("merging fetch latencies")?;
        ack_lat.add(&t.ack).context("merging ack latencies")?;
        e2e.add(&t.e2e).context("merging end-to-end latencies")?;
    }
    let secs = runs.iter().map(|t| t.secs).fold(0.0, f64::max);
    Ok(ConsumeResult {
        ack,
        expected,
        runs,
        secs,
        fetch,
        ack_lat,
        e2e,
    })
}
