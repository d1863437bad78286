//! The admin router driven in-process with `tower::ServiceExt::oneshot`, over a `MemoryStore`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "s3cret-token";

struct Fixture {
    router: Router,
    store: stox_mappings::Store,
    link_up: Arc<AtomicBool>,
}

fn fixture() -> Fixture {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("stox_admin_test_total").increment(3);
    });
    let store = stox_mappings::Store::memory();
    let link_up = Arc::new(AtomicBool::new(true));
    let router = router(AdminState {
        token: TOKEN.into(),
        store: store.clone(),
        link_up: Arc::clone(&link_up),
        metrics: handle,
        calls: None,
        realm: "sip.localhost".into(),
    });
    Fixture {
        router,
        store,
        link_up,
    }
}

fn request(method: &str, uri: &str, auth: Option<&str>, json_body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match json_body {
        Some(body) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn send(router: &Router, req: Request<Body>) -> Response {
    router.clone().oneshot(req).await.unwrap()
}

async fn body_bytes(resp: Response) -> Vec<u8> {
    axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

/// Asserts the status and a JSON content type, and returns the JSON body.
async fn json_of(resp: Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    serde_json::from_slice(&body_bytes(resp).await).unwrap()
}

/// Asserts an error response: the status and a non-empty `error` string, which it returns.
async fn error_of(resp: Response, status: StatusCode) -> String {
    let body = json_of(resp, status).await;
    let error = body["error"].as_str().unwrap().to_owned();
    assert!(!error.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    error
}

#[tokio::test]
async fn health_follows_the_xmpp_link_without_auth() {
    let f = fixture();
    let resp = send(&f.router, request("GET", "/health", None, None)).await;
    assert_eq!(
        json_of(resp, StatusCode::OK).await,
        json!({"status": "ok", "xmpp_link": "up"})
    );
    f.link_up.store(false, std::sync::atomic::Ordering::Release);
    let resp = send(&f.router, request("GET", "/health", None, None)).await;
    assert_eq!(
        json_of(resp, StatusCode::SERVICE_UNAVAILABLE).await,
        json!({"status": "degraded", "xmpp_link": "down"})
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_auth() {
    let f = fixture();
    let resp = send(&f.router, request("GET", "/metrics", None, None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        PROMETHEUS_CONTENT_TYPE
    );
    let text = String::from_utf8(body_bytes(resp).await).unwrap();
    assert!(
        text.lines().any(|l| l == "stox_admin_test_total 3"),
        "{text}"
    );
}

#[tokio::test]
async fn api_routes_refuse_missing_or_wrong_tokens() {
    let f = fixture();
    for (method, uri) in [
        ("GET", "/api/v1/mappings"),
        ("GET", "/api/v1/mappings/alice@localhost"),
        ("DELETE", "/api/v1/mappings/alice@localhost"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/sip-users"),
        ("POST", "/api/v1/sip-users"),
        ("PUT", "/api/v1/sip-users/dave"),
        ("DELETE", "/api/v1/sip-users/dave"),
        ("GET", "/api/v1/accounts"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/alice@localhost/work"),
        ("PUT", "/api/v1/accounts/alice@localhost/work"),
        ("DELETE", "/api/v1/accounts/alice@localhost/work"),
        ("POST", "/api/v1/accounts/alice@localhost/work/default"),
    ] {
        for auth in [
            None,
            Some("wrong"),
            Some("s3cret-token-longer"),
            Some("s3cret-toke"),
        ] {
            let resp = send(&f.router, request(method, uri, auth, None)).await;
            assert_eq!(
                resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
                "Bearer",
                "{method} {uri} {auth:?}"
            );
            error_of(resp, StatusCode::UNAUTHORIZED).await;
        }
    }
    // A POST is refused before its body is looked at, and nothing is stored.
    let body = r#"{"jid":"alice@localhost","sip":"sip:alice@pbx"}"#;
    let resp = send(
        &f.router,
        request("POST", "/api/v1/mappings", None, Some(body)),
    )
    .await;
    error_of(resp, StatusCode::UNAUTHORIZED).await;
    let basic = Request::builder()
        .uri("/api/v1/mappings")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    error_of(send(&f.router, basic).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(f.store.mappings.list().unwrap(), vec![]);
}

#[tokio::test]
async fn a_created_mapping_is_listed_fetched_and_deleted() {
    let f = fixture();
    let resp = send(
        &f.router,
        request(
            "POST",
            "/api/v1/mappings",
            Some(TOKEN),
            Some(r#"{"jid": "Alice@LocalHost", "sip": "sip:alice@pbx.example"}"#),
        ),
    )
    .await;
    let created = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(created["jid"], "alice@localhost");
    assert_eq!(created["sip"], "sip:alice@pbx.example");
    assert!(created["created_unix"].as_u64().unwrap() > 1_600_000_000);
    // It is in the store, both ways.
    let stored = f
        .store
        .mappings
        .by_sip("sip:alice@pbx.example")
        .unwrap()
        .unwrap();
    assert_eq!(stored.jid, "alice@localhost");

    let resp = send(
        &f.router,
        request("GET", "/api/v1/mappings", Some(TOKEN), None),
    )
    .await;
    assert_eq!(json_of(resp, StatusCode::OK).await, json!([created]));

    let resp = send(
        &f.router,
        request("GET", "/api/v1/mappings/alice@localhost", Some(TOKEN), None),
    )
    .await;
    assert_eq!(json_of(resp, StatusCode::OK).await, created);

    let resp = send(
        &f.router,
        request("GET", "/api/v1/mappings/bob@localhost", Some(TOKEN), None),
    )
    .await;
    assert!(error_of(resp, StatusCode::NOT_FOUND)
        .await
        .contains("bob@localhost"));

    let resp = send(
        &f.router,
        request(
            "DELETE",
            "/api/v1/mappings/alice%40localhost",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(body_bytes(resp).await.is_empty());

    let resp = send(
        &f.router,
        request(
            "DELETE",
            "/api/v1/mappings/alice@localhost",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    let resp = send(
        &f.router,
        request("GET", "/api/v1/mappings", Some(TOKEN), None),
    )
    .await;
    assert_eq!(json_of(resp, StatusCode::OK).await, json!([]));
    assert_eq!(
        f.store.mappings.by_sip("sip:alice@pbx.example").unwrap(),
        None
    );
}

#[tokio::test]
async fn invalid_addresses_are_400_and_not_stored() {
    let f = fixture();
    for (body, says) in [
        (r#"{"jid": "localhost", "sip": "sip:a@pbx"}"#, "localpart"),
        (
            r#"{"jid": "a@localhost/phone", "sip": "sip:a@pbx"}"#,
            "bare JID",
        ),
        (r#"{"jid": "a@localhost", "sip": "a@pbx"}"#, "scheme"),
        (
            r#"{"jid": "a@localhost", "sip": "sip:pbx.example"}"#,
            "user",
        ),
        (r#"{"jid": "a@localhost", "sip": "tel:+4930123"}"#, "scheme"),
    ] {
        let resp = send(
            &f.router,
            request("POST", "/api/v1/mappings", Some(TOKEN), Some(body)),
        )
        .await;
        let error = error_of(resp, StatusCode::BAD_REQUEST).await;
        assert!(error.contains(says), "{body}: {error}");
    }
    assert_eq!(f.store.mappings.list().unwrap(), vec![]);
}

#[tokio::test]
async fn bad_json_and_wrong_content_type_are_400_with_the_reason() {
    let f = fixture();
    for (body, says) in [
        ("{not json", "as JSON"),
        (r#"{"jid": "a@localhost"}"#, "missing field `sip`"),
        (r#"{"jid": 5, "sip": "sip:a@pbx"}"#, "invalid type"),
        (
            r#"{"jid": "a@h", "sip": "sip:a@pbx", "x": 1}"#,
            "unknown field",
        ),
    ] {
        let resp = send(
            &f.router,
            request("POST", "/api/v1/mappings", Some(TOKEN), Some(body)),
        )
        .await;
        let error = error_of(resp, StatusCode::BAD_REQUEST).await;
        assert!(error.contains(says), "{body}: {error}");
    }
    let no_type = Request::builder()
        .method("POST")
        .uri("/api/v1/mappings")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"jid":"a@h","sip":"sip:a@pbx"}"#))
        .unwrap();
    let error = error_of(send(&f.router, no_type).await, StatusCode::BAD_REQUEST).await;
    assert!(error.contains("Content-Type"), "{error}");
    assert_eq!(f.store.mappings.list().unwrap(), vec![]);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let f = fixture();
    for auth in [None, Some(TOKEN)] {
        let resp = send(&f.router, request("GET", "/nope", auth, None)).await;
        assert!(error_of(resp, StatusCode::NOT_FOUND)
            .await
            .contains("/nope"));
    }
    let resp = send(
        &f.router,
        request("PUT", "/api/v1/mappings", Some(TOKEN), None),
    )
    .await;
    error_of(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    let resp = send(&f.router, request("POST", "/health", None, None)).await;
    error_of(resp, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let f = fixture();
    let resp = send(
        &f.router,
        request("GET", "/api/v1/openapi.json", Some(TOKEN), None),
    )
    .await;
    let doc = json_of(resp, StatusCode::OK).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/metrics", "get"),
        ("/api/v1/mappings", "get"),
        ("/api/v1/mappings", "post"),
        ("/api/v1/mappings/{jid}", "get"),
        ("/api/v1/mappings/{jid}", "delete"),
        ("/api/v1/accounts", "get"),
        ("/api/v1/accounts", "post"),
        ("/api/v1/accounts/{jid}/{id}", "get"),
        ("/api/v1/accounts/{jid}/{id}", "put"),
        ("/api/v1/accounts/{jid}/{id}", "delete"),
        ("/api/v1/accounts/{jid}/{id}/default", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    assert!(paths["/api/v1/mappings"]["post"]["responses"]["201"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "NewMapping",
        "MappingView",
        "ErrorBody",
        "Health",
        "NewAccount",
        "AccountUpdate",
        "AccountView",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc, serde_json::to_value(openapi()).unwrap());
}

#[tokio::test]
async fn sip_users_are_created_listed_changed_and_deleted_without_keeping_passwords() {
    use stox_mappings::Table;
    let f = fixture();
    let create = |body: &str| request("POST", "/api/v1/sip-users", Some(TOKEN), Some(body));
    let resp = send(
        &f.router,
        create(r#"{"user": "dave", "password": "correct horse"}"#),
    )
    .await;
    assert_eq!(
        json_of(resp, StatusCode::CREATED).await,
        json!({"user": "dave", "aor": "sip:dave@sip.localhost", "jid": "dave@sip.localhost",
               "bindings": [],
               "created_unix": f.store.tables.get(Table::SipUsers, "dave").unwrap()
                   .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["created_unix"].clone())
                   .unwrap()})
    );
    // What is stored: the Digest HA1s (RFC 7616 §3.4.2) of realm sip.localhost, never the
    // password.
    let stored = f
        .store
        .tables
        .get(Table::SipUsers, "dave")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(stored.clone()).unwrap();
    assert!(!text.contains("correct horse"), "{text}");
    let record: crate::core::SipUserRecord = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        record.ha1_sha256,
        stox_sip::digest::ha1(
            stox_sip::digest::Algorithm::Sha256,
            "dave",
            "sip.localhost",
            "correct horse"
        )
    );
    // The listing shows dave's live bindings, not expired ones, not other users'.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (aor, contact, expires_unix) in [
        (
            "sip:dave@sip.localhost",
            "sip:dave@127.0.0.1:5999",
            now + 60,
        ),
        ("sip:dave@sip.localhost", "sip:dave@127.0.0.1:5998", now - 1),
        (
            "sip:davey@sip.localhost",
            "sip:davey@127.0.0.1:5997",
            now + 60,
        ),
    ] {
        let b = crate::core::registrar::BindingRecord {
            aor: aor.into(),
            contact: contact.into(),
            expires_unix,
            call_id: "c".into(),
            cseq: 1,
            q: None,
            source: None,
            tcp: false,
            transport: None,
            outbound: None,
        };
        f.store
            .tables
            .put(
                Table::Bindings,
                &format!("{aor}|{contact}"),
                &serde_json::to_vec(&b).unwrap(),
            )
            .unwrap();
    }
    let resp = send(
        &f.router,
        request("GET", "/api/v1/sip-users", Some(TOKEN), None),
    )
    .await;
    let list = json_of(resp, StatusCode::OK).await;
    assert_eq!(
        list[0]["bindings"],
        json!([{"contact": "sip:dave@127.0.0.1:5999", "expires_unix": now + 60}])
    );
    // Twice: 409. Bad bodies: 400 with a reason.
    let resp = send(
        &f.router,
        create(r#"{"user": "dave", "password": "other password"}"#),
    )
    .await;
    assert!(error_of(resp, StatusCode::CONFLICT)
        .await
        .contains("exists"));
    for bad in [
        r#"{"user": "dave@x", "password": "longenough"}"#,
        r#"{"user": "", "password": "longenough"}"#,
        r#"{"user": "erin", "password": "short"}"#,
        r#"{"user": "erin"}"#,
        r#"{"user": "erin", "password": "longenough", "admin": true}"#,
        "not json",
    ] {
        let resp = send(&f.router, create(bad)).await;
        error_of(resp, StatusCode::BAD_REQUEST).await;
    }
    let resp = send(
        &f.router,
        request("GET", "/api/v1/sip-users", Some(TOKEN), None),
    )
    .await;
    let list = json_of(resp, StatusCode::OK).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("ha1_md5").is_none() && list[0].get("password").is_none());
    // A new password: new HA1s.
    let resp = send(
        &f.router,
        request(
            "PUT",
            "/api/v1/sip-users/dave",
            Some(TOKEN),
            Some(r#"{"password": "battery staple"}"#),
        ),
    )
    .await;
    json_of(resp, StatusCode::OK).await;
    let record: crate::core::SipUserRecord = serde_json::from_slice(
        &f.store
            .tables
            .get(Table::SipUsers, "dave")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        record.ha1_md5,
        stox_sip::digest::ha1(
            stox_sip::digest::Algorithm::Md5,
            "dave",
            "sip.localhost",
            "battery staple"
        )
    );
    let resp = send(
        &f.router,
        request(
            "PUT",
            "/api/v1/sip-users/nobody",
            Some(TOKEN),
            Some(r#"{"password": "battery staple"}"#),
        ),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    let resp = send(
        &f.router,
        request("DELETE", "/api/v1/sip-users/dave", Some(TOKEN), None),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send(
        &f.router,
        request("DELETE", "/api/v1/sip-users/dave", Some(TOKEN), None),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    assert!(f
        .store
        .tables
        .get(Table::SipUsers, "dave")
        .unwrap()
        .is_none());
}

/// A router whose calls channel is served by a real `Gateway` (memory store), the way the
/// event loop serves it.
fn fixture_with_gateway() -> (Router, tokio::task::JoinHandle<Vec<String>>) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let store = stox_mappings::Store::memory();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<calls::CallRequest>();
    let router = router(AdminState {
        token: TOKEN.into(),
        store: store.clone(),
        link_up: Arc::new(AtomicBool::new(true)),
        metrics: handle,
        calls: Some(tx),
        realm: "sip.localhost".into(),
    });
    let loop_task = tokio::spawn(async move {
        let now = std::time::Instant::now();
        let settings = crate::core::Settings {
            accounts: Default::default(),
            home: "localhost".into(),
            component: "sip.localhost".into(),
            message_type: "chat".into(),
            bounce_window: std::time::Duration::from_millis(300),
            udp_max_bytes: 1300,
            default_transport: crate::sipmsg::Transport::Udp,
            epoch: (now, std::time::SystemTime::now()),
            calls: Default::default(),
            presence: Default::default(),
            registrar: Default::default(),
            contacts: crate::core::LocalContacts {
                udp: Some("127.0.0.1:5070".parse().unwrap()),
                tcp: None,
                tls: None,
            },
        };
        let mut gw = crate::core::Gateway::new(settings, &store, 3).unwrap();
        let mut sent = Vec::new();
        while let Some(r) = rx.recv().await {
            if let calls::CallRequest::Accounts(r) = r {
                accounts::answer(&mut gw, now, r);
            }
            while let Some(o) = gw.poll_output() {
                if let crate::core::Output::SipSend { req, .. } = o {
                    sent.push(format!("{} {} {:?}", req.method, req.uri, req.headers));
                }
            }
        }
        sent
    });
    (router, loop_task)
}

#[tokio::test]
async fn accounts_are_created_listed_changed_defaulted_and_deleted_without_showing_passwords() {
    let (r, loop_task) = fixture_with_gateway();
    let new = json!({
        "jid": "Alice@LocalHost", "id": "work", "registrar": "sip:sip2.localhost",
        "user": "alice2", "password": "pa55-secret-word", "display_name": "Alice Two",
        "outbound_proxy": "sip:127.0.0.1:5062"
    });
    let resp = send(
        &r,
        request(
            "POST",
            "/api/v1/accounts",
            Some(TOKEN),
            Some(&new.to_string()),
        ),
    )
    .await;
    let v = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(v["jid"], "alice@localhost");
    assert_eq!(v["aor"], "sip:alice2@sip2.localhost");
    assert_eq!(v["state"], "registering");
    assert_eq!(v["default"], true, "the first account is the default");
    assert!(!v.to_string().contains("pa55"), "{v}");
    let resp = send(
        &r,
        request(
            "POST",
            "/api/v1/accounts",
            Some(TOKEN),
            Some(&new.to_string()),
        ),
    )
    .await;
    error_of(resp, StatusCode::CONFLICT).await;
    // Bad JSON, unknown fields, bad values: 400 with the reason.
    for body in [
        "{".to_string(),
        json!({"jid": "alice@localhost", "registrar": "sip:x", "user": "a", "password": "p", "colour": 1}).to_string(),
        json!({"jid": "alice@localhost", "registrar": "not a uri", "user": "a", "password": "p"}).to_string(),
        json!({"jid": "alice@localhost", "id": "Bad Id", "registrar": "sip:x", "user": "a", "password": "p"}).to_string(),
    ] {
        let resp = send(&r, request("POST", "/api/v1/accounts", Some(TOKEN), Some(&body))).await;
        error_of(resp, StatusCode::BAD_REQUEST).await;
    }
    // A second account without an id: named after its registrar.
    let other = json!({"jid": "alice@localhost", "registrar": "sip:Other.Example", "user": "al", "password": "xx-secret"});
    let resp = send(
        &r,
        request(
            "POST",
            "/api/v1/accounts",
            Some(TOKEN),
            Some(&other.to_string()),
        ),
    )
    .await;
    let v = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(
        (v["id"].as_str(), v["default"].as_bool()),
        (Some("other-example"), Some(false))
    );
    let bob = json!({"jid": "bob@localhost", "registrar": "sip:b.example", "user": "b", "password": "bb-secret"});
    let resp = send(
        &r,
        request(
            "POST",
            "/api/v1/accounts",
            Some(TOKEN),
            Some(&bob.to_string()),
        ),
    )
    .await;
    json_of(resp, StatusCode::CREATED).await;
    let resp = send(
        &r,
        request(
            "GET",
            "/api/v1/accounts?jid=alice@localhost",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    let list = json_of(resp, StatusCode::OK).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["other-example", "work"]);
    let resp = send(&r, request("GET", "/api/v1/accounts", Some(TOKEN), None)).await;
    assert_eq!(
        json_of(resp, StatusCode::OK)
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Update: the display name goes, the password changes (and is not shown).
    let resp = send(
        &r,
        request(
            "PUT",
            "/api/v1/accounts/alice@localhost/work",
            Some(TOKEN),
            Some(r#"{"display_name": "", "password": "new-pa55-word"}"#),
        ),
    )
    .await;
    let v = json_of(resp, StatusCode::OK).await;
    assert_eq!(v["display_name"], Value::Null);
    assert!(!v.to_string().contains("pa55"));
    let resp = send(
        &r,
        request(
            "PUT",
            "/api/v1/accounts/alice@localhost/nope",
            Some(TOKEN),
            Some("{}"),
        ),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    // Default.
    let resp = send(
        &r,
        request(
            "POST",
            "/api/v1/accounts/alice@localhost/other-example/default",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(json_of(resp, StatusCode::OK).await["default"], true);
    let resp = send(
        &r,
        request(
            "GET",
            "/api/v1/accounts/alice@localhost/work",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(json_of(resp, StatusCode::OK).await["default"], false);
    // Delete.
    let resp = send(
        &r,
        request(
            "DELETE",
            "/api/v1/accounts/alice@localhost/work",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send(
        &r,
        request(
            "DELETE",
            "/api/v1/accounts/alice@localhost/work",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    let resp = send(
        &r,
        request(
            "GET",
            "/api/v1/accounts/alice@localhost/work",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    error_of(resp, StatusCode::NOT_FOUND).await;
    drop(r);
    let sent = loop_task.await.unwrap();
    // REGISTERs for each account created or changed, and Expires: 0 for the deleted one.
    assert!(
        sent.iter()
            .filter(|s| s.starts_with("REGISTER sip:sip2.localhost"))
            .count()
            >= 3,
        "{sent:#?}"
    );
    assert!(
        sent.last().unwrap().contains("(\"Expires\", \"0\")"),
        "{sent:#?}"
    );
}
