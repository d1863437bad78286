//! Self-tests of the presence peers alone (no stox): the SIPp presence scenarios against
//! each other (RFC 6665 SUBSCRIBE/NOTIFY, RFC 3856 presence, RFC 3903 PUBLISH), two slixmpp
//! clients subscribing through Prosody with manual approval (RFC 6121 §3), and baresip's
//! presence module against SIPp. If these fail, a peer or the harness is broken, not the
//! gateway. Each test asserts what went over the wire.
//!
//! ```text
//! baresip b (AOR sip:b@127.0.0.1:E, pubint 60, watching sip:carol@127.0.0.1:N)
//!   → sipp compositor E: PUBLISH basic "unknown" (no REGISTER, so no status yet)
//!   → sipp notifier N: SUBSCRIBE Expires 600 (no Accept) ← NOTIFY open: contacts "Online",
//!     then NOTIFY <rpid:busy/>: "Busy"
//!   presence_offline → PUBLISH closed, SIP-If-Match; presence_online → PUBLISH open
//!   quit → PUBLISH Expires 0, SUBSCRIBE Expires 0
//!
//! sipp watcher SUBSCRIBE sip:carol@127.0.0.1:P (Expires 60) → sipp notifier 200 (Expires 60)
//! notifier NOTIFY pending, NOTIFY active + PIDF open "Gone fishing" <rpid:away/>
//! watcher refresh (in dialog) → 200, NOTIFY active + PIDF closed "back soon" <rpid:busy/>
//! watcher SUBSCRIBE Expires 0 → 200, NOTIFY terminated;reason=timeout
//!
//! alice (manual approval) subscribes to bob → bob gets <presence type='subscribe'>,
//! approves → alice gets subscribed and bob's presence (show dnd, "in a meeting");
//! alice's roster: bob subscription='to'
//! ```

use std::time::Duration;

use stox_tests::baresip::{Baresip, BaresipOptions, ContactStatus};
use stox_tests::pidf::{Pidf, PresenceState};
use stox_tests::sipp::{NotifierPlan, PublishPlan, SipMessage, Sipp, SippRun, WatcherPlan};
use stox_tests::{ClientOptions, Prosody, ProsodyOptions, RosterItem, XmppClient, PASSWORD};

const T: Duration = Duration::from_secs(20);

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

fn assert_pidf(notify: &SipMessage, entity: &str, state: &PresenceState) {
    let pidf = notify
        .pidf()
        .unwrap_or_else(|| panic!("no PIDF body in\n{}", String::from_utf8_lossy(&notify.raw)));
    assert_eq!(notify.header("Content-Type"), Some("application/pidf+xml"));
    assert_eq!(pidf.entity, entity);
    assert_eq!(pidf.tuple().map(|t| t.id.as_str()), Some("phone"));
    assert_eq!(pidf.basic(), Some(state.basic.as_str()));
    assert_eq!(pidf.note(), Some(state.note.as_str()));
    assert_eq!(pidf.activities, vec![state.activity.clone()]);
}

fn gone_fishing() -> PresenceState {
    PresenceState::new("open", "Gone fishing", "away")
}

fn back_soon() -> PresenceState {
    PresenceState::new("closed", "back soon", "busy")
}

#[test]
fn sipp_watcher_and_notifier_go_pending_active_refreshed_and_unsubscribed() {
    let plan = NotifierPlan::new(60)
        .states(gone_fishing(), back_soon())
        .pending_for(Duration::from_millis(300));
    let notifier = Sipp::uas_presence_notifier(&plan).spawn().unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::new(60).refreshes(1),
    );
    let watcher_contact = format!("sip:carol@127.0.0.1:{};transport=UDP", watcher.local_port());
    let watcher = watcher.run().unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(watcher.exit_code, Some(0), "{}", watcher.summary());
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());

    // The notifier saw the subscription, its refresh and its end, all in one dialog.
    let subscribes = notifier.requests("SUBSCRIBE", true);
    let expires: Vec<_> = subscribes.iter().map(|m| m.expires()).collect();
    assert_eq!(expires, vec![Some(60), Some(60), Some(0)]);
    let first = subscribes[0];
    assert_eq!(
        first.request_uri(),
        Some(format!("sip:carol@{aor}").as_str())
    );
    assert_eq!(first.header("Event"), Some("presence"));
    assert_eq!(first.header("Accept"), Some("application/pidf+xml"));
    assert_eq!(first.tag("To"), None);
    let ok = notifier.final_responses("SUBSCRIBE", false);
    assert_eq!(statuses(&ok), vec![200, 200, 200]);
    let notifier_tag = ok[0].tag("To").unwrap();
    let notifier_contact = ok[0].header_uri("Contact").unwrap();
    for refresh in &subscribes[1..] {
        assert_eq!(refresh.request_uri(), Some(notifier_contact));
        assert_eq!(refresh.tag("To"), Some(notifier_tag));
        assert_eq!(refresh.tag("From"), first.tag("From"));
        assert_eq!(refresh.header("Call-ID"), first.header("Call-ID"));
    }
    let cseqs: Vec<_> = subscribes
        .iter()
        .map(|m| m.cseq_number().unwrap())
        .collect();
    assert!(cseqs.windows(2).all(|w| w[0] < w[1]), "{cseqs:?}");

    // The watcher got pending, the first state, the second after the refresh, the end.
    assert_eq!(
        states(&watcher, true),
        ["pending", "active", "active", "terminated;reason=timeout"]
    );
    assert_eq!(states(&notifier, false), states(&watcher, true));
    let notifies = watcher.requests("NOTIFY", true);
    let entity = format!("sip:carol@{aor}");
    assert!(notifies[0].body.is_empty());
    assert_pidf(notifies[1], &entity, &gone_fishing());
    assert_pidf(notifies[2], &entity, &back_soon());
    assert_eq!(notifies[1].subscription_state().unwrap().expires, Some(60));
    for notify in &notifies {
        assert_eq!(notify.request_uri(), Some(watcher_contact.as_str()));
        assert_eq!(notify.header("Event"), Some("presence"));
        assert_eq!(notify.tag("From"), Some(notifier_tag));
        assert_eq!(notify.tag("To"), first.tag("From"));
    }
    assert_eq!(
        statuses(&watcher.final_responses("NOTIFY", false)),
        [200; 4]
    );
}

#[test]
fn sipp_notifier_changes_state_by_itself_without_a_refresh() {
    let plan = NotifierPlan::new(60)
        .states(gone_fishing(), back_soon())
        .change_after(Duration::from_millis(300));
    let notifier = Sipp::uas_presence_notifier(&plan).spawn().unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::new(60).then_notifies(1),
    )
    .run()
    .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(watcher.exit_code, Some(0), "{}", watcher.summary());
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
    assert_eq!(
        states(&watcher, true),
        ["active", "active", "terminated;reason=timeout"]
    );
    let notifies = watcher.requests("NOTIFY", true);
    let entity = format!("sip:carol@{aor}");
    assert_pidf(notifies[0], &entity, &gone_fishing());
    assert_pidf(notifies[1], &entity, &back_soon());
    // No refresh: the subscription and its end only.
    let expires: Vec<_> = notifier
        .requests("SUBSCRIBE", true)
        .iter()
        .map(|m| m.expires())
        .collect();
    assert_eq!(expires, vec![Some(60), Some(0)]);
}

#[test]
fn sipp_notifier_refusing_a_refresh_ends_the_watchers_call() {
    let plan = NotifierPlan::new(60).refresh_status(481, "Subscription Does Not Exist");
    let notifier = Sipp::uas_presence_notifier(&plan).spawn().unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::new(60).refreshes(1),
    )
    .run()
    .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
    // The watcher expected 200 to its refresh: a failed call, and the 481 is readable.
    assert_eq!(watcher.failed, 1, "{}", watcher.summary());
    assert_eq!(
        statuses(&watcher.final_responses("SUBSCRIBE", true)),
        [200, 481]
    );
    assert_eq!(states(&watcher, true), ["active"]);
}

#[test]
fn sipp_watcher_sees_a_pending_subscription_rejected() {
    let notifier = Sipp::uas_presence_terminate(60, None, Duration::from_millis(300), "rejected")
        .spawn()
        .unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::until_terminated(60),
    )
    .run()
    .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(watcher.exit_code, Some(0), "{}", watcher.summary());
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
    assert_eq!(
        states(&watcher, true),
        ["pending", "terminated;reason=rejected"]
    );
    // The watcher neither refreshed nor unsubscribed.
    assert_eq!(notifier.requests("SUBSCRIBE", true).len(), 1);
}

#[test]
fn sipp_watcher_sees_an_active_subscription_time_out() {
    let state = gone_fishing();
    let notifier = Sipp::uas_presence_terminate(1, Some(&state), Duration::from_secs(1), "timeout")
        .spawn()
        .unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::until_terminated(60).quiet(Duration::from_millis(200)),
    )
    .run()
    .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(watcher.exit_code, Some(0), "{}", watcher.summary());
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
    assert_eq!(
        states(&watcher, true),
        ["active", "terminated;reason=timeout"]
    );
    let ok = watcher.final_responses("SUBSCRIBE", true);
    assert_eq!(
        ok[0].expires(),
        Some(1),
        "the notifier granted less than asked"
    );
    assert_pidf(
        watcher.requests("NOTIFY", true)[0],
        &format!("sip:carol@{aor}"),
        &state,
    );
}

#[test]
fn sipp_notifier_refuses_subscriptions_with_each_status() {
    for (status, reason, header) in [
        (403, "Forbidden", None),
        (489, "Bad Event", Some("Allow-Events: presence")),
        (603, "Decline", None),
    ] {
        let notifier = Sipp::uas_presence_status(status, reason, header)
            .spawn()
            .unwrap();
        let aor = format!("127.0.0.1:{}", notifier.port());
        let watcher =
            Sipp::uac_presence_watcher(notifier.addr(), "carol", &aor, &WatcherPlan::new(60))
                .run()
                .unwrap();
        let notifier = notifier.wait(T).unwrap();
        assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
        assert_eq!(
            watcher.final_status(),
            Some(status),
            "{}",
            watcher.summary()
        );
        assert_eq!(watcher.failed, 1);
        let refusal = watcher.final_responses("SUBSCRIBE", true)[0];
        assert_eq!(refusal.reason(), Some(reason));
        assert_eq!(refusal.header("Allow-Events"), Some("presence"));
        assert!(watcher.requests("NOTIFY", true).is_empty());
    }
}

#[test]
fn sipp_watcher_retries_a_423_with_min_expires_and_the_notifier_accepts_it() {
    let state = PresenceState::open("at my desk");
    let notifier = Sipp::uas_presence_min_expires(60, &state).spawn().unwrap();
    let aor = format!("127.0.0.1:{}", notifier.port());
    let watcher = Sipp::uac_presence_watcher(
        notifier.addr(),
        "carol",
        &aor,
        &WatcherPlan::new(1).refreshes(1),
    )
    .run()
    .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(watcher.exit_code, Some(0), "{}", watcher.summary());
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());

    let subscribes = notifier.requests("SUBSCRIBE", true);
    let expires: Vec<_> = subscribes.iter().map(|m| m.expires()).collect();
    assert_eq!(expires, vec![Some(1), Some(60), Some(60), Some(0)]);
    let responses = watcher.final_responses("SUBSCRIBE", true);
    assert_eq!(statuses(&responses), [423, 200, 200, 200]);
    assert_eq!(responses[0].header("Min-Expires"), Some("60"));
    // RFC 3261 §8.1.3.5: the retry is a new transaction of the same Call-ID, no To tag.
    assert_eq!(
        subscribes[1].header("Call-ID"),
        subscribes[0].header("Call-ID")
    );
    assert!(subscribes[1].cseq_number() > subscribes[0].cseq_number());
    assert_eq!(subscribes[1].tag("To"), None);
    assert_eq!(
        states(&watcher, true),
        ["active", "active", "terminated;reason=timeout"]
    );
    assert_eq!(
        watcher.requests("NOTIFY", true)[0]
            .subscription_state()
            .unwrap()
            .expires,
        Some(60)
    );
}

#[test]
fn sipp_publisher_and_compositor_publish_refresh_modify_and_remove() {
    let compositor = Sipp::uas_publish(120).spawn().unwrap();
    let plan = PublishPlan::new(60)
        .states(gone_fishing(), back_soon())
        .pause(Duration::from_millis(100));
    let publisher = Sipp::uac_publish(compositor.addr(), "carol", "sip.localhost", &plan)
        .run()
        .unwrap();
    let compositor = compositor.wait(T).unwrap();
    assert_eq!(publisher.exit_code, Some(0), "{}", publisher.summary());
    assert_eq!(compositor.exit_code, Some(0), "{}", compositor.summary());

    let publishes = compositor.requests("PUBLISH", true);
    let answers = compositor.final_responses("PUBLISH", false);
    assert_eq!(publishes.len(), 4);
    assert_eq!(statuses(&answers), [200; 4]);
    for p in &publishes {
        assert_eq!(p.request_uri(), Some("sip:carol@sip.localhost"));
        assert_eq!(p.header("Event"), Some("presence"));
    }
    let etags: Vec<_> = answers.iter().map(|a| a.header("SIP-ETag")).collect();
    let if_match: Vec<_> = publishes.iter().map(|p| p.header("SIP-If-Match")).collect();
    assert_eq!(if_match, [None, etags[0], etags[1], etags[2]]);
    assert!(etags[..3].iter().all(Option::is_some), "{etags:?}");
    assert_eq!(etags[3], None, "no ETag for a removal");
    let expires: Vec<_> = publishes.iter().map(|p| p.expires()).collect();
    assert_eq!(expires, [Some(60), Some(60), Some(60), Some(0)]);
    assert_eq!(answers[0].expires(), Some(120));

    let entity = "sip:carol@sip.localhost";
    let first = Pidf::parse(&publishes[0].body_text()).unwrap();
    assert_eq!(first.entity, entity);
    assert_eq!(first.basic(), Some("open"));
    assert_eq!(first.note(), Some("Gone fishing"));
    assert!(publishes[1].body.is_empty(), "a refresh has no body");
    let modified = publishes[2].pidf().unwrap();
    assert_eq!(modified.basic(), Some("closed"));
    assert_eq!(modified.activities, ["busy"]);
    assert!(publishes[3].body.is_empty());
}

#[test]
fn sipp_conditional_publish_with_an_unknown_etag_gets_412() {
    let compositor = Sipp::uas_publish(60).spawn().unwrap();
    let publisher = Sipp::uac_publish_if_match(
        compositor.addr(),
        "carol",
        "sip.localhost",
        "no-such-etag",
        60,
        412,
    )
    .run()
    .unwrap();
    let compositor = compositor.stop().unwrap();
    assert_eq!(publisher.exit_code, Some(0), "{}", publisher.summary());
    let publish = compositor.requests("PUBLISH", true)[0];
    assert_eq!(publish.header("SIP-If-Match"), Some("no-such-etag"));
    assert!(publish.body.is_empty());
    let answer = compositor.final_responses("PUBLISH", false)[0];
    assert_eq!(answer.status(), Some(412));
    assert_eq!(answer.header("SIP-ETag"), None);
}

fn roster_entry<'a>(roster: &'a [RosterItem], jid: &str) -> &'a RosterItem {
    roster
        .iter()
        .find(|i| i.jid == jid)
        .unwrap_or_else(|| panic!("{jid} not in roster {roster:?}"))
}

/// alice, bob and carol answer subscription requests themselves (manual), dave is a
/// default client (slixmpp approves and subscribes back on its own).
#[test]
fn slixmpp_subscriptions_through_prosody_approved_denied_and_automatic() {
    let prosody = Prosody::start(ProsodyOptions::default()).unwrap();
    let manual = ClientOptions {
        manual_subscriptions: true,
        ..ClientOptions::default()
    };
    let connect = |user: &str, options: ClientOptions| {
        XmppClient::connect_with(&prosody, user, PASSWORD, "desk", options).unwrap()
    };
    let mut alice = connect("alice", manual.clone());
    let mut bob = connect("bob", manual.clone());
    let mut carol = connect("carol", manual);
    let _dave = connect("dave", ClientOptions::default());
    bob.set_presence(Some("dnd"), Some("in a meeting"), 5)
        .unwrap();

    // alice asks bob; bob's client leaves the request to the test.
    alice.subscribe("bob@localhost").unwrap();
    let request = bob
        .expect_presence("alice@localhost", Some("subscribe"), T)
        .unwrap();
    assert_eq!(request.to(), Some("bob@localhost"));
    assert!(alice
        .expect_presence(
            "bob@localhost",
            Some("subscribed"),
            Duration::from_millis(700)
        )
        .is_err());
    let roster = alice.roster(T).unwrap();
    let pending = roster_entry(&roster, "bob@localhost");
    assert_eq!(pending.subscription, "none");
    assert_eq!(pending.ask.as_deref(), Some("subscribe"));

    // bob approves: alice is subscribed and gets bob's current presence.
    bob.approve("alice@localhost").unwrap();
    alice
        .expect_presence("bob@localhost", Some("subscribed"), T)
        .unwrap();
    let presence = alice
        .expect_presence("bob@localhost/desk", None, T)
        .unwrap();
    assert_eq!(presence.show().as_deref(), Some("dnd"));
    assert_eq!(presence.status().as_deref(), Some("in a meeting"));
    assert_eq!(presence.priority(), Some(5));
    let roster = alice.roster(T).unwrap();
    let item = roster_entry(&roster, "bob@localhost");
    assert_eq!(
        (item.subscription.as_str(), item.ask.as_deref()),
        ("to", None)
    );
    assert_eq!(
        roster_entry(&bob.roster(T).unwrap(), "alice@localhost").subscription,
        "from",
        "bob approved but did not subscribe back"
    );

    // A presence change reaches the subscriber.
    bob.set_presence(Some("away"), Some("lunch"), 5).unwrap();
    let presence = alice
        .expect_presence("bob@localhost/desk", None, T)
        .unwrap();
    assert_eq!(presence.show().as_deref(), Some("away"));
    assert_eq!(presence.status().as_deref(), Some("lunch"));

    // carol refuses.
    alice.subscribe("carol@localhost").unwrap();
    carol
        .expect_presence("alice@localhost", Some("subscribe"), T)
        .unwrap();
    carol.deny("alice@localhost").unwrap();
    alice
        .expect_presence("carol@localhost", Some("unsubscribed"), T)
        .unwrap();
    let roster = alice.roster(T).unwrap();
    assert!(
        roster
            .iter()
            .filter(|i| i.jid == "carol@localhost")
            .all(|i| i.subscription == "none" && i.ask.is_none()),
        "{roster:?}"
    );

    // dave's client approves by itself and subscribes back (slixmpp's default).
    alice.subscribe("dave@localhost").unwrap();
    alice
        .expect_presence("dave@localhost", Some("subscribed"), T)
        .unwrap();
    alice
        .expect_presence("dave@localhost", Some("subscribe"), T)
        .unwrap();

    // alice unsubscribes from bob: bob is told, alice's roster item goes back to none.
    alice.unsubscribe("bob@localhost").unwrap();
    bob.expect_presence("alice@localhost", Some("unsubscribe"), T)
        .unwrap();
    let roster = alice.roster(T).unwrap();
    assert_eq!(roster_entry(&roster, "bob@localhost").subscription, "none");
}

/// The two baresip tests ask for its SIP trace and presence modules.
fn baresip(options: BaresipOptions) -> Baresip {
    Baresip::start(options.sip_trace(true)).unwrap()
}

#[test]
fn baresip_publishes_its_status_and_watches_a_sipp_contact() {
    let compositor = Sipp::uas_publish(60).calls(100).spawn().unwrap();
    let plan = NotifierPlan::new(60)
        .states(
            PresenceState::open("at my desk"),
            PresenceState::new("open", "on a call", "busy"),
        )
        .change_after(Duration::from_millis(1500));
    let notifier = Sipp::uas_presence_notifier(&plan).spawn().unwrap();
    let carol = format!("sip:carol@127.0.0.1:{}", notifier.port());
    let aor_domain = format!("127.0.0.1:{}", compositor.port());
    let mut b = baresip(
        BaresipOptions::new("b", 440.0)
            .domain(&aor_domain)
            .publish_every(60)
            .watch(&carol),
    );
    let aor = b.uri();
    assert_eq!(aor, format!("sip:b@{aor_domain}"));

    // NOTIFY open → Online; 1.5 s later NOTIFY <rpid:busy/> → Busy.
    b.expect_contact_status(&carol, ContactStatus::Online, T)
        .unwrap();
    b.expect_contact_status(&carol, ContactStatus::Busy, T)
        .unwrap();
    assert!(b.log_contains(&format!("<{carol}> changed status from Online to Busy")));

    // One status change at a time: baresip sends a PUBLISH at once, with the ETag of the
    // last 200 it has seen, even while an earlier PUBLISH is unanswered.
    b.expect_final_responses("PUBLISH", 1, T).unwrap();
    b.set_presence(false).unwrap();
    b.expect_final_responses("PUBLISH", 2, T).unwrap();
    b.set_presence(true).unwrap();
    b.expect_final_responses("PUBLISH", 3, T).unwrap();
    b.quit().unwrap();
    let compositor = compositor.stop().unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());

    // What baresip published: unknown (it has not registered), closed, open, removal;
    // each PUBLISH a new Call-ID, the ETag of the last 200 in SIP-If-Match.
    let publishes = compositor.requests("PUBLISH", true);
    let answers = compositor.final_responses("PUBLISH", false);
    assert_eq!(publishes.len(), 4, "{}", compositor.summary());
    assert_eq!(statuses(&answers), [200; 4]);
    let basics: Vec<_> = publishes
        .iter()
        .map(|p| p.pidf().and_then(|d| d.basic().map(str::to_string)))
        .collect();
    assert_eq!(
        basics,
        [
            Some("unknown".to_string()),
            Some("closed".into()),
            Some("open".into()),
            None
        ]
    );
    let if_match: Vec<_> = publishes.iter().map(|p| p.header("SIP-If-Match")).collect();
    let etags: Vec<_> = answers.iter().map(|a| a.header("SIP-ETag")).collect();
    assert_eq!(if_match, [None, etags[0], etags[1], etags[2]]);
    let expires: Vec<_> = publishes.iter().map(|p| p.expires()).collect();
    assert_eq!(expires, [Some(60), Some(60), Some(60), Some(0)]);
    let mut call_ids: Vec<_> = publishes.iter().map(|p| p.header("Call-ID")).collect();
    call_ids.dedup();
    assert_eq!(call_ids.len(), 4, "a new Call-ID per PUBLISH");
    for p in &publishes[..3] {
        assert_eq!(p.request_uri(), Some(aor.as_str()));
        assert_eq!(p.header_uri("From"), Some(aor.as_str()));
        assert_eq!(p.header_uri("To"), Some(aor.as_str()));
        assert_eq!(p.header("Event"), Some("presence"));
        assert_eq!(p.header("Content-Type"), Some("application/pidf+xml"));
        assert_eq!(p.header("Contact"), None);
        let pidf = p.pidf().unwrap();
        assert_eq!(pidf.entity, aor);
        assert_eq!(pidf.tuple().map(|t| t.id.as_str()), Some("t4109"));
        assert!(pidf.activities.is_empty(), "an empty <rpid:activities/>");
    }
    assert!(publishes[3].body.is_empty());
    assert_eq!(publishes[3].header("Content-Type"), None);

    // What baresip subscribed: Expires 600, no Accept, then Expires 0 in the dialog.
    let subscribes = notifier.requests("SUBSCRIBE", true);
    assert_eq!(subscribes.len(), 2, "{}", notifier.summary());
    let first = subscribes[0];
    assert_eq!(first.request_uri(), Some(carol.as_str()));
    assert_eq!(first.header_uri("From"), Some(aor.as_str()));
    assert_eq!(first.header("Event"), Some("presence"));
    assert_eq!(first.expires(), Some(600));
    assert_eq!(first.header("Accept"), None);
    assert_eq!(first.header("Route"), None);
    assert_eq!(subscribes[1].expires(), Some(0));
    assert_eq!(
        states(&notifier, false),
        ["active", "active", "terminated;reason=timeout"]
    );
    assert_eq!(
        statuses(&notifier.final_responses("NOTIFY", true)),
        [200; 3]
    );
}

#[test]
fn baresip_routes_subscribe_and_publish_through_its_outbound_proxy() {
    // SUBSCRIBE through the proxy; the notifier then ends it with reason=rejected.
    let state = PresenceState::open("hello");
    let notifier =
        Sipp::uas_presence_terminate(60, Some(&state), Duration::from_millis(800), "rejected")
            .spawn()
            .unwrap();
    let proxy = notifier.addr();
    let mut b = baresip(
        BaresipOptions::new("b", 440.0)
            .domain("sip.localhost")
            .outbound(proxy)
            .watch("sip:alice@localhost"),
    );
    b.expect_contact_status("sip:alice@localhost", ContactStatus::Online, T)
        .unwrap();
    let notifier = notifier.wait(T).unwrap();
    assert_eq!(notifier.exit_code, Some(0), "{}", notifier.summary());
    b.expect_contact_status("sip:alice@localhost", ContactStatus::Unknown, T)
        .unwrap();
    assert!(
        b.log_contains(
            "presence: subscriber closed <sip:alice@localhost>: rejected; will retry in 3600 secs"
        ),
        "{}",
        b.context()
    );
    let subscribe = notifier.requests("SUBSCRIBE", true)[0];
    assert_eq!(subscribe.request_uri(), Some("sip:alice@localhost"));
    assert_eq!(
        subscribe.header("Route"),
        Some(format!("<sip:{proxy};lr>").as_str())
    );
    assert_eq!(subscribe.header_uri("From"), Some("sip:b@sip.localhost"));
    assert_eq!(subscribe.header_uri("To"), Some("sip:alice@localhost"));
    let contact = subscribe.header_uri("Contact").unwrap();
    assert!(
        contact.starts_with("sip:b-") && contact.ends_with(&format!("@127.0.0.1:{}", b.sip_port())),
        "{contact}"
    );
    b.quit().unwrap();

    // PUBLISH through the proxy, refreshed at 90 % of pubint=2 without a body; a
    // compositor that lost the ETag (restarted) answers the refresh 412, and baresip
    // publishes its whole state again.
    let compositor = Sipp::uas_publish(2).calls(100).spawn().unwrap();
    let port = compositor.port();
    let route = format!("<sip:{};lr>", compositor.addr());
    let mut c = baresip(
        BaresipOptions::new("carol", 440.0)
            .domain("sip.localhost")
            .outbound(compositor.addr())
            .publish_every(2),
    );
    c.expect_final_responses("PUBLISH", 2, T).unwrap();
    let before = compositor.stop().unwrap();
    let compositor = Sipp::uas_publish(2).calls(100).port(port).spawn().unwrap();
    c.expect_final_responses("PUBLISH", 4, T).unwrap();
    c.quit().unwrap();
    let after = compositor.stop().unwrap();

    let publishes = before.requests("PUBLISH", true);
    let answers = before.final_responses("PUBLISH", false);
    assert_eq!(statuses(&answers[..2]), [200, 200], "{}", before.summary());
    for p in publishes
        .iter()
        .chain(after.requests("PUBLISH", true).iter())
    {
        assert_eq!(p.request_uri(), Some("sip:carol@sip.localhost"));
        assert_eq!(p.header("Route"), Some(route.as_str()));
    }
    let (initial, refresh) = (publishes[0], publishes[1]);
    assert_eq!(initial.header("SIP-If-Match"), None);
    assert!(initial.pidf().is_some());
    assert!(refresh.body.is_empty(), "a refresh has no body");
    assert_eq!(
        refresh.header("Content-Type"),
        Some("application/pidf+xml"),
        "but keeps its Content-Type"
    );
    assert_eq!(refresh.header("Content-Length"), Some("0"));
    assert_eq!(
        refresh.header("SIP-If-Match"),
        answers[0].header("SIP-ETag")
    );

    let publishes = after.requests("PUBLISH", true);
    let answers = after.final_responses("PUBLISH", false);
    assert_eq!(statuses(&answers[..2]), [412, 200], "{}", after.summary());
    assert_eq!(
        publishes[0].header("SIP-If-Match"),
        before.final_responses("PUBLISH", false)[1].header("SIP-ETag"),
        "the refresh names the ETag the first compositor gave"
    );
    assert_eq!(publishes[1].header("SIP-If-Match"), None);
    assert_eq!(
        publishes[1]
            .pidf()
            .and_then(|p| p.basic().map(str::to_string)),
        Some("unknown".to_string())
    );
    let last = publishes[publishes.len() - 1];
    assert_eq!(last.expires(), Some(0), "quit removes the publication");
}
