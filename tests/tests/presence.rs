//! Presence through stox end to end (issue 4, RFC 8048 with RFC 6665 / RFC 3856 / RFC 3903):
//! real Prosody, slixmpp clients that keep a roster and answer subscription requests
//! themselves, SIPp presence scenarios and baresip's presence module.
//!
//! ```text
//! alice (XMPP) adds carol's phone (SIPp notifier, contact carol\40127.0.0.1\3aN@sip.localhost)
//!   → SUBSCRIBE sip:carol@127.0.0.1:N; NOTIFY pending (nothing for alice); NOTIFY active
//!     (open, "Gone fishing", <rpid:away/>) → alice: subscribed, presence from .../phone
//!     (show away, status, caps); stox refreshes at 90 % of Expires 6 in the dialog → the
//!     phone's state changed (closed "back soon") → alice: unavailable; alice unsubscribes →
//!     SUBSCRIBE Expires 0 → unsubscribed
//! carol's phone (SIPp watcher) SUBSCRIBEs to sip:alice@localhost
//!   → 200, NOTIFY pending; alice gets <presence type='subscribe'> from carol's JID,
//!     approves → NOTIFY active with her PIDF; alice goes dnd → NOTIFY; unsubscribe →
//!     terminated
//! dave's phone (SIPp publisher) PUBLISHes for sip:dave@sip.localhost → alice (watching
//!   dave@sip.localhost) sees it; a SIP watcher of dave gets NOTIFYs
//! baresip carol@sip.localhost watches alice and publishes its own state
//! kill -9 of stox and a restart of Prosody in the middle of subscriptions
//! ```

use std::time::Duration;

use stox_tests::baresip::{Baresip, BaresipOptions, ContactStatus};
use stox_tests::pidf::{Pidf, PresenceState};
use stox_tests::sipp::{NotifierPlan, PublishPlan, SipMessage, Sipp, SippRun, WatcherPlan};
use stox_tests::{
    sip_contact_jid, ClientOptions, Prosody, ProsodyOptions, Stanza, Stox, XmppClient, PASSWORD,
};

const T: Duration = Duration::from_secs(20);
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_CLIENT: &str = "jabber:client";

/// stox grants and accepts short subscriptions here, so refresh and expiry fit in a test.
const STOX_CONFIG: &str = "[presence]\nmin_expires = 1\n";

struct World {
    prosody: Prosody,
    stox: Stox,
    alice: XmppClient,
}

fn manual() -> ClientOptions {
    ClientOptions {
        manual_subscriptions: true,
        ..ClientOptions::default()
    }
}

fn world_with(prosody: ProsodyOptions, alice_options: ClientOptions) -> World {
    let prosody = Prosody::start(prosody).expect("prosody");
    let stox = Stox::start(&prosody, STOX_CONFIG).expect("stox");
    let mut alice = XmppClient::connect_with(&prosody, "alice", PASSWORD, "laptop", alice_options)
        .expect("alice");
    // RFC 6121 §2.2: a client gets its roster first; Prosody delivers subscription
    // approvals only to such "interested" resources.
    alice.roster(T).expect("alice's roster");
    World {
        prosody,
        stox,
        alice,
    }
}

fn world() -> World {
    world_with(ProsodyOptions::default(), manual())
}

fn contact_of(w: &World, sipp: &Sipp) -> String {
    sip_contact_jid("carol", "127.0.0.1", sipp.port(), w.prosody.component())
}

fn states(run: &SippRun, received: bool) -> Vec<String> {
    run.subscription_states(received)
        .into_iter()
        .map(|s| match s.reason {
            Some(reason) => format!("{};reason={reason}", s.state),
            None => s.state,
        })
        .collect()
}

fn statuses(messages: &[&SipMessage]) -> Vec<u16> {
    messages.iter().filter_map(|m| m.status()).collect()
}

fn show(s: &Stanza) -> Option<String> {
    s.child("show").map(|c| c.text())
}

fn status(s: &Stanza) -> Option<String> {
    s.child("status").map(|c| c.text())
}

fn has_call_caps(s: &Stanza) -> bool {
    s.element()
        .and_then(|e| e.get_child("c", NS_CAPS))
        .is_some()
}

/// The PIDF of a NOTIFY (panics with the message when there is none).
fn pidf_of(m: &SipMessage) -> Pidf {
    m.pidf()
        .unwrap_or_else(|| panic!("no PIDF in\n{}", String::from_utf8_lossy(&m.raw)))
}

/// The `<show xmlns='jabber:client'>` RFC 8048 embeds in a tuple's `<status>`.
fn embedded_show(m: &SipMessage) -> Option<String> {
    let body = m.body_text();
    let doc: minidom::Element = body.parse().ok()?;
    for tuple in doc.children().filter(|c| c.name() == "tuple") {
        for st in tuple.children().filter(|c| c.name() == "status") {
            if let Some(s) = st.get_child("show", NS_CLIENT) {
                return Some(s.text());
            }
        }
    }
    None
}

fn gone_fishing() -> PresenceState {
    PresenceState::new("open", "Gone fishing", "away")
}

fn back_soon() -> PresenceState {
    PresenceState::new("closed", "back soon", "busy")
}

/// alice adds carol's phone to her roster
/// expect (pending) nothing for alice; then subscribed, presence from <contact>/phone with
///        show away (RPID away), status "Gone fishing" and call caps; stox's refresh at
///        90 % of Expires 6 brings the phone's new state: unavailable "back soon"
/// alice unsubscribes
/// expect SUBSCRIBE Expires 0 in the same dialog; the phone saw Expires
///        3600, 3600, 0, every NOTIFY answered 200; alice's roster says none
#[test]
fn xmpp_user_watches_a_sip_phone_through_pending_active_refresh_and_unsubscribe() {
    let mut w = world();
    let plan = NotifierPlan::new(6)
        .states(gone_fishing(), back_soon())
        .pending_for(Duration::from_millis(800));
    let phone = Sipp::uas_presence_notifier(&plan)
        .timeout(Duration::from_secs(40))
        .spawn()
        .expect("sipp notifier");
    let contact = contact_of(&w, &phone);
    w.alice.subscribe(&contact).expect("subscribe");

    // RFC 8048 §5: NOTIFY pending is not translated.
    let early = w.alice.drain(Duration::from_millis(500));
    assert!(
        !early
            .iter()
            .any(|s| s.is_presence() && s.from().is_some_and(|f| f.starts_with(&contact))),
        "presence during pending: {:?}",
        early.iter().map(Stanza::xml).collect::<Vec<_>>()
    );
    let subscribed = w
        .alice
        .expect_presence(&contact, Some("subscribed"), T)
        .expect("subscribed after the first active NOTIFY");
    assert_eq!(subscribed.from(), Some(contact.as_str()));
    let resource = format!("{contact}/phone");
    let available = w
        .alice
        .expect_presence(&resource, None, T)
        .expect("the phone's presence");
    assert_eq!(available.from(), Some(resource.as_str()));
    assert_eq!(
        show(&available).as_deref(),
        Some("away"),
        "{}",
        available.xml()
    );
    assert_eq!(status(&available).as_deref(), Some("Gone fishing"));
    assert!(has_call_caps(&available), "{}", available.xml());

    // The refresh (90 % of 6 s) inside the dialog brings the second state.
    let gone = w
        .alice
        .expect_presence(&resource, Some("unavailable"), Duration::from_secs(15))
        .expect("unavailable after the refresh");
    assert_eq!(
        status(&gone).as_deref(),
        Some("back soon"),
        "{}",
        gone.xml()
    );

    // (stox answers `unsubscribed`; Prosody has already dropped alice's subscription and
    // does not pass it on, RFC 6121 §3.3.3.)
    w.alice.unsubscribe(&contact).expect("unsubscribe");
    let run = phone.wait(T).expect("notifier ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let subscribes = run.requests("SUBSCRIBE", true);
    let expires: Vec<_> = subscribes.iter().map(|m| m.expires()).collect();
    assert_eq!(
        expires,
        vec![Some(3600), Some(3600), Some(0)],
        "{}",
        run.summary()
    );
    let first = subscribes[0];
    assert_eq!(first.header("Event"), Some("presence"));
    assert_eq!(first.header("Accept"), Some("application/pidf+xml"));
    assert_eq!(first.header_uri("From"), Some("sip:alice@localhost"));
    assert_eq!(
        first.request_uri(),
        Some(format!("sip:carol@127.0.0.1:{}", phone_port(&run, first)).as_str())
    );
    for s in &subscribes[1..] {
        assert_eq!(s.header("Call-ID"), first.header("Call-ID"));
        assert_eq!(s.tag("From"), first.tag("From"));
        assert!(
            s.tag("To").is_some(),
            "in-dialog: {}",
            String::from_utf8_lossy(&s.raw)
        );
    }
    let cseqs: Vec<_> = subscribes.iter().filter_map(|m| m.cseq_number()).collect();
    assert!(cseqs.windows(2).all(|p| p[0] < p[1]), "{cseqs:?}");
    assert_eq!(
        states(&run, false),
        ["pending", "active", "active", "terminated;reason=timeout"]
    );
    assert!(statuses(&run.final_responses("NOTIFY", true))
        .iter()
        .all(|c| *c == 200));
    let roster = w.alice.roster(T).expect("roster");
    let item = roster.iter().find(|i| i.jid == contact);
    assert!(item.is_none_or(|i| i.subscription == "none"), "{roster:?}");
    assert!(
        !w.stox.log_tail(400).contains("ERROR"),
        "{}",
        w.stox.log_tail(80)
    );
}

/// The port a SIPp UAS listened on, read back from the request it got (its Request-URI).
fn phone_port(_run: &SippRun, request: &SipMessage) -> u16 {
    request
        .request_uri()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// a SIP contact answers the SUBSCRIBE 403, 489 (no presence there) and 603 in turn
/// expect each time alice gets unsubscribed from the contact (RFC 8048 §5: the
///        authorization is cancelled), and nothing is retried
/// a contact answers 423 with Min-Expires 7200
/// expect the retry asks Expires 7200 in the same Call-ID, then alice gets subscribed and
///        the contact's presence
#[test]
fn refusals_end_the_authorization_and_423_is_retried_longer() {
    let mut w = world();
    for (code, reason) in [(403, "Forbidden"), (489, "Bad Event"), (603, "Decline")] {
        let phone = Sipp::uas_presence_status(code, reason, None)
            .spawn()
            .expect("sipp");
        let contact = contact_of(&w, &phone);
        w.alice.subscribe(&contact).expect("subscribe");
        let u = w
            .alice
            .expect_presence(&contact, Some("unsubscribed"), T)
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(u.from(), Some(contact.as_str()));
        let run = phone.wait(T).expect("sipp ends");
        assert_eq!(run.exit_code, Some(0), "{code}: {}", run.summary());
        assert_eq!(
            run.requests("SUBSCRIBE", true).len(),
            1,
            "{code}: not retried"
        );
    }

    let state = PresenceState::open("long subscriptions only");
    let phone = Sipp::uas_presence_min_expires(7200, &state)
        .timeout(Duration::from_secs(30))
        .spawn()
        .expect("sipp");
    let contact = contact_of(&w, &phone);
    w.alice.subscribe(&contact).expect("subscribe");
    w.alice
        .expect_presence(&contact, Some("subscribed"), T)
        .expect("subscribed after the retry");
    let p = w
        .alice
        .expect_presence(&format!("{contact}/phone"), None, T)
        .expect("presence");
    assert_eq!(status(&p).as_deref(), Some("long subscriptions only"));
    w.alice.unsubscribe(&contact).expect("unsubscribe");
    let run = phone.wait(T).expect("sipp ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let subscribes = run.requests("SUBSCRIBE", true);
    let expires: Vec<_> = subscribes.iter().map(|m| m.expires()).collect();
    assert_eq!(
        &expires[..2],
        &[Some(3600), Some(7200)],
        "{}",
        run.summary()
    );
    assert_eq!(
        subscribes[0].header("Call-ID"),
        subscribes[1].header("Call-ID")
    );
}

/// carol's phone (SIPp) SUBSCRIBEs to sip:alice@localhost (Expires 60)
/// expect 200; NOTIFY pending; alice gets <presence type='subscribe'> from carol's JID
/// alice approves
/// expect NOTIFY active with her PIDF: tuple ID-laptop open
/// alice goes dnd "in a meeting"
/// expect NOTIFY active: show dnd embedded (RFC 8048), <rpid:busy/>, note "in a meeting"
/// carol's phone unsubscribes
/// expect 200 and NOTIFY terminated;reason=timeout
#[test]
fn sip_phone_watches_an_xmpp_user_pending_approved_changes_unsubscribed() {
    let mut w = world();
    let plan = WatcherPlan::new(60)
        .then_notifies(1)
        .quiet(Duration::from_millis(500));
    let watcher = Sipp::uac_presence_watcher(w.stox.sip_addr(), "alice", "localhost", &plan)
        .timeout(Duration::from_secs(30));
    let carol = sip_contact_jid(
        "carol",
        "127.0.0.1",
        watcher.local_port(),
        w.prosody.component(),
    );
    let watcher = watcher.spawn().expect("sipp watcher");
    let ask = w
        .alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("a subscription request from carol's JID");
    assert_eq!(ask.from(), Some(carol.as_str()));
    std::thread::sleep(Duration::from_millis(300));
    w.alice.approve(&carol).expect("approve");
    std::thread::sleep(Duration::from_secs(1));
    w.alice
        .set_presence(Some("dnd"), Some("in a meeting"), 5)
        .expect("presence");
    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(
        states(&run, true),
        ["pending", "active", "active", "terminated;reason=timeout"],
        "{}",
        run.summary()
    );
    let notifies = run.requests("NOTIFY", true);
    assert!(notifies[0].body.is_empty(), "pending carries no state");
    let first = pidf_of(notifies[1]);
    assert_eq!(first.entity, "sip:alice@localhost");
    let t = first.tuple().expect("a tuple");
    assert_eq!(t.id, "ID-laptop");
    assert_eq!(first.basic(), Some("open"));
    let second = pidf_of(notifies[2]);
    assert_eq!(second.note(), Some("in a meeting"));
    assert_eq!(embedded_show(notifies[2]).as_deref(), Some("dnd"));
    assert!(
        notifies[2].body_text().contains("<rpid:busy/>"),
        "dnd as RPID busy for SIP phones: {}",
        notifies[2].body_text()
    );
    assert_eq!(
        second.tuple().and_then(|t| t.contact.clone()).as_deref(),
        Some("sip:alice@localhost;gr=laptop")
    );
    assert_eq!(
        second.tuple().and_then(|t| t.priority.clone()).as_deref(),
        Some("0.039")
    );
    // Every NOTIFY is in the dialog the 200 made.
    let ok = run.final_responses("SUBSCRIBE", true);
    let tag = ok[0].tag("To").expect("200 with a To tag").to_string();
    for n in &notifies {
        assert_eq!(n.tag("From"), Some(tag.as_str()));
        assert_eq!(n.header("Event"), Some("presence"));
    }
}

/// carol's phone (SIPp) SUBSCRIBEs to alice, alice refuses (unsubscribed)
/// expect NOTIFY pending, then terminated;reason=rejected
/// a second phone subscribes with Expires 2 and alice approves; nobody refreshes
/// expect NOTIFY pending, active, then terminated;reason=timeout when it expires
#[test]
fn sip_watchers_rejected_and_expired() {
    let mut w = world();
    let watcher = Sipp::uac_presence_watcher(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        &WatcherPlan::until_terminated(60),
    );
    let carol = sip_contact_jid(
        "carol",
        "127.0.0.1",
        watcher.local_port(),
        w.prosody.component(),
    );
    let watcher = watcher.spawn().expect("sipp watcher");
    w.alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("request");
    w.alice.deny(&carol).expect("deny");
    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(
        states(&run, true),
        ["pending", "terminated;reason=rejected"]
    );

    let watcher = Sipp::uac_presence_watcher(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        &WatcherPlan::until_terminated(2),
    );
    let carol = sip_contact_jid(
        "carol",
        "127.0.0.1",
        watcher.local_port(),
        w.prosody.component(),
    );
    let watcher = watcher.spawn().expect("sipp watcher");
    w.alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("request");
    w.alice.approve(&carol).expect("approve");
    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(
        states(&run, true),
        ["pending", "active", "terminated;reason=timeout"]
    );
}

/// alice adds dave@sip.localhost (a SIP user of stox's own domain: stox is his presence
///   agent); a SIP watcher (SIPp) subscribes to sip:dave@sip.localhost
/// expect alice: subscribed and unavailable at once; the watcher: NOTIFY active, closed
/// dave's phone (SIPp) PUBLISHes open "available", refreshes, modifies to closed
///   "offline", removes
/// expect alice sees dave/phone available "available", then unavailable "offline"; the
///        watcher gets NOTIFYs with those states; each PUBLISH got 200 with a new SIP-ETag
#[test]
fn published_state_reaches_xmpp_and_sip_watchers() {
    let mut w = world();
    // dave is a SIP user of stox's domain (issue 5): only he publishes his presence.
    let created = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave's phone"}"#),
        )
        .expect("admin");
    assert_eq!(created.status, 201);
    let dave = format!("dave@{}", w.prosody.component());
    w.alice.subscribe(&dave).expect("subscribe");
    w.alice
        .expect_presence(&dave, Some("subscribed"), T)
        .expect("subscribed at once");
    w.alice
        .expect_presence(&dave, Some("unavailable"), T)
        .expect("nothing published yet");

    let watcher = Sipp::uac_presence_watcher(
        w.stox.sip_addr(),
        "dave",
        w.prosody.component(),
        &WatcherPlan::new(60)
            .then_notifies(2)
            .quiet(Duration::from_millis(1500)),
    )
    .timeout(Duration::from_secs(40))
    .spawn()
    .expect("watcher");
    std::thread::sleep(Duration::from_millis(500));
    let publisher = Sipp::uac_publish(
        w.stox.sip_addr(),
        "dave",
        w.prosody.component(),
        &PublishPlan::new(60)
            .pause(Duration::from_millis(5500))
            .auth("dave", "dave's phone"),
    )
    .timeout(Duration::from_secs(40))
    .run()
    .expect("publisher");
    assert_eq!(publisher.exit_code, Some(0), "{}", publisher.summary());
    let answers = publisher.final_responses("PUBLISH", true);
    // The first PUBLISH is challenged (RFC 3261 §22), then every one is accepted.
    assert_eq!(
        statuses(&answers),
        [407, 200, 200, 200, 200],
        "{}",
        publisher.summary()
    );
    let answers = &answers[1..];
    let etags: Vec<_> = answers
        .iter()
        .take(3)
        .filter_map(|a| a.header("SIP-ETag"))
        .collect();
    assert_eq!(etags.len(), 3);
    assert!(etags[0] != etags[1] && etags[1] != etags[2], "{etags:?}");

    let resource = format!("{dave}/phone");
    let on = w
        .alice
        .expect_presence(&resource, None, T)
        .expect("dave available");
    assert_eq!(status(&on).as_deref(), Some("available"));
    assert!(has_call_caps(&on));
    let off = w
        .alice
        .expect_presence(&resource, Some("unavailable"), T)
        .expect("dave offline");
    assert_eq!(status(&off).as_deref(), Some("offline"));

    let run = watcher.wait(T).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let notifies = run.requests("NOTIFY", true);
    let basics: Vec<_> = notifies
        .iter()
        .filter_map(|n| n.pidf().and_then(|p| p.basic().map(str::to_string)))
        .collect();
    assert_eq!(
        &basics[..3],
        &["closed", "open", "closed"],
        "{}",
        run.summary()
    );
    assert!(notifies[1].body_text().contains("available"));
}

/// baresip carol@sip.localhost (outbound proxy stox) watches sip:alice@localhost and
///   publishes its own state; alice watches carol@sip.localhost
/// expect alice gets baresip's subscription request and approves: baresip shows alice
///        Online; alice goes dnd: Busy (RPID busy, read by baresip); alice sees
///        carol@sip.localhost from baresip's PUBLISH; baresip presence_offline: alice sees
///        carol unavailable
#[test]
fn baresip_watches_an_xmpp_user_and_publishes_to_stox() {
    let mut w = world();
    let created = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "carol", "password": "carolphone1"}"#),
        )
        .expect("admin");
    assert_eq!(created.status, 201);
    let carol = format!("carol@{}", w.prosody.component());
    w.alice.subscribe(&carol).expect("subscribe");
    w.alice
        .expect_presence(&carol, Some("subscribed"), T)
        .expect("subscribed");
    let mut options = BaresipOptions::new("carol", 440.0)
        .domain(w.prosody.component())
        .outbound(w.stox.sip_addr())
        .watch("sip:alice@localhost")
        .publish_every(60);
    // carol@sip.localhost must authenticate her SUBSCRIBE and PUBLISH (407, issue 5).
    options.password = Some("carolphone1".into());
    let mut b = Baresip::start(options).expect("baresip");
    w.alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("baresip's subscription request");
    w.alice.approve(&carol).expect("approve");
    b.expect_contact_status("sip:alice@localhost", ContactStatus::Online, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", b.context()));
    w.alice
        .set_presence(Some("dnd"), Some("busy busy"), 0)
        .expect("presence");
    b.expect_contact_status("sip:alice@localhost", ContactStatus::Busy, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", b.context()));

    b.set_presence(true).expect("presence_online");
    let on = w
        .alice
        .expect(T, |s| {
            s.is_presence()
                && s.kind().is_none()
                && s.from()
                    .is_some_and(|f| f.starts_with(&format!("{carol}/")))
        })
        .expect("carol's published presence");
    assert!(has_call_caps(&on));
    b.set_presence(false).expect("presence_offline");
    w.alice
        .expect(T, |s| {
            s.is_presence()
                && s.kind() == Some("unavailable")
                && s.from().is_some_and(|f| f.starts_with(&carol))
        })
        .expect("carol offline");
    let subs = w
        .stox
        .admin_get("/api/v1/subscriptions")
        .expect("admin")
        .json()
        .expect("json");
    let list = subs.as_array().expect("a list");
    assert!(
        list.iter().any(|s| s["direction"] == "sip_to_xmpp"
            && s["presentity"] == "alice@localhost"
            && s["state"] == "active"),
        "{subs}"
    );
    assert!(
        list.iter().any(|s| s["direction"] == "xmpp_to_sip"
            && s["watcher"] == "alice@localhost"
            && s["state"] == "local"),
        "{subs}"
    );
    b.quit().expect("quit");
}

/// alice watches carol's phone (SIPp notifier, Expires 3600) and a second phone (SIPp
///   watcher) watches alice; stox is killed with SIGKILL and started again
/// expect the notifier gets a refresh SUBSCRIBE in the same dialog (same Call-ID, To tag)
///        from the new stox; alice goes away: the watcher gets the NOTIFY in its old dialog;
///        nobody subscribed again
#[test]
fn subscriptions_survive_kill_9() {
    let mut w = world();
    let plan = NotifierPlan::new(3600).states(gone_fishing(), back_soon());
    let phone = Sipp::uas_presence_notifier(&plan)
        .timeout(Duration::from_secs(60))
        .spawn()
        .expect("notifier");
    let contact = contact_of(&w, &phone);
    w.alice.subscribe(&contact).expect("subscribe");
    w.alice
        .expect_presence(&format!("{contact}/phone"), None, T)
        .expect("presence");

    let watcher = Sipp::uac_presence_watcher(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        &WatcherPlan::new(600)
            .until("after the restart")
            .quiet(Duration::from_millis(500)),
    )
    .timeout(Duration::from_secs(60));
    let carol = sip_contact_jid(
        "carol",
        "127.0.0.1",
        watcher.local_port(),
        w.prosody.component(),
    );
    let watcher = watcher.spawn().expect("watcher");
    w.alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("request");
    w.alice.approve(&carol).expect("approve");
    std::thread::sleep(Duration::from_secs(1));

    w.stox.kill();
    w.stox.restart().expect("stox again");
    w.stox.wait_healthy(T).expect("link up");
    // The refresh of the old dialog brings the phone's second state.
    let gone = w
        .alice
        .expect_presence(&format!("{contact}/phone"), Some("unavailable"), T)
        .expect("the refresh after the restart");
    assert_eq!(status(&gone).as_deref(), Some("back soon"));
    std::thread::sleep(Duration::from_secs(1));
    w.alice
        .set_presence(Some("away"), Some("after the restart"), 0)
        .expect("presence");
    let run = watcher.wait(Duration::from_secs(40)).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let notifies = run.requests("NOTIFY", true);
    let last_active = notifies
        .iter()
        .rev()
        .find(|n| n.subscription_state().is_some_and(|s| s.is("active")))
        .expect("an active NOTIFY");
    assert_eq!(pidf_of(last_active).note(), Some("after the restart"));
    let tags: std::collections::BTreeSet<_> =
        notifies.iter().filter_map(|n| n.tag("From")).collect();
    assert_eq!(tags.len(), 1, "one dialog across the restart: {tags:?}");
    assert_eq!(
        run.requests("SUBSCRIBE", false).len(),
        2,
        "subscribe + unsubscribe only"
    );

    w.alice.unsubscribe(&contact).expect("unsubscribe");
    let run = phone.wait(T).expect("notifier ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let subscribes = run.requests("SUBSCRIBE", true);
    assert!(subscribes.len() >= 3, "{}", run.summary());
    for s in &subscribes[1..] {
        assert_eq!(s.header("Call-ID"), subscribes[0].header("Call-ID"));
    }
}

/// alice (reconnecting client) watches carol's phone and a SIP watcher watches alice;
///   Prosody restarts
/// expect alice, once back, gets carol's presence again without subscribing again (stox
///        resends what it knows when its link is back: the probes Prosody sent while the
///        component was away bounced); alice's new status reaches the SIP watcher in its
///        old dialog
#[test]
fn prosody_restart_in_the_middle_of_subscriptions() {
    let mut w = world_with(
        ProsodyOptions::default(),
        ClientOptions {
            manual_subscriptions: true,
            reconnect: true,
            ..ClientOptions::default()
        },
    );
    let plan = NotifierPlan::new(3600).states(gone_fishing(), back_soon());
    let phone = Sipp::uas_presence_notifier(&plan)
        .timeout(Duration::from_secs(60))
        .spawn()
        .expect("notifier");
    let contact = contact_of(&w, &phone);
    w.alice.subscribe(&contact).expect("subscribe");
    w.alice
        .expect_presence(&format!("{contact}/phone"), None, T)
        .expect("presence");
    let watcher = Sipp::uac_presence_watcher(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        &WatcherPlan::new(600)
            .until("after the restart")
            .quiet(Duration::from_millis(500)),
    )
    .timeout(Duration::from_secs(60));
    let carol = sip_contact_jid(
        "carol",
        "127.0.0.1",
        watcher.local_port(),
        w.prosody.component(),
    );
    let watcher = watcher.spawn().expect("watcher");
    w.alice
        .expect_presence(&carol, Some("subscribe"), T)
        .expect("request");
    w.alice.approve(&carol).expect("approve");
    std::thread::sleep(Duration::from_secs(2));

    w.prosody.restart().expect("prosody restarts");
    w.alice.wait_sessions(2, T).expect("alice back");
    w.alice.roster(T).expect("roster");
    let again = w
        .alice
        .expect_presence(&format!("{contact}/phone"), None, T)
        .expect("carol's presence after the restart");
    assert!(has_call_caps(&again));
    w.alice
        .set_presence(Some("chat"), Some("after the restart"), 0)
        .expect("presence");
    let run = watcher.wait(Duration::from_secs(40)).expect("watcher ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let notifies = run.requests("NOTIFY", true);
    let last = notifies
        .iter()
        .rev()
        .find(|n| n.subscription_state().is_some_and(|s| s.is("active")))
        .expect("an active NOTIFY");
    assert_eq!(pidf_of(last).note(), Some("after the restart"));
    let tags: std::collections::BTreeSet<_> =
        notifies.iter().filter_map(|n| n.tag("From")).collect();
    assert_eq!(tags.len(), 1, "one dialog across the restart: {tags:?}");
    assert!(statuses(&run.final_responses("NOTIFY", false))
        .iter()
        .all(|c| *c == 200));
}

/// alice watches carol's phone (SIPp notifier, Expires 3600); alice logs in a second
///   resource (its server probes carol's JID: RFC 8048 §5 "initial presence")
/// expect the new resource gets carol's presence at once, from stox's cache, and stox
///        refreshes the subscription in the dialog (which brings the phone's new state)
#[test]
fn a_login_is_answered_from_the_cache_and_refreshes() {
    let mut w = world();
    let plan = NotifierPlan::new(3600).states(gone_fishing(), back_soon());
    let phone = Sipp::uas_presence_notifier(&plan)
        .timeout(Duration::from_secs(40))
        .spawn()
        .expect("notifier");
    let contact = contact_of(&w, &phone);
    let resource = format!("{contact}/phone");
    w.alice.subscribe(&contact).expect("subscribe");
    w.alice
        .expect_presence(&resource, None, T)
        .expect("presence");

    let mut second = XmppClient::connect_with(&w.prosody, "alice", PASSWORD, "desk", manual())
        .expect("alice's second resource");
    let cached = second
        .expect_presence(&resource, None, T)
        .expect("carol's presence on login");
    assert_eq!(status(&cached).as_deref(), Some("Gone fishing"));
    let refreshed = second
        .expect_presence(&resource, Some("unavailable"), T)
        .expect("the state the refresh brought");
    assert_eq!(status(&refreshed).as_deref(), Some("back soon"));

    w.alice.unsubscribe(&contact).expect("unsubscribe");
    let run = phone.wait(T).expect("notifier ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let subscribes = run.requests("SUBSCRIBE", true);
    assert_eq!(
        subscribes.len(),
        3,
        "subscribe, refresh at login, unsubscribe"
    );
    assert_eq!(
        subscribes[1].header("Call-ID"),
        subscribes[0].header("Call-ID")
    );
    second.disconnect();
}

/// alice watches carol's phone; the phone ends the subscription with
///   NOTIFY terminated;reason=rejected
/// expect alice gets the phone's presence, then unavailable and unsubscribed (RFC 8048 §5,
///        RFC 6665 §4.2.2: rejected is not retried); her roster says none
#[test]
fn a_sip_contact_that_rejects_later_unsubscribes_the_watcher() {
    let mut w = world();
    let state = PresenceState::open("for a moment");
    let phone =
        Sipp::uas_presence_terminate(600, Some(&state), Duration::from_millis(1500), "rejected")
            .spawn()
            .expect("notifier");
    let contact = contact_of(&w, &phone);
    let resource = format!("{contact}/phone");
    w.alice.subscribe(&contact).expect("subscribe");
    let p = w
        .alice
        .expect_presence(&resource, None, T)
        .expect("presence");
    assert_eq!(status(&p).as_deref(), Some("for a moment"));
    w.alice
        .expect_presence(&resource, Some("unavailable"), T)
        .expect("unavailable");
    w.alice
        .expect_presence(&contact, Some("unsubscribed"), T)
        .expect("unsubscribed");
    let run = phone.wait(T).expect("notifier ends");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(run.requests("SUBSCRIBE", true).len(), 1, "not retried");
    std::thread::sleep(Duration::from_millis(300));
    let roster = w.alice.roster(T).expect("roster");
    let item = roster.iter().find(|i| i.jid == contact).expect("in roster");
    assert_eq!(item.subscription, "none", "{roster:?}");
}
