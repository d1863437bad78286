//! stox-gateway: the SIP ⇄ XMPP bridge.
//!
//! `core` is the sans-IO router, `translate` the pure STOX tables, `admin` the
//! HTTP API, `io` the only socket code.
pub mod admin;
pub mod translate;
