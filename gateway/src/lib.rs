//! stox-gateway: the SIP ⇄ XMPP bridge.
//!
//! `core` is the sans-IO router, `translate` the pure STOX tables, `admin` the
//! HTTP API, `io` the only socket code, `config` the TOML configuration.
pub mod admin;
pub mod config;
pub mod core;
pub mod io;
pub mod media;
pub mod metrics;
pub mod sipmsg;
pub mod stanza;
pub mod translate;
