//! External SIP accounts of XMPP users (issue 5): stox A (`sip.localhost`) registers
//! alice@localhost's account at a real registrar on loopback, a second stox B
//! (`sip2.localhost`, a second component of the same Prosody) whose SIP user `alice2` it is.
//!
//! ```text
//! admin B POST /api/v1/sip-users alice2; admin A POST /api/v1/accounts (alice@localhost,
//!   registrar sip:sip2.localhost, outbound proxy B, user alice2)
//! expect A's account registered (401 → Digest → 200), B lists alice2's binding at A's
//!   account Contact; alice gets a headline "registered"
//! bob@localhost → alice2@sip2.localhost (through B, to the binding at A)
//! expect alice gets it from bob\40localhost@sip.localhost
//! sipp UAC MESSAGE sip:alice2@sip2.localhost to B (B relays it to the binding)
//! expect 200, alice gets it from carol\40127.0.0.1\3aPORT@sip.localhost
//! alice → bob\40localhost@sip.localhost (through her account: B challenges with 407)
//! expect bob gets it from alice2@sip2.localhost, never from alice@localhost
//! A restarts → the account registers again
//! a wrong password → failed with the 401 in its status, a headline, 2 REGISTERs at B, no more
//! a SIPp provider and `<target>#<id>@C`: the chosen account's identity and display name
//! a SIPp provider INVITEs the account's Contact: alice is proposed the call from
//!   carol\40pbx.example#sipp@C, answers; 200 with SDP, ACK, BYE ends her session
//! TLS: B listens on TLS only (a certificate for IP:127.0.0.1 only); A's account has
//!   transport tls, outbound proxy sip:127.0.0.1:B → registered with Digest, the
//!   certificate checked against the proxy's host, not the registrar's; B's binding is
//!   A's ;transport=tls Contact; a message each way
//! PUBLISH (RFC 3903): bob@localhost watches alice2@sip2.localhost at B; alice's presence
//!   to sip.localhost → A PUBLISHes it as alice2 (407 answered) → bob sees alice2 available
//!   with her status; unavailable → PUBLISH Expires: 0 → bob sees alice2 unavailable
//! ```

use std::time::{Duration, Instant};

use serde_json::Value;
use stox_tests::sipp::Sipp;
use stox_tests::{Prosody, ProsodyOptions, Stox, XmppClient, PASSWORD};

const T: Duration = Duration::from_secs(15);

fn prosody_with_two_components() -> Prosody {
    let mut opts = ProsodyOptions::without_offline();
    opts.extra_config =
        "\nComponent \"sip2.localhost\"\n    component_secret = \"componentsecret\"\n".into();
    Prosody::start(opts).expect("prosody")
}

fn provider(prosody: &Prosody) -> Stox {
    let b = Stox::start(prosody, "[xmpp]\ncomponent = \"sip2.localhost\"\n").expect("stox B");
    let r = b
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "alice2", "password": "alice2-secret"}"#),
        )
        .expect("admin B");
    assert_eq!(r.status, 201, "{}", r.body);
    b
}

fn add_account(a: &Stox, body: &str) -> Value {
    let r = a
        .admin_request("POST", "/api/v1/accounts", Some(body))
        .expect("admin A");
    assert_eq!(r.status, 201, "{}", r.body);
    r.json().expect("json")
}

fn account(a: &Stox, id: &str) -> Value {
    let r = a
        .admin_get(&format!("/api/v1/accounts/alice@localhost/{id}"))
        .expect("admin A");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().expect("json")
}

/// Polls the account until its state is `state`.
fn wait_state(a: &Stox, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let v = account(a, id);
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "account {id} never {state}: {v}\n{}",
            a.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(s: &Stox, name: &str) -> Option<f64> {
    let r = s.admin_get("/metrics").ok()?;
    r.body
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn account_at_b(b: &Stox, password: &str) -> String {
    format!(
        r#"{{"jid": "alice@localhost", "id": "b", "registrar": "sip:sip2.localhost",
            "user": "alice2", "password": "{password}", "display_name": "Alice Two",
            "outbound_proxy": "sip:127.0.0.1:{}"}}"#,
        b.sip_port()
    )
}

#[test]
fn an_account_at_a_second_stox_registers_and_carries_messages_both_ways() {
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let mut a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let mut bob = XmppClient::connect(&prosody, "bob", PASSWORD, "desk").expect("bob");

    let created = add_account(&a, &account_at_b(&b, "alice2-secret"));
    assert_eq!(created["aor"], "sip:alice2@sip2.localhost");
    assert!(!created.to_string().contains("alice2-secret"));
    let v = wait_state(&a, "b", "registered");
    let expires_in = v["expires_in"].as_u64().expect("expires_in");
    assert!((3500..=3600).contains(&expires_in), "{v}");
    assert_eq!(v["default"], true);
    assert_eq!(metric(&a, "stox_accounts{state=\"registered\"}"), Some(1.0));

    // B holds the binding at A's Contact for the account.
    let contact_user = v["contact_user"]
        .as_str()
        .expect("contact user")
        .to_string();
    let users = b
        .admin_get("/api/v1/sip-users")
        .expect("admin B")
        .json()
        .expect("json");
    let bindings = users[0]["bindings"].as_array().expect("bindings").clone();
    assert_eq!(bindings.len(), 1, "{users}");
    assert_eq!(
        bindings[0]["contact"],
        format!("sip:{contact_user}@127.0.0.1:{}", a.sip_port()).as_str()
    );
    let told = alice
        .expect(T, |s| s.is_message() && s.kind() == Some("headline"))
        .expect("a headline");
    assert_eq!(told.from(), Some("sip.localhost"));
    assert!(
        told.body().unwrap_or_default().contains("registered"),
        "{}",
        told.xml()
    );

    // In: bob writes to alice2 at B; B sends it to the binding, A to alice.
    bob.send_message("alice2@sip2.localhost", "hello alice2")
        .expect("send");
    let m = alice
        .expect(T, |s| {
            s.is_message() && s.body().as_deref() == Some("hello alice2")
        })
        .expect("delivered through the account");
    // bob's device travels as a GRUU (`;gr=desk`) and comes back as the resource.
    assert_eq!(m.from(), Some("bob\\40localhost@sip.localhost/desk"));
    assert_ne!(m.kind(), Some("error"));

    // In from SIP: a SIPp UAC sends MESSAGE sip:alice2@sip2.localhost to B; B relays it to
    // the binding, A delivers it to alice.
    let run = Sipp::uac_message(b.sip_addr(), "alice2", "sip2.localhost", "hello from sipp")
        .run()
        .expect("sipp uac");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(run.final_status(), Some(200), "{}", run.summary());
    let m = alice
        .expect(T, |s| {
            s.is_message() && s.body().as_deref() == Some("hello from sipp")
        })
        .expect("delivered from SIP through B and the account");
    let from = m.from().unwrap_or_default();
    assert!(
        from.starts_with("carol\\40127.0.0.1\\3a") && from.ends_with("@sip.localhost"),
        "{from}"
    );

    // Out: alice answers through C; B challenges (407), A answers with alice2's credentials,
    // and bob sees the account's identity.
    alice
        .send_message("bob\\40localhost@sip.localhost", "hello from alice2")
        .expect("send");
    let m = bob
        .expect(T, |s| s.is_message() && s.body().is_some())
        .expect("bob gets the answer");
    assert_eq!(
        m.body().as_deref(),
        Some("hello from alice2"),
        "{}",
        m.xml()
    );
    assert_eq!(
        m.from().map(|f| f.split('/').next().unwrap_or(f)),
        Some("alice2@sip2.localhost")
    );
    assert!(!m.xml().contains("alice@localhost"), "{}", m.xml());
    let errors: Vec<String> = alice
        .drain(Duration::from_millis(300))
        .iter()
        .filter(|s| s.kind() == Some("error"))
        .map(|s| s.xml().to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    // A restart: the stored account registers again.
    a.restart().expect("restart A");
    let v = wait_state(&a, "b", "registered");
    assert_eq!(v["failures"], 0);
    let users = b
        .admin_get("/api/v1/sip-users")
        .expect("admin B")
        .json()
        .expect("json");
    assert_eq!(
        users[0]["bindings"].as_array().map(Vec::len),
        Some(1),
        "the same Contact, refreshed: {users}"
    );

    // Removal unregisters at B (Expires: 0).
    let r = a
        .admin_request("DELETE", "/api/v1/accounts/alice@localhost/b", None)
        .expect("delete");
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + T;
    loop {
        let users = b
            .admin_get("/api/v1/sip-users")
            .expect("admin B")
            .json()
            .expect("json");
        if users[0]["bindings"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still bound at B: {users}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// TLS to the provider (RFC 3261 §26, RFC 5922): B listens on TLS only, with a certificate
/// for `IP:127.0.0.1` and nothing else; A's account has transport `tls` and the outbound
/// proxy `sip:127.0.0.1:B`. The REGISTER (Request-URI `sip:sip2.localhost`, a name the
/// certificate does not hold) is verified against the proxy's host, as RFC 5922 §4 and
/// RFC 3261 §26.2 want of a next hop that is a proxy; it registers with Digest, the
/// binding at B is A's TLS Contact, and a message goes each way. B has no UDP or TCP
/// socket at all: whatever it received or sent was TLS.
#[test]
fn an_account_over_tls_registers_and_carries_messages_both_ways() {
    let certs = stox_tests::process::temp_dir("certs").expect("temp dir");
    let (cert, key) =
        stox_tests::certs::self_signed_for(certs.path(), "loopback", &["IP:127.0.0.1"]);
    let tls = |listen: &str| {
        format!(
            "[sip]\nlisten = [{listen}]\n\
             [sip.tls]\ncert = \"{c}\"\nkey = \"{k}\"\nca = \"{c}\"\n",
            c = cert.display(),
            k = key.display()
        )
    };
    let prosody = prosody_with_two_components();
    let b_tls = stox_tests::ports::free_port();
    let b = Stox::start(
        &prosody,
        &format!(
            "[xmpp]\ncomponent = \"sip2.localhost\"\n{}",
            tls(&format!("\"tls:127.0.0.1:{b_tls}\""))
        ),
    )
    .expect("stox B");
    let r = b
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "alice2", "password": "alice2-secret"}"#),
        )
        .expect("admin B");
    assert_eq!(r.status, 201, "{}", r.body);
    let (a_udp, a_tls) = (
        stox_tests::ports::free_port(),
        stox_tests::ports::free_port(),
    );
    let a = Stox::start(
        &prosody,
        &tls(&format!(
            "\"udp:127.0.0.1:{a_udp}\", \"tls:127.0.0.1:{a_tls}\""
        )),
    )
    .expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let mut bob = XmppClient::connect(&prosody, "bob", PASSWORD, "desk").expect("bob");

    let created = add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "b", "registrar": "sip:sip2.localhost",
                "user": "alice2", "password": "alice2-secret", "transport": "tls",
                "outbound_proxy": "sip:127.0.0.1:{b_tls}"}}"#
        ),
    );
    assert_eq!(created["transport"], "tls");
    let v = wait_state(&a, "b", "registered");
    // B challenged the first REGISTER (401) and took the second, with Digest.
    assert_eq!(metric(&b, "stox_registrations_total"), Some(2.0), "{v}");
    let contact_user = v["contact_user"]
        .as_str()
        .expect("contact user")
        .to_string();
    let users = b
        .admin_get("/api/v1/sip-users")
        .expect("admin B")
        .json()
        .expect("json");
    let bindings = users[0]["bindings"].as_array().expect("bindings").clone();
    assert_eq!(bindings.len(), 1, "{users}");
    assert_eq!(
        bindings[0]["contact"],
        format!("sip:{contact_user}@127.0.0.1:{a_tls};transport=tls").as_str(),
        "{users}"
    );

    // In: bob writes to alice2 at B; B sends it to the binding (over TLS: it has nothing
    // else), A delivers it to alice.
    bob.send_message("alice2@sip2.localhost", "hello alice2 over TLS")
        .expect("send");
    let m = alice
        .expect(T, |s| {
            s.is_message() && s.body().as_deref() == Some("hello alice2 over TLS")
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", b.log_tail(30), a.log_tail(30)));
    assert_eq!(m.from(), Some("bob\\40localhost@sip.localhost/desk"));

    // Out: alice answers through the account: over TLS to B (407 answered), bob sees
    // alice2.
    alice
        .send_message(
            "bob\\40localhost@sip.localhost",
            "hello from alice2 over TLS",
        )
        .expect("send");
    let m = bob
        .expect(T, |s| s.is_message() && s.body().is_some())
        .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", a.log_tail(30), b.log_tail(30)));
    assert_eq!(m.body().as_deref(), Some("hello from alice2 over TLS"));
    assert_eq!(
        m.from().map(|f| f.split('/').next().unwrap_or(f)),
        Some("alice2@sip2.localhost")
    );
    let errors: Vec<String> = alice
        .drain(Duration::from_millis(300))
        .iter()
        .filter(|s| s.kind() == Some("error"))
        .map(|s| s.xml().to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    // A `tls` account needs a `tls:` listener for its Contact: refused without one (a
    // stox without TLS in A's place).
    drop(a);
    let plain = Stox::start(&prosody, "").expect("stox without TLS");
    let r = plain
        .admin_request(
            "POST",
            "/api/v1/accounts",
            Some(&format!(
                r#"{{"jid": "bob@localhost", "registrar": "sip:sip2.localhost",
                    "user": "bob2", "password": "x", "transport": "tls",
                    "outbound_proxy": "sip:127.0.0.1:{b_tls}"}}"#
            )),
        )
        .expect("admin");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("tls"), "{}", r.body);
}

#[test]
fn a_wrong_password_shows_a_failed_status_without_a_retry_loop() {
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    add_account(&a, &account_at_b(&b, "not-the-password"));
    let v = wait_state(&a, "b", "failed");
    let error = v["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("401"), "{v}");
    assert_eq!(v["failures"], 1);
    assert!(v["next_register_in"].as_u64().unwrap_or(0) >= 25, "{v}");
    let told = alice
        .expect(T, |s| s.is_message() && s.kind() == Some("headline"))
        .expect("a headline");
    assert!(
        told.body().unwrap_or_default().contains("failed"),
        "{}",
        told.xml()
    );
    // Three seconds later B has seen exactly the two REGISTERs (the challenge and one
    // answer): no tight loop.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(&b, "stox_registrations_total"), Some(2.0));
    assert_eq!(account(&a, "b")["failures"], 1);
    assert_eq!(metric(&a, "stox_accounts{state=\"failed\"}"), Some(1.0));
    let users = b
        .admin_get("/api/v1/sip-users")
        .expect("admin B")
        .json()
        .expect("json");
    assert_eq!(users[0]["bindings"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_chosen_account_carries_its_identity_to_the_provider() {
    let prosody = Prosody::start(ProsodyOptions::without_offline()).expect("prosody");
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    // The default account: a provider that never answers (its REGISTERs go nowhere).
    let silent = stox_tests::ports::free_port();
    add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "main", "registrar": "sip:provider.invalid",
                "user": "alice", "password": "whatever", "outbound_proxy": "sip:127.0.0.1:{silent}"}}"#
        ),
    );
    // The chosen one: a SIPp provider (one REGISTER, one MESSAGE).
    let p = Sipp::uas_provider(2).expect("sipp provider");
    let port = p.port();
    add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "sipp", "registrar": "sip:127.0.0.1:{port}",
                "user": "alice3", "password": "pw-three", "display_name": "Alice Three",
                "outbound_proxy": "sip:127.0.0.1:{port}"}}"#
        ),
    );
    let v = wait_state(&a, "sipp", "registered");
    assert!(
        v["expires_in"].as_u64().unwrap_or(0) <= 120,
        "the provider's Expires: {v}"
    );
    assert_eq!(v["default"], false);
    assert_eq!(account(&a, "main")["default"], true);

    alice
        .send_message("bob\\40example.net#sipp@sip.localhost", "through sipp")
        .expect("send");
    let run = p.wait(T).expect("provider ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let registers = run.requests("REGISTER", true);
    assert_eq!(registers.len(), 1);
    assert_eq!(
        registers[0].header_uri("To"),
        Some(format!("sip:alice3@127.0.0.1:{port}").as_str())
    );
    let messages = run.requests("MESSAGE", true);
    assert_eq!(messages.len(), 1, "{}", run.summary());
    let m = messages[0];
    assert_eq!(m.request_uri(), Some("sip:bob@example.net"));
    assert_eq!(m.body_text(), "through sipp");
    let from = m.header("From").unwrap_or_default();
    assert!(
        from.starts_with(&format!("\"Alice Three\" <sip:alice3@127.0.0.1:{port}>")),
        "{from}"
    );
    let raw = String::from_utf8_lossy(&m.raw).to_string();
    assert!(
        !raw.contains("alice@localhost"),
        "the XMPP address leaked: {raw}"
    );
    let errors: Vec<String> = alice
        .drain(Duration::from_millis(500))
        .iter()
        .filter(|s| s.kind() == Some("error"))
        .map(|s| s.xml().to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// alice, from her own client: disco#info on C lists jabber:iq:register and commands;
/// XEP-0077 form → submit (her account at B) → registered; XEP-0050 list-accounts shows
/// it registered; add-account adds a second one (wrong password → failed in the list);
/// set-default-account, remove-account; XEP-0077 <remove/> deletes the rest
#[test]
fn alice_manages_her_accounts_with_in_band_registration_and_commands() {
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let c = "sip.localhost";

    let info = alice
        .iq(
            "get",
            c,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            T,
        )
        .expect("disco");
    for f in ["jabber:iq:register", "http://jabber.org/protocol/commands"] {
        assert!(
            info.xml().contains(&format!("var='{f}'"))
                || info.xml().contains(&format!("var=\"{f}\"")),
            "{f}: {}",
            info.xml()
        );
    }
    let form = alice
        .iq("get", c, "<query xmlns='jabber:iq:register'/>", T)
        .expect("form");
    assert_eq!(form.kind(), Some("result"), "{}", form.xml());
    assert!(
        form.xml().contains("registrar") && !form.xml().contains("<registered"),
        "{}",
        form.xml()
    );

    let proxy = format!("sip:127.0.0.1:{}", b.sip_port());
    let r = alice
        .register_with_form(
            c,
            &[
                ("FORM_TYPE", "jabber:iq:register"),
                ("registrar", "sip:sip2.localhost"),
                ("user", "alice2"),
                ("password", "alice2-secret"),
                ("outbound_proxy", &proxy),
            ],
            T,
        )
        .expect("register");
    assert_eq!(r.kind(), Some("result"), "{}", r.xml());
    let v = wait_state(&a, "sip2-localhost", "registered");
    assert_eq!(v["default"], true);

    // The status, as her client shows it.
    let list = alice.command(c, "list-accounts", None, T).expect("list");
    assert!(list.xml().contains("completed"), "{}", list.xml());
    assert!(
        list.xml().contains("sip:alice2@sip2.localhost registered"),
        "{}",
        list.xml()
    );

    // A second account with a wrong password: failed, with the reason in the list.
    let form = alice.command(c, "add-account", None, T).expect("form");
    assert!(form.xml().contains("executing"), "{}", form.xml());
    let r = alice
        .command(
            c,
            "add-account",
            Some(&[
                ("id", "bad"),
                ("registrar", "sip:sip2.localhost"),
                ("user", "alice2"),
                ("password", "wrong"),
                ("outbound_proxy", &proxy),
            ]),
            T,
        )
        .expect("add");
    assert!(r.xml().contains("completed"), "{}", r.xml());
    wait_state(&a, "bad", "failed");
    let list = alice.command(c, "list-accounts", None, T).expect("list");
    assert!(
        list.xml()
            .contains("bad sip:alice2@sip2.localhost failed: 401"),
        "{}",
        list.xml()
    );

    let r = alice
        .command(c, "set-default-account", Some(&[("id", "bad")]), T)
        .expect("default");
    assert!(r.xml().contains("completed"), "{}", r.xml());
    assert_eq!(account(&a, "bad")["default"], true);
    assert_eq!(account(&a, "sip2-localhost")["default"], false);
    let r = alice
        .command(c, "remove-account", Some(&[("id", "bad")]), T)
        .expect("remove");
    assert!(r.xml().contains("completed"), "{}", r.xml());
    assert_eq!(
        account(&a, "sip2-localhost")["default"],
        true,
        "the other one is default again"
    );

    let r = alice
        .iq(
            "set",
            c,
            "<query xmlns='jabber:iq:register'><remove/></query>",
            T,
        )
        .expect("remove all");
    assert_eq!(r.kind(), Some("result"), "{}", r.xml());
    let all = a
        .admin_get("/api/v1/accounts?jid=alice@localhost")
        .expect("admin")
        .json()
        .expect("json");
    assert_eq!(all.as_array().map(Vec::len), Some(0), "{all}");
}

/// alice (a StanzaJS + libwebrtc client) calls a SIP phone at a provider's proxy (SIPp)
/// through her account: the proxy challenges the INVITE (407), stox answers with the
/// account's credentials; the INVITE carries the account's identity, rings and is refused
/// 486, which ends alice's session
#[test]
fn a_call_leaves_through_the_account_and_answers_the_proxy_challenge() {
    use stox_tests::jingle_peer::{CallOptions, JinglePeer, PeerOptions};
    let prosody = Prosody::start(ProsodyOptions {
        websocket: true,
        ..ProsodyOptions::without_offline()
    })
    .expect("prosody");
    let a = Stox::start(&prosody, "[media]\naddress = \"127.0.0.1\"\n").expect("stox A");
    let silent = stox_tests::ports::free_port();
    add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "p", "registrar": "sip:127.0.0.1:{silent}",
                "user": "alice3", "password": "pw-three", "display_name": "Alice Three"}}"#
        ),
    );
    let uas = Sipp::uas_invite_auth().expect("sipp");
    let port = uas.port();
    let mut alice = JinglePeer::connect(&prosody, "alice", PASSWORD, "a", PeerOptions::tone(660))
        .expect("alice online");
    let contact = format!("bob\\40127.0.0.1\\3a{port}@sip.localhost");
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    alice
        .expect_event("session_ringing", &sid, T)
        .expect("the authenticated INVITE rings");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .expect("486 ends the session");
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    let run = uas.wait(T).expect("sipp ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let invites: Vec<_> = run
        .received_requests_unique()
        .into_iter()
        .filter(|m| m.method() == Some("INVITE"))
        .collect();
    assert_eq!(invites.len(), 2, "{}", run.summary());
    for inv in &invites {
        let from = inv.header("From").unwrap_or_default();
        assert!(
            from.contains(&format!("sip:alice3@127.0.0.1:{silent}"))
                && from.contains("Alice Three"),
            "{from}"
        );
        let raw = String::from_utf8_lossy(&inv.raw).to_string();
        assert!(!raw.contains("alice@localhost"), "{raw}");
    }
    assert!(invites[0].header("Proxy-Authorization").is_none());
    let auth = invites[1]
        .header("Proxy-Authorization")
        .expect("credentials in the second INVITE");
    let param = |n: &str| stox_tests::digest::challenge_param(auth, n).unwrap_or_default();
    assert_eq!(
        (param("username"), param("realm")),
        ("alice3".to_string(), "provider.test".to_string())
    );
    assert!(
        stox_tests::digest::md5_response_ok(auth, "INVITE", "pw-three"),
        "the response is right for the account's password: {auth}"
    );
}

/// A call arrives through a non-default account: the SIPp provider takes the account's
/// REGISTER, then (from the same address, as its proxy would) INVITEs the Contact stox
/// registered with an Opus + PCMU + telephone-event offer. alice (StanzaJS + libwebrtc) is
/// proposed the call from `carol\40pbx.example#sipp@C` (XEP-0353), answers; the provider
/// gets 200 with an SDP answer, ACKs, hangs up with BYE, and alice's session ends.
#[test]
fn a_call_arrives_through_the_account_and_the_provider_hangs_up() {
    use stox_tests::jingle_peer::{Answer, JinglePeer, PeerOptions};
    let prosody = Prosody::start(ProsodyOptions {
        websocket: true,
        ..ProsodyOptions::without_offline()
    })
    .expect("prosody");
    let a = Stox::start(&prosody, "[media]\naddress = \"127.0.0.1\"\n").expect("stox A");
    // The default account goes nowhere; the call comes through the second one.
    let silent = stox_tests::ports::free_port();
    add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "main", "registrar": "sip:provider.invalid",
                "user": "alice", "password": "whatever", "outbound_proxy": "sip:127.0.0.1:{silent}"}}"#
        ),
    );
    let p = Sipp::uas_provider(1).expect("sipp provider");
    let port = p.port();
    add_account(
        &a,
        &format!(
            r#"{{"jid": "alice@localhost", "id": "sipp", "registrar": "sip:127.0.0.1:{port}",
                "user": "alice3", "password": "pw-three"}}"#
        ),
    );
    let v = wait_state(&a, "sipp", "registered");
    assert_eq!(v["default"], false);
    let run = p.wait(T).expect("provider ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let registers = run.requests("REGISTER", true);
    assert_eq!(registers.len(), 1, "{}", run.summary());
    let contact = registers[0]
        .header_uri("Contact")
        .expect("the REGISTER's Contact")
        .to_string();
    assert_eq!(
        contact,
        format!(
            "sip:{}@127.0.0.1:{}",
            v["contact_user"].as_str().unwrap_or_default(),
            a.sip_port()
        )
    );

    let mut alice = JinglePeer::connect(
        &prosody,
        "alice",
        PASSWORD,
        "a",
        PeerOptions::tone(660).answer(Answer::Auto),
    )
    .expect("alice online");
    // The provider's proxy, from the address alice's account registered with.
    let aor = format!("sip:alice3@127.0.0.1:{port}");
    let call = Sipp::uac_invite_bye(&contact, &aor, "pbx.example", Duration::from_secs(2))
        .remote(a.sip_addr())
        .port(port)
        .spawn()
        .expect("sipp uac");
    let propose = alice
        .expect(T, |e| e.kind() == "propose")
        .unwrap_or_else(|e| panic!("no <propose/> for the INVITE: {e:#}\n{}", a.log_tail(40)));
    let sid = propose.sid().expect("sid").to_string();
    let from = propose.str("from").unwrap_or_default().to_string();
    assert_eq!(
        from.split('/').next(),
        Some("carol\\40pbx.example#sipp@sip.localhost"),
        "{propose}"
    );
    let incoming = alice
        .expect_event("incoming", &sid, T)
        .expect("session-initiate");
    assert_eq!(incoming.str("from"), Some(from.as_str()), "{incoming}");
    alice.expect_event("accepted", &sid, T).expect("accepted");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("the BYE did not end the session: {e:#}\n{}", a.log_tail(40)));
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");

    let run = call.wait(T).expect("sipp uac ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let ok = run.final_responses("INVITE", true);
    assert_eq!(ok.len(), 1, "{}", run.summary());
    assert_eq!(ok[0].status(), Some(200));
    let answer = ok[0].body_text();
    assert!(answer.starts_with("v=0"), "{answer}");
    let m = answer
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no audio in the answer: {answer}"));
    let port_of_answer: u16 = m
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    assert_ne!(port_of_answer, 0, "{answer}");
    assert!(answer.contains("c=IN IP4 127.0.0.1"), "{answer}");
    assert!(
        answer.contains("opus/48000") || answer.contains("PCMU/8000"),
        "an offered codec: {answer}"
    );
    assert!(answer.contains("telephone-event/"), "{answer}");
    let byes = run.final_responses("BYE", true);
    assert_eq!(byes.len(), 1, "{}", run.summary());
    assert_eq!(byes[0].status(), Some(200));
    let errors: Vec<String> = std::fs::read_to_string(a.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// Presence through alice's (default) account at B, both ways.
///
/// Out: alice subscribes to dave, a SIP user of B (`dave\40sip2.localhost@C`): A SUBSCRIBEs
/// from alice2's AOR through B (B challenges with 407, A answers with alice2's
/// credentials), B approves and NOTIFYs A's account Contact; alice gets `subscribed` from
/// dave's JID. In: a SIPp watcher SUBSCRIBEs at the account's Contact; alice gets the
/// subscription request from carol's JID at C, approves, and the watcher gets an active
/// NOTIFY with her presence.
#[test]
fn presence_goes_through_the_account_both_ways() {
    use stox_tests::sipp::WatcherPlan;
    use stox_tests::{sip_contact_jid, ClientOptions};
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let r = b
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave-secret"}"#),
        )
        .expect("admin B");
    assert_eq!(r.status, 201, "{}", r.body);
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect_with(
        &prosody,
        "alice",
        PASSWORD,
        "laptop",
        ClientOptions {
            manual_subscriptions: true,
            ..ClientOptions::default()
        },
    )
    .expect("alice");
    alice.roster(T).expect("alice's roster");
    add_account(&a, &account_at_b(&b, "alice2-secret"));
    let v = wait_state(&a, "b", "registered");
    let contact_user = v["contact_user"]
        .as_str()
        .expect("contact user")
        .to_string();

    // Out.
    let dave = "dave\\40sip2.localhost@sip.localhost";
    alice.subscribe(dave).expect("subscribe");
    let ok = alice
        .expect_presence(dave, Some("subscribed"), T)
        .unwrap_or_else(|e| panic!("no approval from dave: {e:#}\n{}", a.log_tail(40)));
    assert_eq!(ok.from(), Some(dave));
    let subs = b
        .admin_get("/api/v1/subscriptions")
        .expect("admin B")
        .json()
        .expect("json");
    let list = subs.as_array().cloned().unwrap_or_default();
    assert!(
        list.iter().any(|s| s["watcher"]
            .as_str()
            .is_some_and(|w| w.contains("alice2@sip2.localhost"))
            && s["presentity"]
                .as_str()
                .is_some_and(|p| p.contains("dave@sip2.localhost"))),
        "B sees the account's AOR watching dave: {subs}"
    );
    assert!(!subs.to_string().contains("alice@localhost"), "{subs}");
    // B challenged the SUBSCRIBE (its only 407 here) and A answered it.
    assert_eq!(
        metric(&b, "stox_sip_responses_sent_total{code=\"407\"}"),
        Some(1.0)
    );
    let b_log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
    assert!(
        !b_log.contains("alice@localhost"),
        "the XMPP address reached the provider"
    );

    // In.
    let plan = WatcherPlan::new(60).quiet(Duration::from_millis(500));
    let watcher = Sipp::uac_presence_watcher(
        a.sip_addr(),
        &contact_user,
        &format!("127.0.0.1:{}", a.sip_port()),
        &plan,
    )
    .timeout(Duration::from_secs(20));
    let carol = sip_contact_jid("carol", "127.0.0.1", watcher.local_port(), "sip.localhost");
    let watcher = watcher.spawn().expect("sipp watcher");
    let ask = alice
        .expect_presence(&carol, Some("subscribe"), T)
        .unwrap_or_else(|e| panic!("no subscription request: {e:#}\n{}", a.log_tail(40)));
    assert_eq!(
        ask.to().map(|t| t.split('/').next().unwrap_or(t)),
        Some("alice@localhost")
    );
    alice.approve(&carol).expect("approve");
    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let states: Vec<String> = run
        .subscription_states(true)
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert!(states.iter().any(|s| s == "active"), "{states:?}");
    // The dialog runs through the account's Contact, not stox's own.
    let ok = run.final_responses("SUBSCRIBE", true);
    assert_eq!(
        ok.first().and_then(|r| r.status()),
        Some(200),
        "{}",
        run.summary()
    );
    let c = ok[0].header("Contact").unwrap_or_default();
    assert!(c.contains(&contact_user), "{c}");
    let notifies = run.requests("NOTIFY", true);
    let active = notifies
        .iter()
        .find(|n| n.body_text().contains("<basic>open</basic>"))
        .unwrap_or_else(|| panic!("no NOTIFY with alice's presence: {}", run.summary()));
    assert!(
        !active.body_text().contains("alice@localhost"),
        "{}",
        active.body_text()
    );
}

/// Removing the account ends the subscriptions made through it (RFC 6665) before it
/// unregisters: stox B, the provider, gets SUBSCRIBE Expires: 0 for alice2's watch of dave
/// (and drops it), alice is told `unsubscribed`; a SIPp watcher at the account's Contact
/// gets NOTIFY `terminated;reason=noresource`.
#[test]
fn removing_the_account_ends_its_presence_subscriptions() {
    use stox_tests::sipp::WatcherPlan;
    use stox_tests::{sip_contact_jid, ClientOptions};
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let r = b
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave-secret"}"#),
        )
        .expect("admin B");
    assert_eq!(r.status, 201, "{}", r.body);
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect_with(
        &prosody,
        "alice",
        PASSWORD,
        "laptop",
        ClientOptions {
            manual_subscriptions: true,
            ..ClientOptions::default()
        },
    )
    .expect("alice");
    alice.roster(T).expect("alice's roster");
    add_account(&a, &account_at_b(&b, "alice2-secret"));
    let v = wait_state(&a, "b", "registered");
    let contact_user = v["contact_user"]
        .as_str()
        .expect("contact user")
        .to_string();

    // alice watches dave at B through her account.
    let dave = "dave\\40sip2.localhost@sip.localhost";
    alice.subscribe(dave).expect("subscribe");
    alice
        .expect_presence(dave, Some("subscribed"), T)
        .unwrap_or_else(|e| panic!("no approval from dave: {e:#}\n{}", a.log_tail(40)));
    let watched_at_b = |b: &Stox| -> bool {
        let subs = b
            .admin_get("/api/v1/subscriptions")
            .expect("admin B")
            .json()
            .expect("json");
        subs.as_array().is_some_and(|l| {
            l.iter().any(|s| {
                s["watcher"]
                    .as_str()
                    .is_some_and(|w| w.contains("alice2@sip2.localhost"))
            })
        })
    };
    assert!(watched_at_b(&b));

    // carol (SIPp) watches alice at the account's Contact until the notifier ends it.
    let plan = WatcherPlan::until_terminated(600).quiet(Duration::from_millis(200));
    let watcher = Sipp::uac_presence_watcher(
        a.sip_addr(),
        &contact_user,
        &format!("127.0.0.1:{}", a.sip_port()),
        &plan,
    )
    .timeout(Duration::from_secs(30));
    let carol = sip_contact_jid("carol", "127.0.0.1", watcher.local_port(), "sip.localhost");
    let watcher = watcher.spawn().expect("sipp watcher");
    alice
        .expect_presence(&carol, Some("subscribe"), T)
        .unwrap_or_else(|e| panic!("no subscription request: {e:#}\n{}", a.log_tail(40)));
    alice.approve(&carol).expect("approve");
    // Wait until A holds carol's subscription as active.
    let deadline = Instant::now() + T;
    loop {
        let subs = a
            .admin_get("/api/v1/subscriptions")
            .expect("admin A")
            .json()
            .expect("json");
        let active = subs.as_array().is_some_and(|l| {
            l.iter()
                .any(|s| s["direction"] == "sip_to_xmpp" && s["state"] == "active")
        });
        if active {
            break;
        }
        assert!(Instant::now() < deadline, "carol never active: {subs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let subscribes = "stox_sip_requests_received_total{method=\"SUBSCRIBE\"}";
    let subscribes_before = metric(&b, subscribes).unwrap_or(0.0);

    // The account goes.
    let r = a
        .admin_request("DELETE", "/api/v1/accounts/alice@localhost/b", None)
        .expect("delete");
    assert_eq!(r.status, 204);

    // carol's dialog: NOTIFY terminated;reason=noresource (RFC 6665 §4.2.2).
    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let states = run.subscription_states(true);
    let last = states.last().expect("NOTIFYs");
    assert_eq!(last.state, "terminated", "{states:?}");
    assert_eq!(last.reason.as_deref(), Some("noresource"), "{states:?}");
    let terminated = run.requests("NOTIFY", true);
    let c = terminated
        .last()
        .and_then(|n| n.header("Contact"))
        .unwrap_or_default();
    assert!(
        c.contains(&contact_user),
        "still the account's Contact: {c}"
    );

    // alice's watch: SUBSCRIBE Expires: 0 reached B, which dropped the subscription; alice
    // is told the authorization is gone.
    alice
        .expect_presence(dave, Some("unsubscribed"), T)
        .unwrap_or_else(|e| panic!("no unsubscribed: {e:#}\n{}", a.log_tail(40)));
    let deadline = Instant::now() + T;
    while watched_at_b(&b) {
        assert!(
            Instant::now() < deadline,
            "B still has alice2's subscription\n{}",
            b.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // That was the SUBSCRIBE (Expires: 0): B received one more.
    assert_eq!(
        metric(&b, subscribes),
        Some(subscribes_before + 1.0),
        "{}",
        b.log_tail(40)
    );
    let b_log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
    assert!(
        !b_log.contains("alice@localhost"),
        "the XMPP address reached B"
    );
    // And the account unregistered at B.
    let deadline = Instant::now() + T;
    loop {
        let users = b
            .admin_get("/api/v1/sip-users")
            .expect("admin B")
            .json()
            .expect("json");
        let alice2 = users
            .as_array()
            .and_then(|l| l.iter().find(|u| u["user"] == "alice2").cloned())
            .unwrap_or_default();
        if alice2["bindings"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still bound at B: {users}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RFC 3903: stox A publishes alice's presence as her account's AOR at the provider, stox
/// B, which composes it for its watchers (it answers SUBSCRIBEs for its SIP users itself,
/// so only a PUBLISH makes the account look online there). bob, an XMPP user at B, watches
/// `alice2@sip2.localhost`; alice goes available with a status → bob sees alice2 available
/// with it; alice goes unavailable → bob sees alice2 unavailable. Her XMPP address never
/// reaches B.
#[test]
fn alices_presence_is_published_through_her_account() {
    let prosody = prosody_with_two_components();
    let b = provider(&prosody);
    let a = Stox::start(&prosody, "").expect("stox A");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let mut bob = XmppClient::connect_with(
        &prosody,
        "bob",
        PASSWORD,
        "desk",
        stox_tests::ClientOptions {
            manual_subscriptions: true,
            ..stox_tests::ClientOptions::default()
        },
    )
    .expect("bob");
    bob.roster(T).expect("bob's roster");
    add_account(&a, &account_at_b(&b, "alice2-secret"));
    wait_state(&a, "b", "registered");

    // bob watches the account's AOR at B (a SIP user of B: B is its presence server).
    let alice2 = "alice2@sip2.localhost";
    bob.subscribe(alice2).expect("subscribe");
    bob.expect_presence(alice2, Some("subscribed"), T)
        .unwrap_or_else(|e| panic!("B never approved: {e:#}\n{}", b.log_tail(40)));
    bob.drain(Duration::from_millis(500));

    // alice's presence reaches stox A (directed to the gateway, XEP-0100) → PUBLISH.
    alice
        .send_raw(
            "<presence to='sip.localhost'><show>away</show><status>In a meeting</status></presence>",
        )
        .expect("presence");
    let p = bob
        .expect(T, |s| {
            s.is_presence()
                && s.from().is_some_and(|f| f.starts_with(alice2))
                && s.kind().is_none()
                && s.status().as_deref() == Some("In a meeting")
        })
        .unwrap_or_else(|e| {
            panic!(
                "bob never saw alice2 available: {e:#}\nA:\n{}\nB:\n{}",
                a.log_tail(40),
                b.log_tail(40)
            )
        });
    assert_eq!(p.show().as_deref(), Some("away"), "{}", p.xml());
    let b_log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
    assert!(
        !b_log.contains("alice@localhost"),
        "the XMPP address reached the provider"
    );
    let published = metric(&b, "stox_presence_publish_total").unwrap_or_default();
    assert!(published >= 1.0, "B counted no PUBLISH");
    // B wants alice2's credentials for her PUBLISH (407); A answered with them.
    let challenged = metric(&b, "stox_sip_responses_sent_total{code=\"407\"}");
    assert!(challenged.is_some_and(|n| n >= 1.0), "{challenged:?}");
    bob.drain(Duration::from_millis(300));

    // alice goes unavailable → the publication is removed → bob sees alice2 unavailable.
    alice
        .send_raw("<presence to='sip.localhost' type='unavailable'/>")
        .expect("unavailable");
    bob.expect_presence(alice2, Some("unavailable"), T)
        .unwrap_or_else(|e| {
            panic!(
                "bob never saw alice2 unavailable: {e:#}\nA:\n{}\nB:\n{}",
                a.log_tail(40),
                b.log_tail(40)
            )
        });
}
