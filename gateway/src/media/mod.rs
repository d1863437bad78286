//! Calls: media description conversion (and, later, the RTP relay).
//!
//! [`sdp_jingle`] is the pure SDP (RFC 8866 / RFC 3264) ⇄ Jingle (XEP-0167 and friends)
//! converter of STOX-MAPPING.md §7.
pub mod sdp_jingle;
