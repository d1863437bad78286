//! What one benchmark run counts: sent, delivered (each sequence number once), duplicates,
//! errors, SIP response codes, and the latency histogram (HdrHistogram, microseconds).
//!
//! A [`Recorder`] is shared by the sending and receiving tasks of one run; the [`Slot`] holds
//! the recorder of the run in progress, so long-lived receivers (the XMPP clients, the SIP
//! sink) count into the right run and ignore stragglers of an earlier one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::body::Stamp;

/// Highest latency the histogram tracks exactly (60 s); longer ones saturate.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How an arrival was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival of this sequence number: delivered.
    Delivered,
    /// Seen before.
    Duplicate,
    /// Another run's message, or a sequence number out of range.
    Foreign,
}

/// The counters of one run.
#[derive(Debug)]
pub struct Recorder {
    run: u32,
    seen: Vec<AtomicU8>,
    hist: Mutex<Histogram<u64>>,
    sent: AtomicU64,
    send_failures: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    foreign: AtomicU64,
    errors: AtomicU64,
    first_send_us: AtomicU64,
    last_send_us: AtomicU64,
    last_arrival_us: AtomicU64,
    responses: Mutex<BTreeMap<u16, u64>>,
}

/// The figures of one run, derived from a [`Recorder`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Messages handed to the transport.
    pub sent: u64,
    /// Sends that failed locally.
    pub send_failures: u64,
    /// Distinct messages that arrived.
    pub delivered: u64,
    /// `sent - delivered` (after the drain).
    pub lost: u64,
    /// Arrivals of an already delivered message.
    pub duplicates: u64,
    /// Error answers (XMPP error stanzas; SIP errors are in `responses`).
    pub errors: u64,
    /// Arrivals belonging to no message of this run.
    pub foreign: u64,
    /// Rate the sender achieved: sent / (last send - first send), msg/s.
    pub send_rate: f64,
    /// delivered / (last arrival - first send), msg/s.
    pub throughput: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 95th percentile, µs.
    pub p95_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Maximum, µs.
    pub max_us: u64,
    /// SIP final responses by status code (SIP → XMPP only).
    pub responses: BTreeMap<u16, u64>,
    /// First send, µs on the bench clock.
    pub first_send_us: u64,
    /// Last arrival, µs on the bench clock.
    pub last_arrival_us: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking recorder thread leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// A recorder for run `run` of `messages` messages (sequence numbers `0..messages`).
    pub fn new(run: u32, messages: u32) -> Recorder {
        // 3 significant digits from 1 µs to 60 s: the bounds are constants that
        // Histogram::new_with_bounds accepts (low >= 1, high >= 2 * low, sigfig <= 5).
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .unwrap_or_else(|_| unreachable!("valid constant histogram bounds"));
        Recorder {
            run,
            seen: (0..messages).map(|_| AtomicU8::new(0)).collect(),
            hist: Mutex::new(hist),
            sent: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_send_us: AtomicU64::new(u64::MAX),
            last_send_us: AtomicU64::new(0),
            last_arrival_us: AtomicU64::new(0),
            responses: Mutex::new(BTreeMap::new()),
        }
    }

    /// The run this recorder counts.
    pub fn run(&self) -> u32 {
        self.run
    }

    /// A message left at `at_us`.
    pub fn on_sent(&self, at_us: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.first_send_us.fetch_min(at_us, Ordering::Relaxed);
        self.last_send_us.fetch_max(at_us, Ordering::Relaxed);
    }

    /// A send failed locally.
    pub fn on_send_failed(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `stamp` arrived at `at_us`.
    pub fn on_arrival(&self, stamp: Stamp, at_us: u64) -> Arrival {
        let slot = usize::try_from(stamp.seq)
            .ok()
            .and_then(|seq| self.seen.get(seq));
        let Some(slot) = slot.filter(|_| stamp.run == self.run) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return Arrival::Foreign;
        };
        if slot.fetch_add(1, Ordering::Relaxed) > 0 {
            // fetch_add wraps at 256 arrivals of one message: still counted as duplicates.
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return Arrival::Duplicate;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_arrival_us.fetch_max(at_us, Ordering::Relaxed);
        lock(&self.hist).saturating_record(at_us.saturating_sub(stamp.sent_us).max(1));
        Arrival::Delivered
    }

    /// An error answer to a message of this run.
    pub fn on_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A SIP final response with `code`.
    pub fn on_response(&self, code: u16) {
        *lock(&self.responses).entry(code).or_insert(0) += 1;
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Messages sent or failed so far.
    pub fn attempted(&self) -> u64 {
        self.sent() + self.send_failures.load(Ordering::Relaxed)
    }

    /// Distinct messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// SIP responses (any code) so far.
    pub fn responses(&self) -> u64 {
        lock(&self.responses).values().sum()
    }

    /// The figures so far.
    pub fn summary(&self) -> Summary {
        let sent = self.sent();
        let delivered = self.delivered();
        let first = self.first_send_us.load(Ordering::Relaxed);
        let last_send = self.last_send_us.load(Ordering::Relaxed);
        let last_arrival = self.last_arrival_us.load(Ordering::Relaxed);
        let rate = |count: u64, from: u64, to: u64| {
            if count == 0 || from == u64::MAX || to <= from {
                return 0.0;
            }
            count as f64 / ((to - from) as f64 / 1e6)
        };
        let hist = lock(&self.hist);
        let pct = |q: f64| {
            if hist.is_empty() {
                0
            } else {
                hist.value_at_quantile(q)
            }
        };
        Summary {
            sent,
            send_failures: self.send_failures.load(Ordering::Relaxed),
            delivered,
            lost: sent.saturating_sub(delivered),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            errors: self.errors(),
            foreign: self.foreign.load(Ordering::Relaxed),
            // `sent - 1` intervals between the first and the last send.
            send_rate: rate(sent.saturating_sub(1), first, last_send),
            throughput: rate(delivered, first, last_arrival),
            p50_us: pct(0.50),
            p95_us: pct(0.95),
            p99_us: pct(0.99),
            max_us: if hist.is_empty() { 0 } else { hist.max() },
            responses: lock(&self.responses).clone(),
            first_send_us: if first == u64::MAX { 0 } else { first },
            last_arrival_us: last_arrival,
        }
    }
}

/// The recorder of the run in progress, for long-lived receivers.
#[derive(Debug)]
pub struct Slot(RwLock<Arc<Recorder>>);

impl Default for Slot {
    fn default() -> Self {
        Slot(RwLock::new(Arc::new(Recorder::new(0, 0))))
    }
}

impl Slot {
    /// The current recorder.
    pub fn get(&self) -> Arc<Recorder> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `recorder` current.
    pub fn set(&self, recorder: Arc<Recorder>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = recorder;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(run: u32, seq: u32, sent_us: u64) -> Stamp {
        Stamp { run, seq, sent_us }
    }

    #[test]
    fn counts_delivered_duplicates_foreign_and_loss() {
        let rec = Recorder::new(3, 4);
        for t in [0u64, 1000, 2000, 3000] {
            rec.on_sent(t);
        }
        assert_eq!(rec.on_arrival(stamp(3, 0, 0), 500), Arrival::Delivered);
        assert_eq!(rec.on_arrival(stamp(3, 1, 1000), 3000), Arrival::Delivered);
        assert_eq!(rec.on_arrival(stamp(3, 1, 1000), 3100), Arrival::Duplicate);
        assert_eq!(rec.on_arrival(stamp(2, 2, 1000), 3100), Arrival::Foreign);
        assert_eq!(rec.on_arrival(stamp(3, 4, 1000), 3100), Arrival::Foreign);
        rec.on_error();
        rec.on_response(200);
        rec.on_response(200);
        rec.on_response(408);
        let s = rec.summary();
        assert_eq!((s.sent, s.delivered, s.lost), (4, 2, 2));
        assert_eq!((s.duplicates, s.foreign, s.errors), (1, 2, 1));
        assert_eq!(s.responses.get(&200), Some(&2));
        assert_eq!(s.responses.get(&408), Some(&1));
        assert_eq!(rec.responses(), 3);
        // 2 delivered between the first send (0) and the last arrival (3000 µs).
        assert!(
            (s.throughput - 2.0 / 0.003).abs() < 1e-6,
            "{}",
            s.throughput
        );
        // 3 intervals over 3 ms.
        assert!((s.send_rate - 1000.0).abs() < 1e-6, "{}", s.send_rate);
    }

    #[test]
    fn latency_percentiles_come_from_send_and_arrival_times() {
        let rec = Recorder::new(1, 100);
        for seq in 0..100u32 {
            let sent = u64::from(seq) * 10;
            rec.on_sent(sent);
            // latency = (seq + 1) ms
            rec.on_arrival(stamp(1, seq, sent), sent + (u64::from(seq) + 1) * 1000);
        }
        let s = rec.summary();
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 100;
        assert!(near(s.p50_us, 50_000), "{}", s.p50_us);
        assert!(near(s.p95_us, 95_000), "{}", s.p95_us);
        assert!(near(s.p99_us, 99_000), "{}", s.p99_us);
        assert!(near(s.max_us, 100_000), "{}", s.max_us);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn empty_run_has_zero_rates_and_percentiles() {
        let s = Recorder::new(1, 10).summary();
        assert_eq!((s.sent, s.p50_us, s.max_us), (0, 0, 0));
        assert_eq!(s.throughput, 0.0);
    }

    #[test]
    fn slot_switches_runs() {
        let slot = Slot::default();
        assert_eq!(slot.get().run(), 0);
        slot.set(Arc::new(Recorder::new(5, 1)));
        assert_eq!(slot.get().run(), 5);
    }
}
