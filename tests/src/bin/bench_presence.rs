//! `bench_presence`: the stox presence benchmark (issue 4; see `docs/presence-benchmark.md`,
//! run by `scripts/bench-presence`).
//!
//! Starts a real Prosody (users `pres1..` watched by SIP watchers and `wat1..` watching SIP
//! contacts, no offline storage, quiet log) and the `stox` binary (`STOX_BIN` or
//! `--stox-bin`) with `[presence] rate_per_source = 0`, then: establishes N subscriptions
//! (half each way) and checks them through the admin API, fans one presence change out to
//! the 1,000 SIP watchers of one user (several rounds), has every watched user change at
//! once (NOTIFYs out of stox per second), and sends NOTIFYs into stox's dialogs at offered
//! rates. Prints times, rates, CPU of stox / Prosody / the bench and both processes' memory.

// The messaging benchmark's modules (`tests/src/bench/`) are shared with `bench`, which uses
// all of them; this binary uses a part (sockets, pacing, CPU and memory, counters).
#[allow(dead_code)]
#[path = "../bench"]
mod bench {
    pub mod body;
    pub mod pace;
    pub mod procstat;
    pub mod sip;
    pub mod sipwire;
    pub mod stats;
}
#[path = "../bench/presence/mod.rs"]
mod presence;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use bench::procstat::load_average;
use presence::report;
use presence::run::{split, users_for, Options, Peers, PresenceBench, Results};
use stox_tests::stox::binary_path;
use stox_tests::{Prosody, ProsodyOptions, Stox, PASSWORD};

/// stox presence benchmark: RFC 8048 subscriptions, fan-out and NOTIFY rates through a real
/// Prosody.
#[derive(Debug, Parser)]
#[command(name = "bench_presence")]
struct Args {
    /// Subscriptions in all, half SIP watchers of XMPP users, half XMPP users watching SIP
    /// contacts.
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// SIP watchers per watched XMPP user (`pres1..`; the fan-out user has this many).
    #[arg(long, default_value_t = 1_000)]
    per_user: usize,
    /// SIP contacts per watching XMPP user (`wat1..`): a roster of 100 is common; Prosody
    /// rewrites a user's whole roster on each subscription change, so 1,000 costs it ten
    /// times more per subscription.
    #[arg(long, default_value_t = 100)]
    contacts_per_user: usize,
    /// SUBSCRIBEs (and XMPP subscription requests) offered per second while establishing.
    #[arg(long, default_value_t = 1_000)]
    subscribe_rate: u64,
    /// Fan-out rounds (one user changes presence).
    #[arg(long, default_value_t = 5)]
    fanout_rounds: u32,
    /// Burst rounds (every watched user changes at once).
    #[arg(long, default_value_t = 3)]
    burst_rounds: u32,
    /// Offered NOTIFY rates into stox's dialogs, per second, in the order run.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 2000, 5000])]
    notify_rates: Vec<u64>,
    /// NOTIFYs per NOTIFY run.
    #[arg(long, default_value_t = 20_000)]
    notify_count: u32,
    /// Runs per NOTIFY rate.
    #[arg(long, default_value_t = 1)]
    notify_repeats: u32,
    /// Pause before each presence change, after the previous one was delivered (stox sends
    /// at most one NOTIFY per subscription per 5 s), s.
    #[arg(long, default_value_t = 6.0)]
    gap_secs: f64,
    /// A phase ends when complete or when nothing moved for this long, s.
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// Establishment ends when every subscription is active or nothing moved for this
    /// long, s (Prosody may be busy saving rosters for a while).
    #[arg(long, default_value_t = 30.0)]
    establish_idle_secs: f64,
    /// Pause between NOTIFY runs, s.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// stox's `[presence] rate_per_source` (0: no limit; stox's default 20/s would refuse
    /// most of the SUBSCRIBEs of one source address).
    #[arg(long, default_value_t = 0)]
    rate_per_source: u32,
    /// The stox binary (sets STOX_BIN for the harness).
    #[arg(long)]
    stox_bin: Option<PathBuf>,
    /// RUST_LOG for stox.
    #[arg(long, default_value = "warn")]
    stox_log: String,
    /// Lowest level of Prosody's log.
    #[arg(long, default_value = "warn")]
    prosody_log: String,
    /// Lua lines added to Prosody's config, e.g. `storage = { roster = "sql" }` (needs
    /// lua-dbi-sqlite3).
    #[arg(long, default_value = "")]
    prosody_config: String,
    /// Prosody's Lua GC mode (`generational`, `incremental`), as in the messaging bench.
    #[arg(long, default_value = "generational")]
    prosody_gc: String,
    /// Worker threads of the bench's own tokio runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print JSON instead of the tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    stox_bin: String,
    cpus: usize,
    options: Options,
    watched_users: usize,
    watching_users: usize,
    load_start: Option<f64>,
    load_end: Option<f64>,
    stox_alive: bool,
    /// Lines in stox's log (RUST_LOG=warn: each is a warning or an error).
    stox_log_lines: usize,
    stox_log_first: Vec<String>,
    results: Results,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(bin) = args
        .stox_bin
        .clone()
        .or_else(|| std::env::var_os("STOX_BIN").map(PathBuf::from))
    {
        std::env::set_var("STOX_BIN", bin.canonicalize().unwrap_or(bin));
    }
    std::env::set_var("RUST_LOG", &args.stox_log);
    let per_user = args.per_user.max(1);
    let contacts_per_user = args.contacts_per_user.max(1);
    let (to_xmpp, to_sip) = split(args.subscriptions);
    let watched: Vec<String> = (1..=users_for(to_xmpp, per_user).max(1))
        .map(|k| format!("pres{k}"))
        .collect();
    let watching: Vec<String> = (1..=users_for(to_sip, contacts_per_user).max(1))
        .map(|k| format!("wat{k}"))
        .collect();
    let load_start = load_average();

    eprintln!(
        "[bench-presence] starting prosody with {} users",
        watched.len() + watching.len()
    );
    let mut prosody = Prosody::start(ProsodyOptions {
        users: watched
            .iter()
            .chain(&watching)
            .map(|u| (u.clone(), PASSWORD.to_string()))
            .collect(),
        offline: false,
        log_level: args.prosody_log.clone(),
        extra_config: args.prosody_config.clone(),
        gc_mode: Some(args.prosody_gc.clone()),
        ..ProsodyOptions::default()
    })?;
    let overrides = format!("[presence]\nrate_per_source = {}\n", args.rate_per_source);
    let bin = binary_path();
    eprintln!("[bench-presence] starting {}", bin.display());
    let mut stox = Stox::start(&prosody, &overrides)?;
    let peers = Peers {
        c2s: prosody.c2s_addr(),
        stox_sip: stox.sip_addr(),
        admin: stox.admin_addr(),
        domain: prosody.domain().to_string(),
        component: prosody.component().to_string(),
        password: PASSWORD.to_string(),
        stox_pid: stox.pid().context("stox has no PID")?,
        prosody_pid: prosody.pid().context("prosody has no PID")?,
        watched: watched.clone(),
        watching: watching.clone(),
    };
    let options = Options {
        subscriptions: args.subscriptions,
        per_user,
        contacts_per_user,
        subscribe_rate: args.subscribe_rate,
        fanout_rounds: args.fanout_rounds,
        burst_rounds: args.burst_rounds,
        notify_rates: args.notify_rates.clone(),
        notify_count: args.notify_count,
        notify_repeats: args.notify_repeats,
        gap_secs: args.gap_secs,
        idle_secs: args.idle_secs,
        establish_idle_secs: args.establish_idle_secs,
        prosody_config: args.prosody_config.clone(),
        settle_secs: args.settle_secs,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let mut bench = PresenceBench::connect(options.clone(), peers).await?;
        let results = bench.run_all().await;
        bench.close().await;
        results
    });
    let stox_alive = stox.is_running();
    let log = std::fs::read_to_string(stox.log_path()).unwrap_or_default();
    // The harness marks each start of stox with a line of its own.
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("=== stox-tests:"))
        .collect();
    stox.stop();
    prosody.stop();
    let results = outcome?;
    if !stox_alive {
        eprintln!("[bench-presence] stox died during the run");
    }
    let report = Report {
        stox_bin: bin.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        options,
        watched_users: watched.len(),
        watching_users: watching.len(),
        load_start,
        load_end: load_average(),
        stox_alive,
        stox_log_lines: lines.len(),
        stox_log_first: lines.iter().take(10).map(|l| l.to_string()).collect(),
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let load = |l: Option<f64>| l.map_or_else(|| "-".to_string(), |l| format!("{l:.1}"));
    println!(
        "stox {} | {} CPUs | {} subscriptions: {} SIP watchers of {} XMPP users, {} SIP contacts \
         watched by {} XMPP users | Prosody extra config: {} | load {} -> {} | stox alive: {} | \
         stox log lines (warn+): {}",
        report.stox_bin,
        report.cpus,
        args.subscriptions,
        to_xmpp,
        watched.len(),
        to_sip,
        watching.len(),
        if args.prosody_config.is_empty() {
            "none".to_string()
        } else {
            args.prosody_config.replace('\n', " ")
        },
        load(report.load_start),
        load(report.load_end),
        if report.stox_alive { "yes" } else { "NO" },
        report.stox_log_lines,
    );
    for line in &report.stox_log_first {
        println!("  stox log: {line}");
    }
    print!("{}", report::tables(&report.results));
    Ok(())
}
