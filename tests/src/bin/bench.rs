//! `bench`: the stox messaging benchmark (see `docs/benchmarks.md`, run by `scripts/bench`).
//!
//! Starts a real Prosody (users `user1..userR`, no offline storage, quiet log) and the `stox`
//! binary (`STOX_BIN` or `--stox-bin`, else the harness's `target/debug/stox`), logs R
//! tokio-xmpp clients in, and drives RFC 7572 pager-mode messages SIP → XMPP and XMPP → SIP
//! at each offered rate. Prints delivered, loss, duplicates, throughput, latency percentiles,
//! CPU% of stox / Prosody / the bench itself, stox's memory and the kernel's UDP drops.

// The benchmark's modules live beside the harness (`tests/src/bench/`) but only this binary
// uses them, so they are not part of the stox-tests library.
#[path = "../bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use bench::report;
use bench::run::{Bench, Direction, Peers, RunResult};
use stox_tests::ports::free_port;
use stox_tests::{stox::binary_path, Prosody, ProsodyOptions, Stox, PASSWORD};

/// Which directions to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Both,
    SipToXmpp,
    XmppToSip,
}

/// stox messaging benchmark: SIP MESSAGE <-> XMPP message through a real Prosody.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Offered rates, msg/s, in the order run.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 2000, 5000, 10000, 20000])]
    rates: Vec<u64>,
    /// Messages per run.
    #[arg(long, default_value_t = 20_000)]
    messages: u32,
    /// XMPP clients (user1..userN): receivers SIP -> XMPP, senders XMPP -> SIP.
    #[arg(long, default_value_t = 4)]
    receivers: usize,
    /// Directions to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    directions: Which,
    /// A run ends when all arrived or nothing moved for this long, s.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
    /// Pause between runs, s.
    #[arg(long, default_value_t = 1.0)]
    settle_secs: f64,
    /// Warm-up messages per direction at 1000 msg/s before the measured runs (not reported).
    #[arg(long, default_value_t = 500)]
    warmup: u32,
    /// The stox binary (sets STOX_BIN for the harness).
    #[arg(long)]
    stox_bin: Option<PathBuf>,
    /// RUST_LOG for stox (debug logging costs stox as much as the work measured).
    #[arg(long, default_value = "warn")]
    stox_log: String,
    /// Lowest level of Prosody's log.
    #[arg(long, default_value = "warn")]
    prosody_log: String,
    /// Prosody's Lua GC mode (`generational`, `incremental`; Prosody 0.12 on Lua 5.4).
    /// Generational costs Prosody about a third less CPU per message (docs/benchmarks.md).
    #[arg(long, default_value = "generational")]
    prosody_gc: String,
    /// Lua lines added to Prosody's global config, e.g.
    /// `network_settings = { nagle = false }`.
    #[arg(long, default_value = "")]
    prosody_config: String,
    /// stox's `[messaging] bounce_window_ms` (stox's default when absent).
    #[arg(long)]
    bounce_window_ms: Option<u64>,
    /// Worker threads of the bench's own tokio runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    stox_bin: String,
    cpus: usize,
    receivers: usize,
    messages: u32,
    disconnects: u64,
    sink_other_requests: u64,
    runs: Vec<RunResult>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // stox runs in a temp dir: a relative STOX_BIN would not be found from there.
    if let Some(bin) = args
        .stox_bin
        .clone()
        .or_else(|| std::env::var_os("STOX_BIN").map(PathBuf::from))
    {
        std::env::set_var("STOX_BIN", bin.canonicalize().unwrap_or(bin));
    }
    std::env::set_var("RUST_LOG", &args.stox_log);
    let users: Vec<String> = (1..=args.receivers.max(1))
        .map(|k| format!("user{k}"))
        .collect();

    eprintln!("[bench] starting prosody with {} users", users.len());
    let mut prosody = Prosody::start(ProsodyOptions {
        users: users
            .iter()
            .map(|u| (u.clone(), PASSWORD.to_string()))
            .collect(),
        offline: false,
        log_level: args.prosody_log.clone(),
        gc_mode: Some(args.prosody_gc.clone()),
        extra_config: args.prosody_config.clone(),
        ..ProsodyOptions::default()
    })?;
    let overrides = args
        .bounce_window_ms
        .map(|ms| format!("[messaging]\nbounce_window_ms = {ms}\n"))
        .unwrap_or_default();
    let bin = binary_path();
    eprintln!("[bench] starting {}", bin.display());
    let mut stox = Stox::start(&prosody, &overrides)?;
    let peers = Peers {
        c2s: prosody.c2s_addr(),
        stox_sip: stox.sip_addr(),
        domain: prosody.domain().to_string(),
        component: prosody.component().to_string(),
        users,
        password: PASSWORD.to_string(),
        stox_pid: stox.pid().context("stox has no PID")?,
        prosody_pid: prosody.pid().context("prosody has no PID")?,
        sink_port: free_port(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(sweep(&args, peers));
    let alive = stox.is_running();
    stox.stop();
    prosody.stop();
    let (runs, disconnects, sink_other) = outcome?;
    if !alive {
        eprintln!("[bench] stox died during the run:\n{}", stox.log_tail(40));
    }
    let report = Report {
        stox_bin: bin.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        receivers: args.receivers,
        messages: args.messages,
        disconnects,
        sink_other_requests: sink_other,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "stox {} | {} CPUs | {} XMPP clients | {} messages per run | XMPP disconnects {} | \
             sink non-bench requests {}",
            report.stox_bin,
            report.cpus,
            report.receivers,
            report.messages,
            report.disconnects,
            report.sink_other_requests
        );
        print!("{}", report::table(&report.runs));
    }
    Ok(())
}

async fn sweep(args: &Args, peers: Peers) -> Result<(Vec<RunResult>, u64, u64)> {
    let mut bench = Bench::connect(peers, Duration::from_secs_f64(args.drain_secs)).await?;
    let directions: &[Direction] = match args.directions {
        Which::Both => &[Direction::SipToXmpp, Direction::XmppToSip],
        Which::SipToXmpp => &[Direction::SipToXmpp],
        Which::XmppToSip => &[Direction::XmppToSip],
    };
    let settle = Duration::from_secs_f64(args.settle_secs);
    let mut results = Vec::new();
    for &direction in directions {
        if args.warmup > 0 {
            let warm = bench.run(direction, 1000, args.warmup).await?;
            eprintln!(
                "[bench] warm-up {direction}: {} of {} delivered",
                warm.summary.delivered, warm.summary.sent
            );
            tokio::time::sleep(settle).await;
        }
        for &rate in &args.rates {
            eprintln!("[bench] {direction} {rate} msg/s x {}", args.messages);
            let result = bench.run(direction, rate, args.messages).await?;
            eprint!("{}", report::table(std::slice::from_ref(&result)));
            results.push(result);
            tokio::time::sleep(settle).await;
        }
    }
    let (disconnects, other) = bench.incidents();
    bench.close().await;
    Ok((results, disconnects, other))
}
