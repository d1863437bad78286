//! stox-tests: the end-to-end harness that runs stox against real peers on loopback.
//!
//! See `docs/TESTING.md`. Every test owns its peers:
//!
//! * [`Prosody`]: a real Prosody 0.12 (XMPP server, RFC 6120/6121) with the stox component
//!   domain (XEP-0114), from a config written into a temp dir.
//! * [`Stox`]: the `stox` binary under test, with a config pointing at that Prosody.
//! * [`XmppClient`]: a real XMPP client (slixmpp, `tests/peers/xmpp_client.py`) logged into
//!   Prosody over c2s.
//! * [`Sipp`]: SIPp scenarios from `tests/sipp/` as SIP UAC or UAS (RFC 3261 / RFC 3428).
//! * [`sip_raw`]: hand-written SIP datagrams and TCP segments for malformed-input tests.
//! * [`pidf`]: presence documents (RFC 3863 PIDF, RPID, RFC 8048) and `Subscription-State`.
//!
//! Each one picks its own free loopback ports ([`ports`]), owns its temp dir and stops its
//! processes by PID, also when the test panics (`Drop`). Tests do not depend on each other and
//! run in parallel.
//!
//! A scenario reads like the biboumi end-to-end tests:
//!
//! ```no_run
//! use std::time::Duration;
//! use stox_tests::{Prosody, ProsodyOptions, Sipp, Stox, XmppClient, PASSWORD};
//!
//! let prosody = Prosody::start(ProsodyOptions::default()).unwrap();
//! let stox = Stox::start(&prosody, "").unwrap();
//! let uas = Sipp::uas_message(200, "OK").unwrap();
//! let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "phone").unwrap();
//! alice
//!     .send_raw(&format!(
//!         "<message to='bob\\40127.0.0.1\\3a{}@sip.localhost'><body>héllo</body></message>",
//!         uas.port()
//!     ))
//!     .unwrap();
//! let run = uas.wait(Duration::from_secs(10)).unwrap();
//! assert_eq!(run.received_requests()[0].body, "héllo".as_bytes());
//! # drop(stox);
//! ```

pub mod audio;
pub mod baresip;
pub mod certs;
pub mod digest;
pub mod dnsmasq;
pub mod jingle_peer;
pub mod jssip_peer;
pub mod pidf;
pub mod ports;
pub mod process;
pub mod prosody;
pub mod scenarios;
pub mod sip_raw;
pub mod sipp;
pub mod stox;
pub mod xmpp;

pub use pidf::{Pidf, PresenceState, SubscriptionState};
pub use prosody::{Prosody, ProsodyOptions};
pub use sipp::{
    NotifierPlan, PublishPlan, SipMessage, Sipp, SippCommand, SippRun, Transport, WatcherPlan,
};
pub use stox::Stox;
pub use xmpp::{ClientOptions, RosterItem, Stanza, XmppClient};

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A file of this crate (`tests/...`), e.g. `crate_path("sipp/uac_message.xml")`.
pub fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Password the harness registers for every Prosody user it creates.
pub const PASSWORD: &str = "pw-secret";

/// Default users registered on the test Prosody.
pub const DEFAULT_USERS: &[&str] = &["alice", "bob", "carol", "dave"];

/// Builds the XEP-0106-escaped component JID under which a SIP AOR `sip:user@host:port`
/// appears on the XMPP side, e.g. `carol\40127.0.0.1\3a5080@sip.localhost`.
pub fn sip_contact_jid(user: &str, host: &str, port: u16, component: &str) -> String {
    format!("{user}\\40{host}\\3a{port}@{component}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_contact_jid_escapes_at_and_colon_per_xep_0106() {
        assert_eq!(
            sip_contact_jid("carol", "127.0.0.1", 5080, "sip.localhost"),
            "carol\\40127.0.0.1\\3a5080@sip.localhost"
        );
    }

    #[test]
    fn peer_files_exist() {
        assert!(crate_path("peers/xmpp_client.py").is_file());
        assert!(crate_path("sipp/uac_message.xml").is_file());
        assert!(crate_path("sipp/uas_message.xml").is_file());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
