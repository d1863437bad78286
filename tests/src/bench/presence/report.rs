//! The presence benchmark's tables: establishment, stox's own count of its subscriptions,
//! fan-out and burst rounds (with median and maximum), NOTIFY-in runs, memory, incidents.

use std::fmt::Write;

use super::mem::Range;
use super::run::{AdminCheck, Cpu, Establish, FanoutResult, Incidents, NotifyRun, Results};
use super::sip::codes_text;

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn range(r: Option<Range>) -> String {
    r.map_or_else(
        || "-".to_string(),
        |r| format!("{:.1}-{:.1}", r.min_mb, r.max_mb),
    )
}

/// The median of `values` (the mean of the middle two for an even count), `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

fn cpu_cells(c: &Cpu) -> String {
    format!(
        "{:>5} {:>6} {:>5} {:>6} {:>6}",
        opt(c.stox),
        opt(c.stox_thread),
        opt(c.prosody),
        opt(c.bench),
        opt(c.others)
    )
}

const CPU_HEAD: &str = "stox% st-thr pros% bench% other%";

fn establish(out: &mut String, rows: &[Establish]) {
    let _ = writeln!(
        out,
        "Establish (offered SUBSCRIBEs / subscription requests)"
    );
    let _ = writeln!(
        out,
        "{:<9} {:>6} {:>9} {:>6} {:>6} {:>7} {:>4} {:>7} {:>7} {CPU_HEAD} {:>9} {:>9} {:>15} {:>15}  responses",
        "direction", "subs", "offered/s", "sent", "active", "incompl", "term", "time_s", "subs/s",
        "st-us/sub", "pr-us/sub", "stoxMB bef>aft", "prosMB bef>aft"
    );
    for e in rows {
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>9} {:>6} {:>6} {:>7} {:>4} {:>7.2} {:>7.0} {} {:>9} {:>9} {:>15} {:>15}  {}",
            e.direction,
            e.subscriptions,
            e.offered_rate,
            e.sent,
            e.active,
            e.incomplete,
            e.terminated,
            e.time_s,
            e.per_second,
            cpu_cells(&e.cpu),
            opt(e.stox_us_per_sub),
            opt(e.prosody_us_per_sub),
            format!("{:.1}>{:.1}", e.stox_rss_mb.0, e.stox_rss_mb.1),
            format!("{:.1}>{:.1}", e.prosody_rss_mb.0, e.prosody_rss_mb.1),
            codes_text(&e.responses),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let n: usize = rows.iter().map(|e| e.subscriptions).sum();
        let grew = last.stox_rss_mb.1 - first.stox_rss_mb.0;
        let _ = writeln!(
            out,
            "stox RSS {:.1} MB -> {:.1} MB for {n} subscriptions: {:.2} KB per subscription; Prosody {:.1} -> {:.1} MB",
            first.stox_rss_mb.0,
            last.stox_rss_mb.1,
            grew * 1024.0 / n.max(1) as f64,
            first.prosody_rss_mb.0,
            last.prosody_rss_mb.1,
        );
    }
}

fn checks(out: &mut String, rows: &[AdminCheck], establish: &[Establish]) {
    let _ = writeln!(
        out,
        "\nstox's subscriptions (GET /api/v1/subscriptions | stox_presence_subscriptions gauges)"
    );
    for c in rows {
        let api: Vec<String> = c.api.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let gauges: Vec<String> = c
            .gauges
            .iter()
            .filter(|(_, v)| **v != 0.0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<16} api: {} | gauges: {}{}",
            c.when,
            if api.is_empty() {
                "-".to_string()
            } else {
                api.join(", ")
            },
            if gauges.is_empty() {
                "-".to_string()
            } else {
                gauges.join(", ")
            },
            c.error
                .as_ref()
                .map(|e| format!(" | ERROR {e}"))
                .unwrap_or_default()
        );
        for e in establish {
            let direction = match e.direction {
                "SIP->XMPP" => "sip_to_xmpp",
                _ => "xmpp_to_sip",
            };
            let active = c.active(direction);
            if active != e.subscriptions as u64 {
                let _ = writeln!(
                    out,
                    "{:<16} NOT ALL ACTIVE: {direction} {active} of {} active",
                    "", e.subscriptions
                );
            }
        }
    }
}

fn changes(out: &mut String, title: &str, rows: &[FanoutResult]) {
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "{:>5} {:>5} {:>4} {:>8} {:>6} {:>5} {:>4} {:>5} {:>8} {:>7} {:>7} {:>7} {:>11} {:>8} {CPU_HEAD} {:>7} {:>5}",
        "round", "users", "show", "watchers", "told", "stale", "dup", "wrong", "first_ms", "p50ms",
        "p99ms", "max_ms", "complete_ms", "notify/s", "st-us/n", "udpdr"
    );
    for r in rows {
        let s = &r.summary;
        let first = r
            .first_ms
            .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "{:>5} {:>5} {:>4} {:>8} {:>6} {:>5} {:>4} {:>5} {:>8} {:>7} {:>7} {:>7} {:>11.1} {:>8.0} {} {:>7} {:>5}",
            r.round,
            r.users,
            r.show,
            r.watchers,
            s.delivered,
            s.foreign,
            s.duplicates,
            r.wrong_show,
            first,
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.max_us),
            r.complete_ms,
            r.notify_per_s,
            cpu_cells(&r.cpu),
            opt(r.stox_us_per_notify),
            r.udp_drops.map_or_else(|| "-".to_string(), |d| d.to_string()),
        );
    }
    let complete: Vec<f64> = rows.iter().map(|r| r.complete_ms).collect();
    let rate: Vec<f64> = rows.iter().map(|r| r.notify_per_s).collect();
    let all_told = rows
        .iter()
        .all(|r| r.summary.delivered == r.watchers as u64);
    if let (Some(med), Some(max)) = (median(&complete), complete.iter().copied().reduce(f64::max)) {
        let _ = writeln!(
            out,
            "complete: median {med:.1} ms, max {max:.1} ms; NOTIFYs/s median {:.0}; every watcher told in every round: {}",
            median(&rate).unwrap_or(0.0),
            if all_told { "yes" } else { "NO" }
        );
    }
}

fn notify_in(out: &mut String, rows: &[NotifyRun]) {
    let _ = writeln!(
        out,
        "\nNOTIFY in (SIP contacts -> stox dialogs -> presence at the XMPP users)"
    );
    let _ = writeln!(
        out,
        "{:>7} {:>7} {:>6} {:>7} {:>6} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7} {CPU_HEAD} {:>7} {:>7} {:>5} {:>6} {:>4}  answers",
        "offered", "dialogs", "sent", "send/s", "unans", "transl", "thru/s", "final_ok", "p50ms",
        "p99ms", "max_ms", "st-us/n", "pr-us/n", "udpdr", "rssMB", "load"
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:>6} {:>7.0} {:>6} {:>7} {:>7.0} {:>9} {:>7} {:>7} {:>7} {} {:>7} {:>7} {:>5} {:>6.1} {:>4}  {}",
            r.offered_rate,
            r.dialogs,
            s.sent,
            s.send_rate,
            r.unanswered,
            s.delivered,
            s.throughput,
            format!("{}/{}", r.final_state_ok, r.dialogs_used),
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.max_us),
            cpu_cells(&r.cpu),
            opt(r.stox_us_per_notify),
            opt(r.prosody_us_per_notify),
            r.udp_drops.map_or_else(|| "-".to_string(), |d| d.to_string()),
            r.stox_rss_mb,
            r.load.map_or_else(|| "-".to_string(), |l| format!("{l:.1}")),
            codes_text(&s.responses),
        );
    }
}

fn incidents(out: &mut String, i: &Incidents) {
    let _ = writeln!(
        out,
        "\nIncidents: XMPP disconnects {}, presence errors {}, unsubscribed {}, watchers terminated {}, \
         unusable datagrams watchers/contacts {}/{}, new dialogs for a contact {}, refreshes {}, \
         SUBSCRIBE retransmissions {}, first NOTIFY answers {}, contacts with a dialog at the end {}",
        i.xmpp_disconnects,
        i.xmpp_presence_errors,
        i.xmpp_unsubscribed,
        i.watchers_terminated,
        i.watcher_other,
        i.contact_other,
        i.contact_new_dialogs_again,
        i.contact_refreshes,
        i.contact_retransmissions,
        i.contact_initial_notify_responses,
        i.contact_dialogs_at_end,
    );
}

/// All tables.
pub fn tables(r: &Results) -> String {
    let mut out = String::new();
    establish(&mut out, &r.establish);
    checks(&mut out, &r.checks, &r.establish);
    changes(
        &mut out,
        "Fan-out (one XMPP user changes presence; its SIP watchers get NOTIFYs)",
        &r.fanout,
    );
    changes(
        &mut out,
        "Burst (every watched XMPP user changes at once: NOTIFYs out of stox)",
        &r.burst,
    );
    notify_in(&mut out, &r.notify_in);
    let _ = writeln!(out, "\nMemory (VmRSS min-max, MB)");
    let _ = writeln!(out, "{:<12} {:>13} {:>13}", "phase", "stox", "prosody");
    for m in &r.memory {
        let _ = writeln!(
            out,
            "{:<12} {:>13} {:>13}",
            m.phase,
            range(m.stox),
            range(m.prosody)
        );
    }
    incidents(&mut out, &r.incidents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }
}
