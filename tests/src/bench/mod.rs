//! The messaging benchmark behind `scripts/bench` (`src/bin/bench.rs`): stox between a real
//! Prosody and Rust load generators, SIP → XMPP and XMPP → SIP (RFC 7572 pager-mode IM,
//! RFC 7247 addresses), at offered rates; see `docs/benchmarks.md`.

pub mod body;
pub mod pace;
pub mod procstat;
pub mod report;
pub mod run;
pub mod sip;
pub mod sipwire;
pub mod stats;
pub mod xmpp;
