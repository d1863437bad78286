//! Prometheus metric names (served on `GET /metrics`).
//!
//! Counters are incremented where things happen (core, io); this module only
//! documents them once.

use metrics::{describe_counter, describe_gauge};

/// Registers descriptions of every metric stox exports.
pub fn describe() {
    describe_gauge!(
        "stox_accounts",
        "External SIP accounts of XMPP users, by registration state (registering, registered, failed)"
    );
    describe_counter!(
        "stox_messages_total",
        "Messages translated, by direction (sip_to_xmpp, xmpp_to_sip)"
    );
    describe_counter!(
        "stox_messages_rejected_total",
        "SIP MESSAGEs refused before translation, by direction and SIP code"
    );
    describe_counter!(
        "stox_messages_queued_total",
        "SIP MESSAGEs stored in the outbox while the XMPP link was down"
    );
    describe_counter!(
        "stox_messages_resent_total",
        "Outbox messages sent again after the XMPP link came back"
    );
    describe_counter!(
        "stox_errors_total",
        "Errors mapped between SIP and XMPP (RFC 7247 §7), by direction, code and condition"
    );
    describe_counter!(
        "stox_late_bounces_total",
        "XMPP error bounces that arrived after the bounce window"
    );
    describe_counter!(
        "stox_sip_requests_received_total",
        "SIP requests received, by method"
    );
    describe_counter!(
        "stox_sip_responses_sent_total",
        "SIP final responses sent, by code"
    );
    describe_counter!(
        "stox_sip_malformed_total",
        "SIP datagrams the parser refused"
    );
    describe_gauge!(
        "stox_sip_flows",
        "Stream connections stox knows by flow (requests came in on them, stox opened them, or peers aliased them)"
    );
    describe_counter!(
        "stox_sip_tls_connections_total",
        "SIP TLS connections, by side: opened (by stox) or accepted (on a tls: listener)"
    );
    describe_counter!(
        "stox_sip_tls_aliases_total",
        "TLS connections aliased to their client's Via sent-by (RFC 5923), reused for stox's requests to it"
    );
    describe_counter!(
        "stox_stanzas_received_total",
        "Stanzas received on the component link"
    );
    describe_counter!(
        "stox_stanzas_sent_total",
        "Stanzas sent on the component link"
    );
    describe_gauge!(
        "stox_xmpp_link_up",
        "1 while the XEP-0114 component link is up"
    );
    describe_counter!(
        "stox_calls_total",
        "Calls started, by direction (sip_to_xmpp, xmpp_to_sip)"
    );
    describe_counter!(
        "stox_calls_rejected_total",
        "Calls refused before ringing, by direction and SIP code or Jingle reason"
    );
    describe_counter!("stox_calls_answered_total", "Calls answered, by direction");
    describe_counter!(
        "stox_calls_ended_total",
        "Calls ended, by why (sip_bye, xmpp_terminate, sip_cancel, rejected, no_answer, sip_error, media, relay, admin, xmpp_error)"
    );
    describe_gauge!(
        "stox_calls_active",
        "Calls in progress (ringing or answered)"
    );
    describe_gauge!(
        "stox_media_calls",
        "Calls with media sockets open in the relay"
    );
    describe_counter!(
        "stox_rtp_packets_total",
        "RTP packets relayed, by leg (xmpp, sip) and dir (in: received on the leg, out: sent on it)"
    );
    describe_counter!(
        "stox_rtp_bytes_total",
        "RTP payload bytes relayed, by leg and dir"
    );
    describe_counter!(
        "stox_rtp_dropped_total",
        "RTP packets received but not forwarded (before DTLS, unknown payload type, wrong source), by leg"
    );
    describe_counter!(
        "stox_media_setup_failures_total",
        "Calls whose media failed, by kind (ice, dtls)"
    );
    describe_gauge!(
        "stox_presence_subscriptions",
        "Presence subscriptions, by direction (xmpp_to_sip: an XMPP user watches a SIP contact; sip_to_xmpp: a SIP user watches) and state"
    );
    describe_gauge!(
        "stox_presence_publications",
        "RFC 3903 publications stox holds for the SIP users of its domain"
    );
    describe_counter!(
        "stox_presence_notify_total",
        "SIP NOTIFYs for presence, by direction (in: received, out: sent)"
    );
    describe_counter!(
        "stox_presence_subscribe_total",
        "SIP SUBSCRIBEs for presence, by direction (in: received, out: sent, refreshes included)"
    );
    describe_counter!(
        "stox_presence_publish_total",
        "SIP PUBLISH requests received"
    );
    describe_counter!(
        "stox_presence_stanzas_total",
        "Presence stanzas about contacts, by direction (in: received, out: sent)"
    );
    describe_counter!(
        "stox_presence_rejected_total",
        "Presence requests refused, by SIP code"
    );
    describe_counter!(
        "stox_presence_rate_limited_total",
        "Presence requests refused by the per-source rate limit, by side (sip, xmpp)"
    );
    describe_counter!(
        "stox_presence_coalesced_total",
        "Presence updates held back and merged with later ones, by direction"
    );
    describe_counter!(
        "stox_presence_held_dropped_total",
        "Presence stanzas dropped from the hold queue while the XMPP link was down"
    );
}
