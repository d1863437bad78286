//! Pacing at an offered rate: a token bucket refilled from the elapsed time and drained on a
//! 1 ms tokio interval, in bursts of at most [`MAX_BURST`]. A sender that falls behind catches
//! up at once (the achieved send rate is reported beside the offered one).

use std::ops::Range;
use std::time::Duration;

use tokio::time::{interval, Instant, Interval, MissedTickBehavior};

/// Most messages handed out in one batch.
pub const MAX_BURST: u64 = 64;

/// How many of `total` messages are due `elapsed` after the start at `rate` per second:
/// the first at once, then one every `1/rate` s.
pub fn due(elapsed: Duration, rate: u64, total: u64) -> u64 {
    let by_now = elapsed.as_micros().saturating_mul(u128::from(rate)) / 1_000_000 + 1;
    u64::try_from(by_now).unwrap_or(u64::MAX).min(total)
}

/// Hands out sequence numbers `0..total` at `rate` per second.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    rate: u64,
    total: u64,
    done: u64,
    tick: Interval,
}

impl Pacer {
    /// Starts now.
    pub fn new(rate: u64, total: u64) -> Pacer {
        let mut tick = interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Pacer {
            start: Instant::now(),
            rate: rate.max(1),
            total,
            done: 0,
            tick,
        }
    }

    /// The next batch of sequence numbers to send now; `None` when all were handed out.
    pub async fn next_batch(&mut self) -> Option<Range<u64>> {
        loop {
            if self.done >= self.total {
                return None;
            }
            let due = due(self.start.elapsed(), self.rate, self.total);
            if due > self.done {
                let end = due.min(self.done + MAX_BURST);
                let batch = self.done..end;
                self.done = end;
                return Some(batch);
            }
            self.tick.tick().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_the_rate_and_stops_at_the_total() {
        assert_eq!(due(Duration::ZERO, 1000, 10), 1);
        assert_eq!(due(Duration::from_micros(999), 1000, 10), 1);
        assert_eq!(due(Duration::from_millis(1), 1000, 10), 2);
        assert_eq!(due(Duration::from_millis(5), 20_000, 1000), 101);
        assert_eq!(due(Duration::from_secs(10), 1000, 10), 10);
    }

    #[tokio::test]
    async fn pacer_hands_out_every_number_once_at_about_the_rate() {
        let started = std::time::Instant::now();
        let mut pacer = Pacer::new(5000, 500);
        let mut next = 0;
        while let Some(batch) = pacer.next_batch().await {
            assert_eq!(batch.start, next);
            assert!(batch.end - batch.start <= MAX_BURST);
            next = batch.end;
        }
        assert_eq!(next, 500);
        // 500 at 5000/s: 100 ms minus the first message; allow a slow machine.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(95) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
