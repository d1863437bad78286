//! End-to-end tests of stox's admin HTTP API (`gateway/src/admin/`) over real HTTP/1.1,
//! against a stox bridging a real Prosody and real SIPp.
//!
//! * `GET /health`: 200 `{"status":"ok","xmpp_link":"up"}` while the XEP-0114 link is up.
//! * `GET /metrics`: Prometheus text exposition format, `stox_messages_total{direction=...}`.
//! * `/api/v1/mappings`: RFC 6750 §2.1 bearer token (401 and `WWW-Authenticate` without it),
//!   create (201), list, get, delete (204), 400 `{"error": ...}` on bad JSON; an explicit
//!   mapping (JID ⇄ SIP AOR, STOX-MAPPING.md §1) overrides the RFC 7247 §6 address rules at
//!   once and survives a restart (sled store).
//! * `GET /api/v1/openapi.json`: the OpenAPI 3.1 document.

use std::time::Duration;

use stox_tests::scenarios::World;
use stox_tests::stox::{http_request, HttpResponse};
use stox_tests::{sip_contact_jid, Sipp, Stox, XmppClient};

const T: Duration = Duration::from_secs(10);
const MAPPINGS: &str = "/api/v1/mappings";

/// start prosody (no mod_offline), stox, slixmpp alice@localhost/phone
fn setup() -> World {
    World::start().expect("prosody, stox and alice")
}

fn request(stox: &Stox, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    stox.admin_request(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn json(resp: &HttpResponse) -> serde_json::Value {
    resp.json().unwrap_or_else(|e| panic!("{e}"))
}

/// `POST /api/v1/mappings` of `jid` ⇄ `sip`; asserts 201 and the echoed mapping.
fn create_mapping(stox: &Stox, jid: &str, sip: &str) {
    let body = serde_json::json!({ "jid": jid, "sip": sip }).to_string();
    let resp = request(stox, "POST", MAPPINGS, Some(&body));
    assert_eq!(resp.status, 201, "POST {body}: {}", resp.body);
    let created = json(&resp);
    assert_eq!(created["jid"], jid, "{}", resp.body);
    assert_eq!(created["sip"], sip, "{}", resp.body);
}

/// The (jid, sip) pairs of `GET /api/v1/mappings`.
fn list_mappings(stox: &Stox) -> Vec<(String, String)> {
    let resp = request(stox, "GET", MAPPINGS, None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let list = json(&resp);
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", resp.body));
    items
        .iter()
        .map(|m| {
            (
                m["jid"].as_str().unwrap_or_default().to_string(),
                m["sip"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// alice sends `body` to `to`; expect the SIPp UAS receives exactly one MESSAGE with that
/// body and Request-URI `request_uri`.
fn alice_reaches_uas(alice: &mut XmppClient, uas: Sipp, to: &str, body: &str, request_uri: &str) {
    alice.send_message(to, body).expect("send");
    let run = uas.wait(T + T).expect("sipp uas result");
    let requests = run.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", run.summary());
    assert_eq!(
        requests[0].request_uri(),
        Some(request_uri),
        "{}",
        run.summary()
    );
    assert_eq!(requests[0].body_text(), body);
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
}

/// The value of the Prometheus sample `name{...label...}` in `text`, if present.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// start prosody, stox, alice
/// GET /health (no token) → 200, JSON {"status":"ok","xmpp_link":"up"}
/// sipp UAC sends MESSAGE sip:alice@localhost; alice receives it
/// alice sends a message to bob\40127.0.0.1\3aP@sip.localhost; sipp UAS(P) receives it
/// GET /metrics (no token) → 200, stox_messages_total{direction="sip_to_xmpp"} ≥ 1 and
///   stox_messages_total{direction="xmpp_to_sip"} ≥ 1
#[test]
fn health_and_metrics_report_the_link_and_the_messages() {
    let mut s = setup();
    let health = http_request(s.stox.admin_addr(), "GET", "/health", None, None).expect("health");
    assert_eq!(health.status, 200, "{}", health.body);
    let health = json(&health);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["xmpp_link"], "up", "{health}");

    let run = Sipp::uac_message(s.stox.sip_addr(), "alice", "localhost", "to xmpp")
        .timeout(Duration::from_secs(15))
        .run()
        .expect("sipp uac");
    assert_eq!(run.final_status(), Some(200), "{}", run.summary());
    s.alice
        .expect(T, |m| m.body().as_deref() == Some("to xmpp"))
        .expect("alice receives the MESSAGE");

    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let port = uas.port();
    let to = sip_contact_jid("bob", "127.0.0.1", port, s.prosody.component());
    let uri = format!("sip:bob@127.0.0.1:{port}");
    alice_reaches_uas(&mut s.alice, uas, &to, "to sip", &uri);

    let metrics =
        http_request(s.stox.admin_addr(), "GET", "/metrics", None, None).expect("metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let content_type = metrics.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "/metrics Content-Type {content_type:?}"
    );
    for direction in ["sip_to_xmpp", "xmpp_to_sip"] {
        let value = sample(
            &metrics.body,
            "stox_messages_total",
            &format!("direction=\"{direction}\""),
        );
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "stox_messages_total{{direction=\"{direction}\"}} = {value:?} in\n{}",
            metrics.body
        );
    }
}

/// start prosody, stox
/// GET/POST /api/v1/mappings, GET/DELETE /api/v1/mappings/{jid} and
///   GET /api/v1/openapi.json, each without Authorization, with `Bearer wrong-token` and
///   with an empty bearer token
/// expect 401 with `WWW-Authenticate: Bearer...` (RFC 6750 §3) and a JSON error reason
/// expect no mapping was created
#[test]
fn mappings_require_the_bearer_token() {
    let s = setup();
    let addr = s.stox.admin_addr();
    let body = r#"{"jid":"frank@sip.localhost","sip":"sip:frank@127.0.0.1:5999"}"#;
    for token in [None, Some("wrong-token"), Some("")] {
        for (method, path, body) in [
            ("GET", MAPPINGS, None),
            ("POST", MAPPINGS, Some(body)),
            ("GET", "/api/v1/mappings/frank@sip.localhost", None),
            ("DELETE", "/api/v1/mappings/frank@sip.localhost", None),
            ("GET", "/api/v1/openapi.json", None),
        ] {
            let resp = http_request(addr, method, path, token, body).expect("request");
            assert_eq!(
                resp.status, 401,
                "{method} {path} with token {token:?}: {}",
                resp.body
            );
            let challenge = resp.header("WWW-Authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path}: WWW-Authenticate {challenge:?}"
            );
            assert!(
                json(&resp)["error"].is_string(),
                "401 without an error reason: {}",
                resp.body
            );
        }
    }
    assert_eq!(list_mappings(&s.stox), vec![]);
}

/// start prosody, stox, alice; sipp UAS(P) answers 200
/// POST /api/v1/mappings {"jid":"frank@sip.localhost","sip":"sip:frank@127.0.0.1:P"} → 201
/// alice sends a message to frank@sip.localhost
/// expect sipp UAS(P) receives MESSAGE sip:frank@127.0.0.1:P (the mapping wins at once)
/// GET /api/v1/mappings lists it; GET /api/v1/mappings/frank@sip.localhost → 200
/// DELETE /api/v1/mappings/frank@sip.localhost → 204; then GET → 404, list empty,
///   DELETE again → 404
#[test]
fn explicit_mapping_routes_at_once_and_can_be_deleted() {
    let mut s = setup();
    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let port = uas.port();
    let frank_sip = format!("sip:frank@127.0.0.1:{port}");
    create_mapping(&s.stox, "frank@sip.localhost", &frank_sip);

    alice_reaches_uas(
        &mut s.alice,
        uas,
        "frank@sip.localhost",
        "hi frank",
        &frank_sip,
    );

    assert_eq!(
        list_mappings(&s.stox),
        vec![("frank@sip.localhost".to_string(), frank_sip.clone())]
    );
    let one = request(&s.stox, "GET", "/api/v1/mappings/frank@sip.localhost", None);
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(json(&one)["sip"], frank_sip.as_str(), "{}", one.body);

    let deleted = request(
        &s.stox,
        "DELETE",
        "/api/v1/mappings/frank@sip.localhost",
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = request(&s.stox, "GET", "/api/v1/mappings/frank@sip.localhost", None);
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(json(&gone)["error"].is_string(), "{}", gone.body);
    assert_eq!(list_mappings(&s.stox), vec![]);
    let again = request(
        &s.stox,
        "DELETE",
        "/api/v1/mappings/frank@sip.localhost",
        None,
    );
    assert_eq!(again.status, 404, "{}", again.body);
}

/// start prosody, stox, alice; sipp UAS(P) and UAS(Q) answer 200
/// POST a mapping of bob\40127.0.0.1\3aQ@sip.localhost (by the address rules: sip:bob@127.0.0.1:Q)
///   to sip:frank@127.0.0.1:P → 201
/// alice sends a message to bob\40127.0.0.1\3aQ@sip.localhost
/// expect UAS(P) receives MESSAGE sip:frank@127.0.0.1:P; UAS(Q) receives nothing
#[test]
fn explicit_mapping_overrides_the_address_rules() {
    let mut s = setup();
    let p = Sipp::uas_message(200, "OK").expect("sipp uas P");
    let q = Sipp::uas_message(200, "OK").expect("sipp uas Q");
    let escaped = sip_contact_jid("bob", "127.0.0.1", q.port(), s.prosody.component());
    let frank_sip = format!("sip:frank@127.0.0.1:{}", p.port());
    create_mapping(&s.stox, &escaped, &frank_sip);

    alice_reaches_uas(&mut s.alice, p, &escaped, "rerouted", &frank_sip);
    let run_q = q.stop().expect("sipp uas Q result");
    assert!(
        run_q.received_requests().is_empty(),
        "the address rule was used despite the mapping: {}",
        run_q.summary()
    );
}

/// start prosody, stox
/// POST /api/v1/mappings with: not JSON; JSON without `sip`; a JID with a resource;
///   a SIP URI without user; an unknown field → each 400 with {"error": "<reason>"}
/// expect no mapping was created
#[test]
fn bad_mapping_requests_are_400_with_a_reason() {
    let s = setup();
    for body in [
        "{not json",
        r#"{"jid":"frank@sip.localhost"}"#,
        r#"{"jid":"frank@sip.localhost/phone","sip":"sip:frank@127.0.0.1"}"#,
        r#"{"jid":"frank@sip.localhost","sip":"sip:127.0.0.1"}"#,
        r#"{"jid":"frank@sip.localhost","sip":"sip:frank@127.0.0.1","x":1}"#,
    ] {
        let resp = request(&s.stox, "POST", MAPPINGS, Some(body));
        assert_eq!(resp.status, 400, "POST {body}: {}", resp.body);
        let reason = json(&resp)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !reason.trim().is_empty(),
            "POST {body}: no reason in {}",
            resp.body
        );
    }
    assert_eq!(list_mappings(&s.stox), vec![]);
}

/// start prosody, stox
/// GET /api/v1/openapi.json (token) → 200, JSON with "openapi": "3.x", paths
///   /api/v1/mappings (get, post) and /api/v1/mappings/{jid} (get, delete), and /health
#[test]
fn openapi_document_describes_the_mappings() {
    let s = setup();
    let resp = request(&s.stox, "GET", "/api/v1/openapi.json", None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let doc = json(&resp);
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with('3'), "openapi = {:?}", doc["openapi"]);
    let paths = &doc["paths"];
    for (path, methods) in [
        (MAPPINGS, &["get", "post"][..]),
        ("/api/v1/mappings/{jid}", &["get", "delete"][..]),
        ("/health", &["get"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "no {method} {path} in paths {}",
                serde_json::to_string_pretty(paths).unwrap_or_default()
            );
        }
    }
}

/// start prosody, stox, alice; sipp UAS(P) answers 200
/// POST frank@sip.localhost ⇄ sip:frank@127.0.0.1:P and grace@sip.localhost ⇄
///   sip:grace@127.0.0.1:5999 → 201 each; DELETE grace → 204
/// restart stox (same store)
/// expect GET /api/v1/mappings lists frank only
/// alice sends a message to frank@sip.localhost; expect UAS(P) receives it
#[test]
fn mappings_survive_a_restart() {
    let mut s = setup();
    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let frank_sip = format!("sip:frank@127.0.0.1:{}", uas.port());
    create_mapping(&s.stox, "frank@sip.localhost", &frank_sip);
    create_mapping(&s.stox, "grace@sip.localhost", "sip:grace@127.0.0.1:5999");
    let deleted = request(
        &s.stox,
        "DELETE",
        "/api/v1/mappings/grace@sip.localhost",
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    s.stox.restart().expect("stox restart");
    assert_eq!(
        list_mappings(&s.stox),
        vec![("frank@sip.localhost".to_string(), frank_sip.clone())]
    );
    alice_reaches_uas(
        &mut s.alice,
        uas,
        "frank@sip.localhost",
        "after restart",
        &frank_sip,
    );
}
