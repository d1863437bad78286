//! stox-xmpp: the XMPP side of stox.
//!
//! The XEP-0114 component link (with our own reconnect and keepalive), XEP-0106
//! JID escaping, and the disco / gateway / ping answers. This crate knows nothing
//! about SIP.
pub mod disco;
pub mod escape;
pub mod jingle;
pub mod link;
pub mod presence;
