//! Resident memory of stox and Prosody sampled through the whole benchmark (`VmRSS` of
//! `/proc/PID/status`, see `procstat`), so a phase's lowest and highest RSS can be read back
//! and memory that grows without bound shows up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Serialize;

use crate::bench::body::now_us;
use crate::bench::procstat::memory;

/// One sample: bench clock (µs) and each process's VmRSS (kB), in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    at_us: u64,
    rss_kb: Vec<Option<u64>>,
}

/// The lowest and highest RSS of one process over a window, MB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Range {
    /// Lowest VmRSS, MB.
    pub min_mb: f64,
    /// Highest VmRSS, MB.
    pub max_mb: f64,
}

/// Samples the RSS of some processes on a thread of its own.
#[derive(Debug)]
pub struct MemSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl MemSampler {
    /// Starts sampling `pids` every `every`.
    pub fn start(pids: Vec<u32>, every: Duration) -> MemSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let samples = samples.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sample = Sample {
                        at_us: now_us(),
                        rss_kb: pids.iter().map(|&p| memory(p).map(|m| m.rss_kb)).collect(),
                    };
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(sample);
                    thread::sleep(every);
                }
            })
        };
        MemSampler {
            samples,
            stop,
            handle: Some(handle),
        }
    }

    /// Process `i`'s lowest and highest RSS between `from_us` and `to_us`.
    pub fn range(&self, i: usize, from_us: u64, to_us: u64) -> Option<Range> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        range_of(&samples, i, from_us, to_us)
    }
}

fn range_of(samples: &[Sample], i: usize, from_us: u64, to_us: u64) -> Option<Range> {
    let values: Vec<u64> = samples
        .iter()
        .filter(|s| s.at_us >= from_us && s.at_us <= to_us)
        .filter_map(|s| s.rss_kb.get(i).copied().flatten())
        .collect();
    let mb = |kb: u64| kb as f64 / 1024.0;
    Some(Range {
        min_mb: mb(*values.iter().min()?),
        max_mb: mb(*values.iter().max()?),
    })
}

impl Drop for MemSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_min_and_max_inside_the_window() {
        let s = |at_us, a, b| Sample {
            at_us,
            rss_kb: vec![a, b],
        };
        let samples = vec![
            s(0, Some(1024), None),
            s(10, Some(4096), Some(2048)),
            s(20, Some(2048), Some(1024)),
            s(30, Some(8192), None),
        ];
        assert_eq!(
            range_of(&samples, 0, 5, 25),
            Some(Range {
                min_mb: 2.0,
                max_mb: 4.0
            })
        );
        assert_eq!(
            range_of(&samples, 1, 0, 30),
            Some(Range {
                min_mb: 1.0,
                max_mb: 2.0
            })
        );
        assert_eq!(range_of(&samples, 1, 25, 30), None);
    }

    #[test]
    fn samples_this_process() {
        let sampler = MemSampler::start(vec![std::process::id()], Duration::from_millis(5));
        thread::sleep(Duration::from_millis(50));
        let r = sampler.range(0, 0, u64::MAX).unwrap();
        assert!(r.min_mb > 0.0 && r.max_mb >= r.min_mb);
    }
}
