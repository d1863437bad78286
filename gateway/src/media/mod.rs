//! Calls: media description conversion (and, later, the RTP relay).
//!
//! [`sdp_jingle`] is the pure SDP (RFC 8866 / RFC 3264) ⇄ Jingle (XEP-0167 and friends)
//! converter of STOX-MAPPING.md §7; [`relay`] is the per-call RTP relay (ICE + DTLS-SRTP
//! toward XMPP clients via str0m, plain RTP toward SIP phones); [`negotiate`] picks what a call
//! carries and writes the description each leg gets.
pub mod negotiate;
pub mod relay;
pub mod sdp_jingle;
