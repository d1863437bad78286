//! What the presence bridge keeps in the [`TableStore`](stox_mappings::TableStore), as
//! JSON values, one table each (issue 4 "Durability"): enough to go on after a restart
//! without anybody subscribing again.
//!
//! | table | key | value |
//! |---|---|---|
//! | `authorizations` | `presentity|watcher` (bare JIDs) | [`AuthorizationRecord`]: an XMPP user let a SIP user's JID see her presence |
//! | `watches` | `user|contact` (bare JIDs) | [`WatchRecord`]: an XMPP user watches a SIP contact |
//! | `watchers` | `Call-ID|local tag` | [`WatcherRecord`]: a SIP user watches a presentity stox notifies for |
//! | `published` | `AOR|entity-tag` | [`PublicationRecord`]: RFC 3903 state published to stox |
//!
//! Times are Unix seconds (an `Instant` does not survive a restart). A record that does not
//! parse is logged and skipped at restore, never fatal.

use serde::{Deserialize, Serialize};

/// The state of a SIP dialog that carries a subscription (RFC 3261 §12, RFC 6665 §4.1.2 /
/// §4.2.1), from stox's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    /// `Call-ID`.
    pub call_id: String,
    /// stox's tag.
    pub local_tag: String,
    /// The peer's tag, once known.
    #[serde(default)]
    pub remote_tag: Option<String>,
    /// stox's URI in the dialog (`From` of stox's requests).
    pub local_uri: String,
    /// The peer's URI (`To` of stox's requests).
    pub remote_uri: String,
    /// The Request-URI of stox's requests (the peer's Contact).
    pub remote_target: String,
    /// The route set, in the order requests use it.
    #[serde(default)]
    pub route: Vec<String>,
    /// The CSeq number of stox's last request.
    pub local_cseq: u32,
    /// The dialog runs over TCP.
    #[serde(default)]
    pub tcp: bool,
    /// The connection the peer's SUBSCRIBE came over (TCP, TLS, WS): NOTIFYs go back over
    /// it while it is open (RFC 5626 §5.3, RFC 7118 §5: a WebSocket watcher's Contact names
    /// an `.invalid` host).
    #[serde(default)]
    pub flow: Option<crate::sipmsg::Flow>,
}

/// `authorizations`: the presentity (an XMPP user) approved the watcher (a JID at `C`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRecord {
    /// When (Unix seconds).
    pub since_unix: u64,
}

/// `watches`: an XMPP user watches a SIP contact (stox subscribes on her behalf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// The XMPP user's bare JID.
    pub user: String,
    /// The contact's bare JID at `C`.
    pub contact: String,
    /// The contact's SIP URI (what stox SUBSCRIBEs to).
    pub target: String,
    /// The XMPP user's SIP URI (From).
    pub from_uri: String,
    /// The contact is a presentity stox serves itself (state from PUBLISH, no SUBSCRIBE).
    #[serde(default)]
    pub local: bool,
    /// The user was told `subscribed`.
    pub authorized: bool,
    /// The Expires stox asks for.
    pub expires: u32,
    /// The subscription dialog, if one was established.
    #[serde(default)]
    pub dialog: Option<DialogRecord>,
    /// The last PIDF body from the contact (answers probes right after a restart).
    #[serde(default)]
    pub cached: Option<String>,
    /// Its Content-Language.
    #[serde(default)]
    pub lang: Option<String>,
    /// The external account (`jid|id`) the SUBSCRIBEs leave through (issue 5).
    #[serde(default)]
    pub account: Option<String>,
}

/// `watchers`: a SIP user watches a presentity (an XMPP user, or a SIP user of `C` whose
/// state is published to stox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherRecord {
    /// The watcher's SIP URI (From of its SUBSCRIBE).
    pub watcher_uri: String,
    /// The watcher's bare JID (at `C`).
    pub watcher_jid: String,
    /// The presentity: a bare JID, or the AOR of a local presentity.
    pub presentity: String,
    /// The presentity is local (published to stox), not an XMPP user.
    #[serde(default)]
    pub local: bool,
    /// The presentity approved the watcher.
    pub authorized: bool,
    /// When the subscription expires (Unix seconds).
    pub expires_unix: u64,
    /// The dialog.
    pub dialog: DialogRecord,
    /// The AOR of the external account whose Contact the SUBSCRIBE reached (issue 5): the
    /// PIDF entity then, so the watcher never sees the XMPP address.
    #[serde(default)]
    pub account_aor: Option<String>,
    /// That account's Contact: stox's Contact in the dialog.
    #[serde(default)]
    pub account_contact: Option<String>,
}

/// `published`: one RFC 3903 publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationRecord {
    /// The presentity's AOR.
    pub aor: String,
    /// Its entity-tag.
    pub etag: String,
    /// When it expires (Unix seconds).
    pub expires_unix: u64,
    /// The PIDF body.
    pub body: String,
    /// Its Content-Language.
    #[serde(default)]
    pub lang: Option<String>,
    /// Order of modification (newer wins in composition).
    #[serde(default)]
    pub version: u64,
}

/// `a|b`: the key of a pair.
pub fn pair_key(a: &str, b: &str) -> String {
    format!("{a}|{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_old_records_still_read() {
        let d = DialogRecord {
            call_id: "c@stox".into(),
            local_tag: "l".into(),
            remote_tag: Some("r".into()),
            local_uri: "sip:alice@localhost".into(),
            remote_uri: "sip:carol@127.0.0.1:5080".into(),
            remote_target: "sip:carol@127.0.0.1:5080".into(),
            route: vec!["<sip:p;lr>".into()],
            local_cseq: 7,
            tcp: false,
            flow: None,
        };
        let w = WatcherRecord {
            watcher_uri: "sip:carol@127.0.0.1:5080".into(),
            watcher_jid: "carol\\40127.0.0.1\\3a5080@sip.localhost".into(),
            presentity: "alice@localhost".into(),
            local: false,
            authorized: true,
            expires_unix: 1_800_000_000,
            dialog: d.clone(),
            account_aor: None,
            account_contact: None,
        };
        let json = serde_json::to_vec(&w).expect("serializes");
        let back: WatcherRecord = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back, w);
        // Fields added later have defaults: a record without them still reads.
        let minimal = r#"{"call_id":"c","local_tag":"l","local_uri":"a","remote_uri":"b","remote_target":"b","local_cseq":1}"#;
        let d: DialogRecord = serde_json::from_str(minimal).expect("minimal dialog");
        assert_eq!((d.remote_tag, d.route.len(), d.tcp), (None, 0, false));
        assert_eq!(pair_key("a@b", "c@d"), "a@b|c@d");
    }
}
