//! CPU and memory of the processes under load, from procfs (proc(5)): `utime + stime` of
//! `/proc/PID/stat`, `VmRSS` and `VmHWM` of `/proc/PID/status`, and the kernel's UDP
//! `RcvbufErrors` of `/proc/net/snmp` (datagrams dropped because a socket's receive buffer
//! was full: on loopback, the only way a UDP datagram is lost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::body::now_us;

/// CPU time (user + system) in clock ticks from the text of `/proc/PID/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after the
    // last ')'. Then field 3 (state) is index 0, utime (field 14) index 11, stime index 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by `pid`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Resident memory of a process, kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub hwm_kb: u64,
}

/// `VmRSS` and `VmHWM` from the text of `/proc/PID/status`.
pub fn parse_status_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
    })
}

/// Memory of `pid` now.
pub fn memory(pid: u32) -> Option<Memory> {
    parse_status_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `Udp: RcvbufErrors` from the text of `/proc/net/snmp` (a header line, then a value line).
pub fn parse_udp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let index = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// UDP datagrams dropped so far on this host (network namespace) for a full receive buffer.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    parse_udp_rcvbuf_errors(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

/// Busy and total CPU ticks of the whole machine from the text of `/proc/stat` (its `cpu`
/// line: busy is everything but idle and iowait).
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// CPU ticks of each thread of `pid`, by thread id.
fn thread_ticks(pid: u32) -> HashMap<u32, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            Some((tid, parse_stat_ticks(&stat)?))
        })
        .collect()
}

#[derive(Debug)]
struct Sample {
    at_us: u64,
    ticks: Vec<Option<u64>>,
    threads: Vec<HashMap<u32, u64>>,
    machine: Option<(u64, u64)>,
}

impl Sample {
    fn take(pids: &[u32]) -> Sample {
        Sample {
            at_us: now_us(),
            ticks: pids.iter().map(|&pid| cpu_ticks(pid)).collect(),
            threads: pids.iter().map(|&pid| thread_ticks(pid)).collect(),
            machine: machine_ticks(),
        }
    }
}

/// CPU use over a window; percentages of one core (a 2-core machine has 200).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuWindow {
    /// Each process, in the order given to [`CpuSampler::start`].
    pub process: Vec<Option<f64>>,
    /// The busiest thread of each process (a thread at 100 is saturated whatever the rest do).
    pub busiest_thread: Vec<Option<f64>>,
    /// The whole machine: every process, ours and everyone else's.
    pub machine: Option<f64>,
}

/// Samples the CPU ticks of some processes, their threads and the machine every `every` on
/// a thread of its own.
#[derive(Debug)]
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl CpuSampler {
    /// Starts sampling `pids`.
    pub fn start(pids: Vec<u32>, every: Duration) -> CpuSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let samples = samples.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sample = Sample::take(&pids);
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(sample);
                    thread::sleep(every);
                }
            })
        };
        CpuSampler {
            samples,
            stop,
            handle: Some(handle),
        }
    }

    /// Average CPU use between the last sample at or before `from_us` and the first at or
    /// after `to_us`.
    pub fn window(&self, from_us: u64, to_us: u64) -> CpuWindow {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let start = samples
            .iter()
            .rev()
            .find(|s| s.at_us <= from_us)
            .or_else(|| samples.first());
        let end = samples
            .iter()
            .find(|s| s.at_us >= to_us)
            .or_else(|| samples.last());
        match (start, end) {
            (Some(start), Some(end)) => between(start, end),
            _ => CpuWindow::default(),
        }
    }
}

fn between(start: &Sample, end: &Sample) -> CpuWindow {
    let seconds = end.at_us.saturating_sub(start.at_us) as f64 / 1e6;
    let hz = clock_ticks_per_second();
    let pct =
        |a: u64, b: u64| (seconds > 0.0 && b >= a).then(|| (b - a) as f64 / hz / seconds * 100.0);
    let process = start
        .ticks
        .iter()
        .zip(&end.ticks)
        .map(|(a, b)| pct((*a)?, (*b)?))
        .collect();
    let busiest_thread = start
        .threads
        .iter()
        .zip(&end.threads)
        .map(|(a, b)| {
            b.iter()
                .filter_map(|(tid, b)| pct(a.get(tid).copied().unwrap_or(0), *b))
                .reduce(f64::max)
        })
        .collect();
    let machine = match (start.machine, end.machine) {
        (Some((busy_a, total_a)), Some((busy_b, total_b))) if total_b > total_a => {
            // Share of all CPUs, scaled to percent of one core.
            let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            Some(busy_b.saturating_sub(busy_a) as f64 / (total_b - total_a) as f64 * 100.0 * cpus)
        }
        _ => None,
    };
    CpuWindow {
        process,
        busiest_thread,
        machine,
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Drop for CpuSampler {
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
    fn stat_ticks_survive_spaces_and_parens_in_the_command_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 1 0 100 1000000 200";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        let mem = memory(pid).unwrap();
        assert!(mem.rss_kb > 0 && mem.hwm_kb >= mem.rss_kb);
    }

    #[test]
    fn status_memory_fields() {
        let status = "Name:\tstox\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(
            parse_status_memory(status),
            Some(Memory {
                rss_kb: 40960,
                hwm_kb: 51200
            })
        );
    }

    #[test]
    fn udp_rcvbuf_errors_from_snmp() {
        let snmp = "Ip: Forwarding\nIp: 1\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 3 9 7 0\n\
                    UdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_udp_rcvbuf_errors(snmp), Some(7));
        assert!(udp_rcvbuf_errors().is_some());
    }

    #[test]
    fn percent_is_ticks_over_wall_time() {
        let hz = clock_ticks_per_second() as u64;
        let start = Sample {
            at_us: 0,
            ticks: vec![Some(0), None],
            threads: vec![HashMap::from([(1, 0), (2, 0)]), HashMap::new()],
            machine: Some((0, 0)),
        };
        let end = Sample {
            at_us: 2_000_000,
            ticks: vec![Some(hz), Some(5)],
            // thread 3 started during the window
            threads: vec![
                HashMap::from([(1, hz / 2), (2, hz / 4), (3, hz / 4)]),
                HashMap::new(),
            ],
            machine: Some((hz, 4 * hz)),
        };
        let w = between(&start, &end);
        assert!((w.process[0].unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(w.process[1], None);
        assert!((w.busiest_thread[0].unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(w.busiest_thread[1], None);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        assert!((w.machine.unwrap() - 25.0 * cpus).abs() < 1e-9);
    }

    #[test]
    fn machine_ticks_from_proc_stat() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((161, 981)));
        assert!(machine_ticks().is_some());
        assert!(load_average().is_some());
    }

    #[test]
    fn own_threads_are_listed() {
        let threads = thread_ticks(std::process::id());
        assert!(!threads.is_empty());
    }
}
