//! The presence machines under a fake clock.

use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const PIDF: &[u8] = b"<presence/>";

fn sub(expires: u32, new_dialog: bool) -> WatchAction {
    WatchAction::Subscribe {
        expires,
        new_dialog,
    }
}

fn active(expires: u32) -> SubState {
    SubState::Active {
        expires: Some(expires),
    }
}

fn terminated(reason: &str) -> SubState {
    SubState::Terminated {
        reason: Some(reason.into()),
        retry_after: None,
    }
}

/// Subscribe, 200, pending, then active: `subscribed` once, then the presence.
fn established(now: Instant) -> Watch {
    let mut w = Watch::new();
    w.on_xmpp_subscribe(now);
    assert_eq!(w.take_actions(), vec![sub(3600, true)]);
    w.on_response(now, 202, Some(3600), None);
    assert!(w.take_actions().is_empty());
    w.on_notify(now, SubState::Pending, vec![]);
    assert!(w.take_actions().is_empty(), "pending is not translated");
    w.on_notify(now, active(3600), PIDF.to_vec());
    assert_eq!(
        w.take_actions(),
        vec![
            WatchAction::Subscribed,
            WatchAction::Presence(PIDF.to_vec())
        ]
    );
    assert!(w.authorized());
    w
}

#[test]
fn an_hour_of_refreshes() {
    let start = t0();
    let mut now = start;
    let mut w = established(now);
    let mut refreshes = 0;
    // A day of simulated time with a 3600 s subscription: one refresh every 3240 s.
    while now < start + secs(86_400) {
        let next = w.poll_timeout().expect("a refresh is always scheduled");
        assert!(next > now);
        now = next;
        w.handle_timeout(now);
        assert_eq!(w.take_actions(), vec![sub(3600, false)]);
        w.on_response(now, 200, Some(3600), None);
        refreshes += 1;
    }
    assert_eq!(refreshes, 86_400 / 3240 + 1);
    // A NOTIFY later says active again: no second `subscribed`.
    w.on_notify(now, active(3600), PIDF.to_vec());
    assert_eq!(w.take_actions(), vec![WatchAction::Presence(PIDF.to_vec())]);
}

#[test]
fn refresh_margin() {
    assert_eq!(refresh_after(3600), secs(3240));
    assert_eq!(refresh_after(60), secs(54));
    assert_eq!(refresh_after(1), secs(1));
    assert_eq!(refresh_after(2), secs(1));
}

#[test]
fn initial_presence_refreshes_at_once() {
    let now = t0();
    let mut w = established(now);
    w.on_xmpp_available(now + secs(10));
    assert_eq!(w.take_actions(), vec![sub(3600, false)]);
}

#[test]
fn final_errors_end_the_authorization() {
    for code in [403, 489, 603, 404] {
        let now = t0();
        let mut w = Watch::new();
        w.on_xmpp_subscribe(now);
        w.take_actions();
        w.on_response(now, code, None, None);
        assert_eq!(w.take_actions(), vec![WatchAction::Unsubscribed], "{code}");
        assert!(w.ended() && !w.authorized());
        assert_eq!(w.poll_timeout(), None);
    }
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let now = t0();
    let mut w = Watch::new();
    w.on_xmpp_subscribe(now);
    w.take_actions();
    w.on_response(now, 423, None, Some(7200));
    assert_eq!(w.take_actions(), vec![sub(7200, true)]);
    // Without Min-Expires: double.
    w.on_response(now, 423, None, None);
    assert_eq!(w.take_actions(), vec![sub(14_400, true)]);
    w.on_response(now, 200, Some(14_400), None);
    assert_eq!(w.poll_timeout(), Some(now + secs(12_960)));
}

#[test]
fn no_such_dialog_subscribes_anew() {
    let now = t0();
    let mut w = established(now);
    now_refresh(&mut w);
    w.on_response(now, 481, None, None);
    assert_eq!(w.take_actions(), vec![sub(3600, true)]);
}

fn now_refresh(w: &mut Watch) {
    let due = w.poll_timeout().unwrap();
    w.handle_timeout(due);
    assert_eq!(w.take_actions(), vec![sub(3600, false)]);
}

#[test]
fn transient_failures_back_off() {
    let start = t0();
    let mut w = Watch::new();
    w.on_xmpp_subscribe(start);
    w.take_actions();
    let mut now = start;
    let mut gaps = Vec::new();
    for _ in 0..9 {
        w.on_response(now, 503, None, None);
        let next = w.poll_timeout().unwrap();
        gaps.push((next - now).as_secs());
        now = next;
        w.handle_timeout(now);
        assert_eq!(w.take_actions(), vec![sub(3600, true)]);
    }
    assert_eq!(gaps, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    w.on_response(now, 200, Some(600), None);
    assert_eq!(
        w.poll_timeout(),
        Some(now + secs(540)),
        "a shorter grant is honoured"
    );
}

#[test]
fn terminated_notifies() {
    // rejected: the authorization ends.
    let now = t0();
    let mut w = established(now);
    w.on_notify(now, terminated("rejected"), vec![]);
    assert_eq!(w.take_actions(), vec![WatchAction::Unsubscribed]);
    assert!(w.ended());
    // deactivated / timeout: subscribe again at once.
    for reason in ["deactivated", "timeout"] {
        let mut w = established(now);
        w.on_notify(now, terminated(reason), vec![]);
        assert_eq!(w.take_actions(), vec![sub(3600, true)], "{reason}");
    }
    // probation with retry-after: later.
    let mut w = established(now);
    w.on_notify(
        now,
        SubState::Terminated {
            reason: Some("probation".into()),
            retry_after: Some(120),
        },
        vec![],
    );
    assert!(w.take_actions().is_empty());
    assert_eq!(w.poll_timeout(), Some(now + secs(120)));
    w.handle_timeout(now + secs(120));
    assert_eq!(w.take_actions(), vec![sub(3600, true)]);
}

#[test]
fn unsubscribe_and_probe() {
    let now = t0();
    let mut w = established(now);
    w.on_xmpp_probe(now);
    assert_eq!(
        w.take_actions(),
        vec![WatchAction::Presence(PIDF.to_vec())],
        "a probe is answered from the cache"
    );
    w.on_xmpp_unsubscribe(now);
    assert_eq!(
        w.take_actions(),
        vec![sub(0, false), WatchAction::Unsubscribed]
    );
    assert!(w.ended());
    // Nothing after the end.
    w.on_notify(now, active(10), PIDF.to_vec());
    assert!(w.take_actions().is_empty());
}

#[test]
fn probe_without_cache_is_a_one_shot_fetch() {
    let now = t0();
    let mut w = established(now);
    // The dialog ended with a 5xx refresh failure; the authorization holds, no cache yet.
    w.cached = None;
    now_refresh(&mut w);
    w.on_response(now, 500, None, None);
    let retry = w.poll_timeout();
    assert_eq!(retry, Some(now + FIRST_BACKOFF));
    w.on_xmpp_probe(now);
    assert_eq!(w.take_actions(), vec![sub(0, true)]);
    w.on_response(now, 200, Some(0), None);
    assert_eq!(
        w.poll_timeout(),
        retry,
        "a fetch leaves no dialog to refresh; the failed subscription is still retried"
    );
}

// ------------------------------------------------------------------ Watcher

fn notify_kinds(actions: &[WatcherAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            WatcherAction::AskXmpp => "ask".to_string(),
            WatcherAction::Probe => "probe".to_string(),
            WatcherAction::Notify { state, body } => format!(
                "notify {} {}",
                match state {
                    SubState::Pending => "pending".to_string(),
                    SubState::Active { expires } => format!("active {}", expires.unwrap_or(0)),
                    SubState::Terminated { reason, .. } =>
                        format!("terminated {}", reason.clone().unwrap_or_default()),
                },
                body.as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_else(|| "-".into())
            ),
        })
        .collect()
}

#[test]
fn pending_then_approved_then_coalesced() {
    let start = t0();
    let mut w = Watcher::new(start, 3600, false, None);
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["ask", "notify pending -"]
    );
    // Presence before approval is not sent, and not trusted: a server answers a
    // subscription request with `unavailable` whatever the user's state.
    w.on_presence(start, b"p0".to_vec());
    assert!(w.take_actions().is_empty());
    w.on_xmpp_subscribed(start + secs(1));
    assert_eq!(notify_kinds(&w.take_actions()), vec!["probe"]);
    w.on_presence(start + secs(1), b"p0".to_vec());
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify active 3599 p0"]
    );
    // A burst of ten changes within a second: one NOTIFY 5 s after the last one, last wins.
    for i in 1..=10 {
        w.on_presence(
            start + secs(2) + Duration::from_millis(i * 50),
            format!("p{i}").into_bytes(),
        );
    }
    assert!(w.take_actions().is_empty());
    assert_eq!(w.poll_timeout(), Some(start + secs(6)));
    w.handle_timeout(start + secs(6));
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify active 3594 p10"]
    );
    // Quiet for longer than the interval: the next change goes at once.
    w.on_presence(start + secs(20), b"p11".to_vec());
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify active 3580 p11"]
    );
    // The same state again (a probe answer, a repeated broadcast): nothing to say.
    w.on_presence(start + secs(40), b"p11".to_vec());
    assert!(w.take_actions().is_empty());
    assert_eq!(w.poll_timeout(), Some(start + secs(3600)));
    // A change and back within the interval: nothing either.
    w.on_presence(start + secs(60), b"p12".to_vec());
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify active 3540 p12"]
    );
    w.on_presence(start + secs(61), b"p13".to_vec());
    w.on_presence(start + secs(62), b"p12".to_vec());
    w.handle_timeout(start + secs(65));
    assert!(w.take_actions().is_empty());
}

#[test]
fn rejected_and_expired() {
    let now = t0();
    let mut w = Watcher::new(now, 600, false, None);
    w.take_actions();
    w.on_xmpp_unsubscribed(now);
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated rejected -"]
    );
    assert!(w.ended() && !w.authorized());

    let mut w = Watcher::new(now, 600, true, Some(b"p".to_vec()));
    assert_eq!(notify_kinds(&w.take_actions()), vec!["notify active 600 p"]);
    // Refreshed once, then left to expire.
    w.on_subscribe(now + secs(500), 600);
    assert_eq!(notify_kinds(&w.take_actions()), vec!["notify active 600 p"]);
    assert_eq!(w.poll_timeout(), Some(now + secs(1100)));
    w.handle_timeout(now + secs(1100));
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated timeout -"]
    );
    assert!(
        w.ended() && w.authorized(),
        "expiry keeps the authorization"
    );
}

#[test]
fn fetch_with_and_without_cache() {
    let now = t0();
    let mut w = Watcher::new(now, 0, true, Some(b"p".to_vec()));
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated timeout p"]
    );
    assert!(w.ended());
    // Without cached state: probe, and the final NOTIFY carries the answer...
    let mut w = Watcher::new(now, 0, true, None);
    assert_eq!(notify_kinds(&w.take_actions()), vec!["probe"]);
    assert!(!w.ended());
    assert_eq!(w.poll_timeout(), Some(now + FIRST_STATE_WAIT));
    w.on_presence(now + Duration::from_millis(3), b"q".to_vec());
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated timeout q"]
    );
    assert!(w.ended());
    // ... or goes without it when none comes in time.
    let mut w = Watcher::new(now, 0, true, None);
    w.take_actions();
    w.handle_timeout(now + FIRST_STATE_WAIT);
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated timeout -"]
    );
    assert!(w.ended());
    // An unauthorized fetch reveals nothing.
    let mut w = Watcher::new(now, 0, false, Some(b"p".to_vec()));
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["ask", "notify terminated timeout -"]
    );
}

#[test]
fn approval_without_presence_waits_for_the_probe_answer() {
    let now = t0();
    let mut w = Watcher::new(now, 3600, false, None);
    w.take_actions();
    w.on_xmpp_subscribed(now + secs(1));
    // No presence known: probe, and the first active NOTIFY waits for the answer.
    assert_eq!(notify_kinds(&w.take_actions()), vec!["probe"]);
    assert_eq!(w.poll_timeout(), Some(now + secs(1) + FIRST_STATE_WAIT));
    w.on_presence(now + secs(1) + Duration::from_millis(5), b"on".to_vec());
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify active 3598 on"]
    );
    // The answer counts as a NOTIFY for coalescing: a change right after waits 5 s.
    w.on_presence(now + secs(2), b"away".to_vec());
    assert!(w.take_actions().is_empty());

    // An authorized new subscription with nothing cached waits the same way, and
    // notifies "unknown" (no body) when the wait runs out.
    let mut w = Watcher::new(now, 600, true, None);
    assert_eq!(notify_kinds(&w.take_actions()), vec!["probe"]);
    // A refresh during the wait does not notify twice.
    w.on_subscribe(now + Duration::from_millis(100), 600);
    assert!(w.take_actions().is_empty());
    w.handle_timeout(now + FIRST_STATE_WAIT);
    assert_eq!(notify_kinds(&w.take_actions()), vec!["notify active 599 -"]);
}

#[test]
fn restored_subscriptions() {
    let now = t0();
    // A watcher restored after a restart says nothing until presence comes, then
    // notifies at once; it still expires when it did before.
    let mut w = Watcher::restore(now + secs(100), true);
    assert!(w.take_actions().is_empty());
    assert_eq!(w.state_name(), "active");
    assert_eq!(w.poll_timeout(), Some(now + secs(100)));
    w.on_presence(now + secs(1), b"p".to_vec());
    assert_eq!(notify_kinds(&w.take_actions()), vec!["notify active 99 p"]);
    w.handle_timeout(now + secs(100));
    assert_eq!(
        notify_kinds(&w.take_actions()),
        vec!["notify terminated timeout -"]
    );
    let w = Watcher::restore(now + secs(100), false);
    assert_eq!(w.state_name(), "pending");

    // A watch with a dialog is refreshed inside it at the given time; one without starts
    // a new dialog then.
    let mut w = Watch::restore(now + secs(2), 600, true, true, Some(b"c".to_vec()));
    assert_eq!(w.state_name(), "active");
    assert_eq!(w.poll_timeout(), Some(now + secs(2)));
    w.handle_timeout(now + secs(2));
    assert_eq!(w.take_actions(), vec![sub(600, false)]);
    w.on_xmpp_probe(now + secs(3));
    assert_eq!(w.take_actions(), vec![WatchAction::Presence(b"c".to_vec())]);
    let mut w = Watch::restore(now + secs(2), 3600, false, false, None);
    assert_eq!(w.state_name(), "idle");
    w.handle_timeout(now + secs(2));
    assert_eq!(w.take_actions(), vec![sub(3600, true)]);
}
