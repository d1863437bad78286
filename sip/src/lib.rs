//! stox-sip: the SIP side of stox.
//!
//! Typed SIP URIs (RFC 3261 §19.1), the message bodies stox reads and writes
//! (CPIM RFC 3862, isComposing RFC 3994, IMDN RFC 5438, PIDF RFC 3863, text charsets),
//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), and the
//! endpoint over `rsipstack`. This crate knows nothing about XMPP.
pub mod body;
pub mod digest;
pub mod locate;
pub mod uri;
