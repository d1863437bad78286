//! `stox`: the SIP ⇄ XMPP gateway daemon.
//!
//! `stox --config FILE` runs it; `stox check-config --config FILE` validates a
//! configuration and exits non-zero with the reason.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stox_gateway::config::Config;

#[derive(Parser)]
#[command(name = "stox", version, about = "SIP ⇄ XMPP interworking gateway")]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, short, global = true, env = "STOX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config else {
        eprintln!("stox: --config FILE is required");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stox: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    // rsipstack logs every datagram with its body at `info`: message bodies
    // never go above `trace` (STYLE.md), so unless RUST_LOG names rsipstack
    // itself, it is held at `warn`.
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let spec = if spec.contains("rsipstack") {
        spec
    } else {
        format!("{spec},rsipstack=warn")
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&spec)
                .unwrap_or_else(|_| "info,rsipstack=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stox: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(stox_gateway::io::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stox: {e:#}");
            ExitCode::from(1)
        }
    }
}
