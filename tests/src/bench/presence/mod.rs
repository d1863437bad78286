//! The presence benchmark behind `scripts/bench-presence` (`src/bin/bench_presence.rs`):
//! stox between a real Prosody and Rust SIP and XMPP load generators, RFC 8048 presence both
//! ways: 10,000 subscriptions established, one presence change fanned out to 1,000 SIP
//! watchers, NOTIFY rates in and out; see `docs/presence-benchmark.md`.

pub mod mem;
pub mod report;
pub mod run;
pub mod sip;
pub mod wire;
pub mod xmpp;
