//! stox-sip: the SIP side of stox.
//!
//! Typed SIP URIs (RFC 3261 §19.1), the message bodies stox reads and writes
//! (CPIM RFC 3862, isComposing RFC 3994, IMDN RFC 5438, text charsets), and the
//! endpoint over `rsipstack`. This crate knows nothing about XMPP.
pub mod body;
pub mod uri;
