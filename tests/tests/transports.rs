//! SIP over WebSocket (RFC 7118), secure WebSocket and TLS (RFC 3261 §26, rustls) beside
//! UDP, with real peers: JsSIP in Node.js and baresip 1.0 (issue 5).
//!
//! ```text
//! start prosody, stox with listen udp, ws, wss, tls and [sip.tls] a self-signed
//!   certificate made by `openssl req -x509` at test time
//! admin POST /api/v1/sip-users dave
//! jssip dave@sip.localhost connects ws://127.0.0.1:W, registers (401 → Digest → 200 with
//!   Require: outbound, Flow-Timer: 120), sends MESSAGE to sip:alice@localhost
//! expect alice gets it from dave@sip.localhost; alice answers dave@sip.localhost
//! expect jssip gets alice's MESSAGE over the same WebSocket (Via SIP/2.0/WS, one
//!   connection in all) although its Contact names an `.invalid` host
//! a second WebSocket: a WS ping gets a pong, a double-CRLF binary frame a CRLF (RFC 5626)
//! the same over wss://127.0.0.1:S, the certificate trusted through NODE_EXTRA_CA_CERTS
//! baresip carol@sip.localhost registers over TLS (outbound proxy ;transport=tls), sends
//!   MESSAGE to alice; alice answers over the same TLS connection
//! openssl s_client: OPTIONS over TLS → 200; a double CRLF → CRLF (RFC 5626 §4.4.1)
//! a plain TCP client on the TLS port gets no SIP answer
//! alice → frank@sip.localhost mapped to sips:frank@127.0.0.1:P (baresip with the test
//!   certificate, [sip.tls] ca = that certificate): MESSAGE over verified TLS; a sips:
//!   mapping to baresip's plain port: error to alice, nothing sent in clear
//! jssip SUBSCRIBEs to alice's presence; alice approves; NOTIFY pending, then active with
//!   her PIDF, over jssip's WebSocket
//! jssip dies without unregistering: its binding goes (RFC 5626 §7); a SIPp MESSAGE gets
//!   480; alice's message is held and reaches dave's next registration
//! check-config: a wss listener without [sip.tls] is refused, naming sip.tls.cert
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use stox_tests::baresip::{Baresip, BaresipOptions};
use stox_tests::jssip_peer::{JsSipOptions, JsSipPeer};
use stox_tests::ports::free_port;
use stox_tests::process::temp_dir;
use stox_tests::{Prosody, ProsodyOptions, Stox, XmppClient, PASSWORD};

const T: Duration = Duration::from_secs(20);

struct World {
    _prosody: Prosody,
    stox: Stox,
    alice: XmppClient,
    udp: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    tls: SocketAddr,
    cert: PathBuf,
    _certs: tempfile::TempDir,
}

fn world() -> World {
    let certs = temp_dir("certs").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed(certs.path());
    let prosody = Prosody::start(ProsodyOptions::without_offline()).expect("prosody");
    let (udp, ws, wss, tls) = (free_port(), free_port(), free_port(), free_port());
    let stox = Stox::start(
        &prosody,
        &format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{udp}\", \"ws:127.0.0.1:{ws}\", \
             \"wss:127.0.0.1:{wss}\", \"tls:127.0.0.1:{tls}\"]\n\
             [sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [registrar]\nmin_expires = 1\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("stox");
    let alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    World {
        _prosody: prosody,
        stox,
        alice,
        udp: addr(udp),
        ws: addr(ws),
        wss: addr(wss),
        tls: addr(tls),
        cert,
        _certs: certs,
    }
}

fn create_user(w: &World, user: &str, password: &str) {
    let r = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(&format!(
                r#"{{"user": "{user}", "password": "{password}"}}"#
            )),
        )
        .expect("admin");
    assert_eq!(r.status, 201, "{}", r.body.as_str());
}

/// The header lines of a SIP message in text, by name (case-insensitive).
fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// JsSIP registers dave over `url`, sends a MESSAGE to alice and gets her answer back.
fn jssip_round_trip(w: &mut World, url: String, ca: Option<PathBuf>, via: &str) {
    let url = url.as_str();
    create_user(w, "dave", "dave-secret");
    let mut dave = JsSipPeer::start(&JsSipOptions {
        url: url.to_string(),
        uri: "sip:dave@sip.localhost".into(),
        password: "dave-secret".into(),
        ca_file: ca,
    })
    .expect("jssip");
    let reg = dave.expect_event("registered", T).expect("registered");
    let response = reg["response"].as_str().unwrap_or_default().to_string();
    // RFC 5626 §6: JsSIP registers with outbound (reg-id, +sip.instance) straight to stox.
    assert_eq!(header(&response, "Require"), vec!["outbound"], "{response}");
    assert_eq!(header(&response, "Flow-Timer"), vec!["120"], "{response}");
    let contact = reg["contact"].as_str().unwrap_or_default().to_string();
    assert!(contact.contains(".invalid"), "JsSIP's contact: {contact}");
    let listed = header(&response, "Contact");
    assert!(
        listed
            .iter()
            .any(|c| c.contains(".invalid") && c.contains("reg-id=1")),
        "the 200 lists the binding with its reg-id: {response}"
    );

    let id = dave
        .send_message("sip:alice@localhost", "hello from the browser")
        .expect("send");
    let sent = dave
        .expect(T, |e| {
            (e["event"] == "sent" || e["event"] == "send_failed") && e["id"] == id
        })
        .expect("MESSAGE answered");
    assert_eq!(sent["event"], "sent", "{sent}");
    assert_eq!(sent["status"], 200, "{sent}");
    let got = w.alice.expect_message(T).expect("alice gets it");
    assert_eq!(got.body().as_deref(), Some("hello from the browser"));
    let from = got.from().unwrap_or_default();
    assert!(from.starts_with("dave@sip.localhost"), "from {from}");

    w.alice
        .send_message("dave@sip.localhost", "hi dave, over your socket")
        .expect("alice answers");
    let back = dave.expect_event("message", T).expect("dave gets it");
    assert_eq!(back["body"], "hi dave, over your socket", "{back}");
    let from = back["from"].as_str().unwrap_or_default();
    assert!(from.starts_with("sip:alice@localhost"), "from {from}");
    assert!(
        back["via"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("SIP/2.0/{via} ")),
        "stox's Via: {back}"
    );
    // One WebSocket in all: the request came back over the connection dave opened.
    assert_eq!(dave.count("connected"), 1, "{:?}", dave.seen());

    // Keepalives on a WebSocket: a ping gets a pong, a double CRLF a CRLF (RFC 5626 §4.4.1).
    let ka = dave.keepalive(url).expect("keepalive");
    assert_eq!(ka["pong"], true, "{ka}");
    assert_eq!(ka["answer"], "0d0a", "{ka}");
    dave.quit();
}

/// jssip over ws:// registers, sends to alice, gets alice's answer over the same socket.
#[test]
fn jssip_over_websocket_registers_sends_and_receives() {
    let mut w = world();
    let url = format!("ws://{}", w.ws);
    jssip_round_trip(&mut w, url, None, "WS");
}

/// jssip registers dave over ws:// with outbound (RFC 5626) and dies without
/// unregistering. stox sees the connection close: the binding was reachable over that flow
/// only, so it is invalid (RFC 5626 §7) and goes. A SIP sender then gets 480 (stox is edge
/// proxy and authoritative proxy: the 430 of the failed flow never leaves it, RFC 5626
/// §11); alice's message waits for dave like any message for an unregistered user, and
/// reaches him when his browser registers again over a new WebSocket. stox never tries
/// the `.invalid` host of the old contact.
#[test]
fn a_closed_websocket_flow_invalidates_its_binding() {
    let mut w = world();
    create_user(&w, "dave", "dave-secret");
    let opts = JsSipOptions {
        url: format!("ws://{}", w.ws),
        uri: "sip:dave@sip.localhost".into(),
        password: "dave-secret".into(),
        ca_file: None,
    };
    let mut dave = JsSipPeer::start(&opts).expect("jssip");
    let reg = dave.expect_event("registered", T).expect("registered");
    let response = reg["response"].as_str().unwrap_or_default().to_string();
    assert_eq!(header(&response, "Require"), vec!["outbound"], "{response}");
    dave.kill();
    // stox hears the connection close and drops the binding (RFC 5626 §7).
    let deadline = Instant::now() + T;
    while !w
        .stox
        .log_tail(400)
        .contains("its flow failed (RFC 5626 §7)")
    {
        assert!(Instant::now() < deadline, "{}", w.stox.log_tail(200));
        std::thread::sleep(Duration::from_millis(100));
    }

    // A SIP sender (SIPp, a foreign user): 480, never a 430 and no wait.
    let started = Instant::now();
    let run = stox_tests::sipp::Sipp::uac_message(w.udp, "dave", "sip.localhost", "ping")
        .run()
        .expect("sipp");
    let finals: Vec<u16> = run
        .messages
        .iter()
        .filter_map(|m| m.status())
        .filter(|s| *s >= 200)
        .collect();
    assert_eq!(finals, vec![480], "{:?}", run.messages);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // alice's message is held (no error), then delivered to dave's new WebSocket.
    w.alice
        .send_message("dave@sip.localhost", "anyone there?")
        .expect("send");
    std::thread::sleep(Duration::from_secs(1));
    let mut dave = JsSipPeer::start(&opts).expect("jssip again");
    dave.expect_event("registered", T)
        .expect("registered again");
    let got = dave.expect_event("message", T).expect("the held message");
    assert_eq!(got["body"], "anyone there?", "{got}");
    assert!(
        got["via"]
            .as_str()
            .unwrap_or_default()
            .starts_with("SIP/2.0/WS "),
        "{got}"
    );
    let errors: Vec<String> = w
        .alice
        .drain(Duration::from_millis(300))
        .iter()
        .filter(|s| s.kind() == Some("error"))
        .map(|s| s.xml().to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let log = w.stox.log_tail(400);
    assert!(
        log.contains("message held until the SIP user registers"),
        "{log}"
    );
    assert!(!log.contains("cannot resolve"), "{log}");
    dave.quit();
}

/// jssip dave (over ws://) SUBSCRIBEs to alice's presence; alice approves dave@sip.localhost
/// expect NOTIFYs over dave's WebSocket: pending, then active with alice's PIDF (open, Via
/// SIP/2.0/WS); dave's Contact is `.invalid`, so nothing else could reach him
#[test]
fn jssip_watches_alice_and_notifies_come_over_its_websocket() {
    let mut w = world();
    create_user(&w, "dave", "dave-secret");
    let mut dave = JsSipPeer::start(&JsSipOptions {
        url: format!("ws://{}", w.ws),
        uri: "sip:dave@sip.localhost".into(),
        password: "dave-secret".into(),
        ca_file: None,
    })
    .expect("jssip");
    dave.expect_event("registered", T).expect("registered");
    dave.subscribe("sip:alice@localhost").expect("subscribe");
    let ask = w
        .alice
        .expect_presence("dave@sip.localhost", Some("subscribe"), T)
        .expect("a subscription request from dave");
    assert_eq!(ask.from(), Some("dave@sip.localhost"));
    // The NOTIFY `pending` (no body: JsSIP reports only the state).
    let pending = dave
        .expect(T, |e| {
            e["event"] == "subscription" && e["state"] == "pending"
        })
        .expect("NOTIFY pending");
    assert!(
        dave.seen().iter().all(|e| e["event"] != "notify"),
        "{pending}"
    );
    w.alice.approve("dave@sip.localhost").expect("approve");
    let active = dave
        .expect(T, |e| {
            e["event"] == "notify"
                && e["state"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("active")
                && e["body"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("<basic>open</basic>")
        })
        .expect("an active NOTIFY with alice's presence");
    assert_eq!(active["content_type"], "application/pidf+xml", "{active}");
    assert!(
        active["body"]
            .as_str()
            .unwrap_or_default()
            .contains("entity=\"sip:alice@localhost\""),
        "{active}"
    );
    assert!(
        active["via"]
            .as_str()
            .unwrap_or_default()
            .starts_with("SIP/2.0/WS "),
        "{active}"
    );
    assert_eq!(dave.count("connected"), 1, "{:?}", dave.seen());
    dave.quit();
}

/// The same over wss:// with the self-signed certificate as the only trust anchor.
#[test]
fn jssip_over_secure_websocket_registers_sends_and_receives() {
    let mut w = world();
    let url = format!("wss://{}", w.wss);
    let ca = Some(w.cert.clone());
    jssip_round_trip(&mut w, url, ca, "WSS");
}

/// baresip carol registers over TLS, sends a MESSAGE to alice and gets her answer over the
/// same TLS connection; a plain TCP client on the TLS port gets no SIP answer.
#[test]
fn baresip_over_tls_sends_and_receives() {
    let mut w = world();
    create_user(&w, "carol", "carol-secret");
    let mut options = BaresipOptions::new("carol", 440.0).domain("sip.localhost");
    options.outbound_proxy = Some(w.tls);
    options.outbound_tls = true;
    options.tls_ca = Some(w.cert.clone());
    options.register_interval = 600;
    options.password = Some("carol-secret".into());
    options.contacts = vec!["sip:alice@localhost".into()];
    options.sip_trace = true;
    let mut carol = Baresip::start(options).expect("baresip");
    let answers = carol
        .expect_final_responses("REGISTER", 2, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", w.stox.log_tail(40)));
    let codes: Vec<u16> = answers.iter().filter_map(|m| m.status()).collect();
    assert_eq!(codes, vec![401, 200], "{}", carol.context());
    let r = carol.message("hello over TLS").expect("message command");
    assert!(r.ok, "{r:?}");
    let got = w.alice.expect_message(T).expect("alice gets it");
    assert_eq!(got.body().as_deref(), Some("hello over TLS"));
    assert!(
        got.from()
            .unwrap_or_default()
            .starts_with("carol@sip.localhost"),
        "{:?}",
        got.from()
    );

    w.alice
        .send_message("carol@sip.localhost", "hi carol, over TLS")
        .expect("alice answers");
    let deadline = std::time::Instant::now() + T;
    let message = loop {
        let got = carol.received_requests("MESSAGE");
        if let Some(m) = got
            .into_iter()
            .find(|m| m.body == "hi carol, over TLS".as_bytes())
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "carol never got alice's MESSAGE\n{}",
            carol.context()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let via = message.header("Via").unwrap_or_default().to_string();
    assert!(via.starts_with("SIP/2.0/TLS "), "Via {via}");
    // Every message baresip saw came over TLS: it never opened another transport.
    let trace = carol.sip_trace();
    assert!(!trace.is_empty());
    assert!(
        trace.iter().all(|t| t.transport == "TLS"),
        "{:?}",
        trace.iter().map(|t| &t.transport).collect::<Vec<_>>()
    );

    // The same OPTIONS over TLS (openssl s_client, trusting the test CA) is answered; in
    // plain TCP to the TLS port the handshake fails and no SIP answer comes.
    let options = "OPTIONS sip:sip.localhost SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKplain;rport\r\n\
         From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:sip.localhost>\r\nCall-ID: plain@x\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let answer = over_tls(w.tls, &w.cert, options, b"\r\n\r\n");
    let answer = String::from_utf8_lossy(&answer).to_string();
    let answer = answer.find("SIP/2.0").map_or("", |i| &answer[i..]);
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "OPTIONS over TLS: {answer:?}"
    );
    // RFC 5626 §4.4.1 / RFC 5923: a double-CRLF ping over TLS gets a CRLF pong.
    assert_eq!(
        over_tls(w.tls, &w.cert, "\r\n\r\n", b"\r\n"),
        b"\r\n".to_vec()
    );
    let mut plain = TcpStream::connect(w.tls).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = plain.write_all(options.replace("/TLS", "/TCP").as_bytes());
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("SIP/2.0"),
        "a SIP answer over plain TCP: {}",
        String::from_utf8_lossy(&buf)
    );
}

/// Sends `request` over TLS to `addr` with `openssl s_client` (verifying the certificate
/// against `ca`) and returns what came back once it holds `until` (or after 5 s).
fn over_tls(addr: SocketAddr, ca: &Path, request: &str, until: &'static [u8]) -> Vec<u8> {
    use std::process::Stdio;
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-ign_eof"])
        .args(["-connect", &addr.to_string(), "-verify_ip", "127.0.0.1"])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(request.as_bytes());
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(until.len()).any(|w| w == until) {
                break;
            }
        }
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    got
}

/// stox check-config: a wss listener without [sip.tls] is refused naming sip.tls.cert; with
/// the generated certificate and key the same file passes.
#[test]
fn check_config_wants_a_certificate_for_tls_listeners() {
    let dir = temp_dir("tlsconfig").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed(dir.path());
    let base = "[xmpp]\ncomponent = \"sip.localhost\"\nserver = \"127.0.0.1:5347\"\n\
                secret = \"s\"\nhome_domain = \"localhost\"\n\
                [sip]\nlisten = [\"udp:127.0.0.1:5060\", \"wss:127.0.0.1:8089\"]\n\
                [admin]\nlisten = \"127.0.0.1:8080\"\ntoken = \"t\"\n\
                [store]\npath = \"./data\"\n";
    let path = dir.path().join("stox.toml");
    std::fs::write(&path, base).expect("write");
    let out = stox_tests::stox::check_config(&path).expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sip.tls.cert") && stderr.contains("sip.listen[1]"),
        "{stderr}"
    );
    std::fs::write(
        &path,
        format!(
            "{base}[sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("write");
    let out = stox_tests::stox::check_config(&path).expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// alice → frank@sip.localhost, mapped to `sips:frank@127.0.0.1:TLSPORT` (baresip with the
/// test certificate): stox opens TLS, verifies baresip's certificate against [sip.tls] ca
/// and delivers the MESSAGE over TLS. A `sips:` mapping to baresip's plain UDP/TCP port is
/// not downgraded: the TLS handshake fails, alice gets an error, nothing arrives in clear.
#[test]
fn xmpp_to_a_sips_target_goes_over_verified_tls() {
    let certs = temp_dir("certs").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed(certs.path());
    let both = certs.path().join("both.pem");
    std::fs::write(
        &both,
        [
            std::fs::read(&cert).expect("cert"),
            std::fs::read(&key).expect("key"),
        ]
        .concat(),
    )
    .expect("write");
    let prosody = Prosody::start(ProsodyOptions::without_offline()).expect("prosody");
    let (udp, tls) = (free_port(), free_port());
    let stox = Stox::start(
        &prosody,
        &format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{udp}\", \"tls:127.0.0.1:{tls}\"]\n\
             [sip.tls]\ncert = \"{c}\"\nkey = \"{k}\"\nca = \"{c}\"\n",
            c = cert.display(),
            k = key.display()
        ),
    )
    .expect("stox");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    let mut options = BaresipOptions::new("frank", 440.0);
    options.tls_certificate = Some(both);
    options.tls_ca = Some(cert.clone());
    options.sip_trace = true;
    let frank = Baresip::start(options).expect("baresip");
    let map = |jid: &str, sip: String| {
        let r = stox
            .admin_request(
                "POST",
                "/api/v1/mappings",
                Some(&serde_json::json!({ "jid": jid, "sip": sip }).to_string()),
            )
            .expect("admin");
        assert_eq!(r.status, 201, "{}", r.body.as_str());
    };
    map(
        "frank@sip.localhost",
        format!("sips:frank@127.0.0.1:{}", frank.tls_port()),
    );
    map(
        "plainfrank@sip.localhost",
        format!("sips:frank@127.0.0.1:{}", frank.sip_port()),
    );

    alice
        .send_message("frank@sip.localhost", "secret over TLS")
        .expect("send");
    // (The trace parser takes baresip's own SIP port for its side: its TLS port is +1.)
    let tls_end = format!(":{}", frank.tls_port());
    let deadline = Instant::now() + T;
    let message =
        loop {
            if let Some(t) = frank.sip_trace().into_iter().find(|t| {
                t.dst.ends_with(&tls_end) && t.message.body == b"secret over TLS".to_vec()
            }) {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "frank never got it\n{}\n{}",
                frank.context(),
                stox.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
    assert_eq!(message.transport, "TLS");
    assert_eq!(message.message.method(), Some("MESSAGE"));
    let via = message
        .message
        .header("Via")
        .unwrap_or_default()
        .to_string();
    assert!(via.starts_with("SIP/2.0/TLS "), "Via {via}");
    // baresip answered 200 over the same connection, so alice hears no error.
    assert!(
        alice
            .drain(Duration::from_millis(500))
            .iter()
            .all(|s| s.kind() != Some("error")),
        "an error for a delivered message"
    );

    alice
        .send_message("plainfrank@sip.localhost", "must not leak")
        .expect("send");
    let err = alice
        .expect(T, |s| {
            s.kind() == Some("error") && s.from() == Some("plainfrank@sip.localhost")
        })
        .expect("an error back");
    assert!(err.error_condition().is_some(), "{}", err.xml());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !frank.log_contains("must not leak"),
        "a sips: target was reached without TLS\n{}",
        frank.context()
    );
}
