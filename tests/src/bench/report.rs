//! The benchmark's table: one line per run, latencies in milliseconds.

use std::fmt::Write;

use super::run::RunResult;

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// SIP response counts as `200:N 202:N ...`, or `-`.
pub fn responses(r: &RunResult) -> String {
    if r.summary.responses.is_empty() {
        return "-".to_string();
    }
    r.summary
        .responses
        .iter()
        .map(|(code, n)| format!("{code}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table of `results`.
pub fn table(results: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>7} {:>6} {:>6} {:>5} {:>4} {:>4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4}  SIP responses",
        "direction",
        "offered",
        "sent",
        "deliv",
        "lost",
        "dup",
        "err",
        "send/s",
        "thru/s",
        "p50ms",
        "p95ms",
        "p99ms",
        "maxms",
        "stox%",
        "st-us/m",
        "pr-us/m",
        "st-thr",
        "pros%",
        "bench%",
        "other%",
        "rssMB",
        "hwmMB",
        "udpdr",
        "load",
    );
    for r in results {
        let s = &r.summary;
        let mem = r.stox_memory.unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<9} {:>7} {:>6} {:>6} {:>5} {:>4} {:>4} {:>7.0} {:>7.0} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4}  {}",
            r.direction.to_string(),
            r.offered_rate,
            s.sent,
            s.delivered,
            s.lost,
            s.duplicates,
            s.errors + s.send_failures,
            s.send_rate,
            s.throughput,
            ms(s.p50_us),
            ms(s.p95_us),
            ms(s.p99_us),
            ms(s.max_us),
            pct(r.cpu_stox),
            pct(r.stox_us_per_msg),
            pct(r.prosody_us_per_msg),
            pct(r.cpu_stox_thread),
            pct(r.cpu_prosody),
            pct(r.cpu_bench),
            pct(r.cpu_others),
            mb(mem.rss_kb),
            mb(mem.hwm_kb),
            r.udp_drops.map_or_else(|| "-".to_string(), |d| d.to_string()),
            r.load_average.map_or_else(|| "-".to_string(), |l| format!("{l:.1}")),
            responses(r),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::procstat::Memory;
    use super::super::run::Direction;
    use super::super::stats::Summary;
    use super::*;

    #[test]
    fn table_has_a_header_and_one_line_per_run() {
        let mut summary = Summary {
            sent: 100,
            delivered: 99,
            lost: 1,
            p50_us: 1234,
            ..Summary::default()
        };
        summary.responses.insert(200, 99);
        summary.responses.insert(408, 1);
        let run = RunResult {
            direction: Direction::SipToXmpp,
            offered_rate: 1000,
            messages: 100,
            summary,
            cpu_stox: Some(12.4),
            cpu_prosody: None,
            cpu_bench: Some(3.0),
            cpu_stox_thread: Some(9.0),
            cpu_others: None,
            stox_us_per_msg: Some(101.0),
            prosody_us_per_msg: None,
            load_average: Some(1.25),
            stox_memory: Some(Memory {
                rss_kb: 20480,
                hwm_kb: 30720,
            }),
            udp_drops: Some(0),
            wall_s: 1.0,
        };
        let text = table(&[run]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("direction"));
        assert!(lines[1].starts_with("SIP->XMPP"), "{}", lines[1]);
        assert!(lines[1].contains(" 1.23 "), "{}", lines[1]);
        assert!(lines[1].contains(" 20.0 "), "{}", lines[1]);
        assert!(lines[1].contains(" 1.2 "), "{}", lines[1]);
        assert!(lines[1].ends_with("200:99 408:1"), "{}", lines[1]);
    }
}
