//! The presence subscription state machines of RFC 8048 (STOX-MAPPING.md §6), sans-IO:
//! inputs and `now` in, actions out, `poll_timeout` for the next deadline, so that an hour of
//! refreshes runs in microseconds under a fake clock (issue 4).
//!
//! RFC 8048 keeps the long-lived **authorization** (an XMPP roster subscription) apart from
//! the **notification dialog** (a SIP SUBSCRIBE dialog with an expiry, RFC 6665). Two
//! machines, one per direction:
//!
//! * [`Watch`]: an XMPP user watches a SIP contact. stox is the RFC 6665 *subscriber*: it
//!   SUBSCRIBEs, refreshes before expiry and when the XMPP user comes online, retries 423
//!   with a larger Expires and 481 with a new dialog, backs off on 408/5xx, and ends the
//!   authorization (`unsubscribed`) on 403/489/603 or `terminated;reason=rejected`.
//! * [`Watcher`]: a SIP user watches an XMPP user. stox is the *notifier*: it forwards the
//!   subscription request as `<presence type='subscribe'>`, answers with NOTIFY pending until
//!   the XMPP user approves, then active with the presence; it enforces Expires, answers an
//!   `Expires: 0` fetch from its cache (or asks for a probe), and coalesces bursts: at most
//!   one NOTIFY per [`NOTIFY_INTERVAL`], the last state winning.
//!
//! Bodies are opaque here (PIDF bytes or XMPP presence stanzas are translated by
//! `translate::presence`); the machines decide only *when* and *what kind*.

use std::time::{Duration, Instant};

mod bridge;
pub mod publish;
pub mod records;

pub(super) use bridge::PresenceState;
pub use bridge::{parse_sub_state, sub_state_value, PresenceSettings, SubscriptionInfo, PIDF};

/// RFC 8048 §5 / issue 4: the Expires stox asks for.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Issue 4: at most one NOTIFY per subscription per this interval; the last state wins.
pub const NOTIFY_INTERVAL: Duration = Duration::from_secs(5);
/// First retry after a transient SUBSCRIBE failure (408, 5xx, no response); doubles up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest retry interval.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Largest Expires stox asks for after 423 (RFC 6665 §4.1.2.1).
pub const MAX_EXPIRES: u32 = 86_400;
/// How long a [`Watcher`] with no presence of its XMPP user waits, after asking for it
/// (`probe`), before it notifies without it: the XMPP server answers a probe within
/// milliseconds, so the first active NOTIFY carries the real state rather than "unknown".
pub const FIRST_STATE_WAIT: Duration = Duration::from_millis(500);

/// When to refresh a subscription that lasts `expires` seconds: at 90 % of it, at least one
/// second before it ends (RFC 6665 §4.1.2.2 leaves the margin to the subscriber).
pub fn refresh_after(expires: u32) -> Duration {
    let secs = u64::from(expires);
    Duration::from_secs((secs * 9 / 10).min(secs.saturating_sub(1)).max(1))
}

/// The RFC 6665 §4.1.3 `Subscription-State` of a NOTIFY, as the io layer parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// `pending`: not authorized yet; acknowledged, not translated (RFC 8048 §5).
    Pending,
    /// `active;expires=N`.
    Active {
        /// The remaining time the notifier granted.
        expires: Option<u32>,
    },
    /// `terminated;reason=R[;retry-after=S]`.
    Terminated {
        /// RFC 6665 §4.2.2 reason (`rejected`, `noresource`, `deactivated`, `timeout`,
        /// `probation`, `giveup`, `invariant`), if given.
        reason: Option<String>,
        /// `retry-after` seconds, if given.
        retry_after: Option<u32>,
    },
}

/// What a [`Watch`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchAction {
    /// Send SUBSCRIBE with this Expires (0: unsubscribe or one-shot fetch). `new_dialog`:
    /// start a new dialog (after 481 or termination) instead of refreshing the current one.
    Subscribe {
        /// Expires header value.
        expires: u32,
        /// Start a new dialog.
        new_dialog: bool,
    },
    /// Tell the XMPP watcher `<presence type='subscribed'/>`.
    Subscribed,
    /// Tell the XMPP watcher `<presence type='unsubscribed'/>`: the authorization ended.
    Unsubscribed,
    /// Translate this NOTIFY body (PIDF; empty: unknown, RFC 8048 treats it as closed) into
    /// presence for the XMPP watcher.
    Presence(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchState {
    /// No dialog, nothing in flight.
    Idle,
    /// A SUBSCRIBE is in flight.
    Subscribing,
    /// A dialog exists; it is refreshed at `refresh_at`.
    Established,
    /// The authorization ended; nothing more is sent.
    Ended,
}

/// An XMPP user watching a SIP contact (stox is the SIP subscriber).
#[derive(Debug, Clone)]
pub struct Watch {
    state: WatchState,
    /// The watcher has been told `subscribed`.
    authorized: bool,
    /// The Expires stox asks for (raised by 423).
    expires: u32,
    /// When to refresh it.
    refresh_at: Option<Instant>,
    /// When to retry after a transient failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The last NOTIFY body (answers probes).
    cached: Option<Vec<u8>>,
    /// The SUBSCRIBE in flight is an unsubscribe or a one-shot fetch.
    one_shot: bool,
    actions: Vec<WatchAction>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

impl Watch {
    /// A watch with nothing sent yet.
    pub fn new() -> Watch {
        Watch {
            state: WatchState::Idle,
            authorized: false,
            expires: DEFAULT_EXPIRES,
            refresh_at: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            cached: None,
            one_shot: false,
            actions: Vec::new(),
        }
    }

    /// Whether the watcher was told `subscribed` and the authorization still holds.
    pub fn authorized(&self) -> bool {
        self.authorized && self.state != WatchState::Ended
    }

    /// Whether nothing more will happen (the entry can be dropped).
    pub fn ended(&self) -> bool {
        self.state == WatchState::Ended
    }

    /// A watch brought back from the store after a restart. With a dialog, it is refreshed
    /// inside that dialog at `at` (a 481 then starts a new one); without, a new dialog is
    /// started at `at`. Nobody has to subscribe again.
    pub fn restore(
        at: Instant,
        expires: u32,
        authorized: bool,
        has_dialog: bool,
        cached: Option<Vec<u8>>,
    ) -> Watch {
        let mut w = Watch::new();
        w.expires = expires.clamp(1, MAX_EXPIRES);
        w.authorized = authorized;
        w.cached = cached;
        if has_dialog {
            w.state = WatchState::Established;
            w.refresh_at = Some(at);
        } else {
            w.retry_at = Some(at);
        }
        w
    }

    /// The state in words, for the admin API and metrics: `idle` (waiting to retry),
    /// `subscribing`, `pending` (a dialog, not authorized yet), `active`, `ended`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            WatchState::Idle => "idle",
            WatchState::Subscribing => "subscribing",
            WatchState::Established if self.authorized => "active",
            WatchState::Established => "pending",
            WatchState::Ended => "ended",
        }
    }

    /// The Expires stox asks for.
    pub fn expires(&self) -> u32 {
        self.expires
    }

    /// The last presence body from a NOTIFY.
    pub fn cached(&self) -> Option<&[u8]> {
        self.cached.as_deref()
    }

    /// Takes the actions decided so far.
    pub fn take_actions(&mut self) -> Vec<WatchAction> {
        std::mem::take(&mut self.actions)
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            WatchState::Established => self.refresh_at,
            WatchState::Idle => self.retry_at,
            _ => None,
        }
    }

    fn subscribe(&mut self, new_dialog: bool) {
        self.state = WatchState::Subscribing;
        self.one_shot = false;
        self.retry_at = None;
        self.actions.push(WatchAction::Subscribe {
            expires: self.expires,
            new_dialog,
        });
    }

    /// XMPP `<presence type='subscribe'>` to the contact.
    pub fn on_xmpp_subscribe(&mut self, _now: Instant) {
        match self.state {
            WatchState::Idle | WatchState::Ended => self.subscribe(true),
            WatchState::Subscribing => {}
            WatchState::Established => {
                // Already watching: confirm again (RFC 6121 §3.1.3: the contact's server
                // answers a repeated subscribe with subscribed).
                if self.authorized {
                    self.actions.push(WatchAction::Subscribed);
                    if let Some(b) = &self.cached {
                        self.actions.push(WatchAction::Presence(b.clone()));
                    }
                }
            }
        }
    }

    /// XMPP `<presence type='unsubscribe'>`: SUBSCRIBE `Expires: 0` and `unsubscribed`.
    pub fn on_xmpp_unsubscribe(&mut self, _now: Instant) {
        if self.state == WatchState::Established {
            self.actions.push(WatchAction::Subscribe {
                expires: 0,
                new_dialog: false,
            });
        }
        self.actions.push(WatchAction::Unsubscribed);
        self.end();
    }

    /// XMPP `<presence type='probe'>`: from the cache, else a one-shot SUBSCRIBE
    /// `Expires: 0` (RFC 8048 §5 "polling").
    pub fn on_xmpp_probe(&mut self, _now: Instant) {
        if let Some(b) = &self.cached {
            self.actions.push(WatchAction::Presence(b.clone()));
        } else if matches!(self.state, WatchState::Idle) && self.authorized {
            self.state = WatchState::Subscribing;
            self.one_shot = true;
            self.actions.push(WatchAction::Subscribe {
                expires: 0,
                new_dialog: true,
            });
        }
    }

    /// The XMPP watcher sent initial presence: refresh now (RFC 8048 §5).
    pub fn on_xmpp_available(&mut self, _now: Instant) {
        if self.state == WatchState::Established && self.authorized {
            self.subscribe(false);
        }
    }

    /// The final response to the SUBSCRIBE in flight (`code` 0: no response, timer F).
    pub fn on_response(
        &mut self,
        now: Instant,
        code: u16,
        expires: Option<u32>,
        min_expires: Option<u32>,
    ) {
        if self.state != WatchState::Subscribing {
            return;
        }
        let one_shot = std::mem::take(&mut self.one_shot);
        match code {
            200..=299 if one_shot => self.state = WatchState::Idle,
            200..=299 => {
                let granted = expires.unwrap_or(self.expires).min(self.expires.max(1));
                self.established(now, granted);
                self.backoff = FIRST_BACKOFF;
            }
            // RFC 6665 §4.1.2.1: the interval is too brief; retry with Min-Expires.
            423 => {
                let min = min_expires.unwrap_or(self.expires.saturating_mul(2));
                self.expires = min.max(self.expires.saturating_add(1)).min(MAX_EXPIRES);
                self.subscribe(true);
            }
            // RFC 6665 §4.1.2.2: the dialog is gone; subscribe anew.
            481 => self.subscribe(true),
            // RFC 8048 §5: the authorization is cancelled for good.
            403 | 489 | 603 => {
                self.actions.push(WatchAction::Unsubscribed);
                self.end();
            }
            404 | 410 | 484 | 604 => {
                self.actions.push(WatchAction::Unsubscribed);
                self.end();
            }
            _ => {
                // 408, 480, 5xx, no response: transient; retry with backoff.
                self.state = WatchState::Idle;
                self.refresh_at = None;
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn established(&mut self, now: Instant, expires: u32) {
        self.state = WatchState::Established;
        self.refresh_at = Some(now + refresh_after(expires));
    }

    /// A NOTIFY in the dialog (the io layer answers it 200). RFC 8048 §5: pending is not
    /// translated; the first active one gives `subscribed` and the presence.
    pub fn on_notify(&mut self, now: Instant, state: SubState, body: Vec<u8>) {
        if self.state == WatchState::Ended {
            return;
        }
        match state {
            SubState::Pending => {}
            SubState::Active { expires } => {
                if !self.authorized {
                    self.authorized = true;
                    self.actions.push(WatchAction::Subscribed);
                }
                if let Some(e) = expires {
                    if self.state == WatchState::Established {
                        self.established(now, e.max(1));
                    }
                }
                self.cached = Some(body.clone());
                self.actions.push(WatchAction::Presence(body));
            }
            SubState::Terminated {
                reason,
                retry_after,
            } => {
                if !body.is_empty() && self.authorized {
                    self.actions.push(WatchAction::Presence(body));
                }
                match reason.as_deref() {
                    // RFC 6665 §4.2.2: do not retry.
                    Some("rejected") | Some("noresource") | Some("invariant") => {
                        self.actions.push(WatchAction::Unsubscribed);
                        self.end();
                    }
                    // Retry at once (deactivated, timeout) or after retry-after.
                    _ => {
                        self.state = WatchState::Idle;
                        self.refresh_at = None;
                        match retry_after {
                            Some(s) if s > 0 => {
                                self.retry_at = Some(now + Duration::from_secs(u64::from(s)));
                            }
                            _ if self.authorized || reason.is_some() => self.subscribe(true),
                            _ => self.retry_at = Some(now + self.backoff),
                        }
                    }
                }
            }
        }
    }

    /// Runs what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            WatchState::Established if self.refresh_at.is_some_and(|t| t <= now) => {
                self.subscribe(false)
            }
            WatchState::Idle if self.retry_at.is_some_and(|t| t <= now) => self.subscribe(true),
            _ => {}
        }
    }

    fn end(&mut self) {
        self.state = WatchState::Ended;
        self.authorized = false;
        self.refresh_at = None;
        self.retry_at = None;
    }
}

/// What a [`Watcher`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherAction {
    /// Ask the XMPP user: `<presence type='subscribe'>` from the SIP watcher's JID.
    AskXmpp,
    /// Ask the XMPP server for the user's presence: `<presence type='probe'>`.
    Probe,
    /// Send NOTIFY with this state; `body` is the cached presence when there is one.
    Notify {
        /// `Subscription-State`.
        state: SubState,
        /// The presence to translate into PIDF (None: no body).
        body: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Asked,
    Granted,
    Rejected,
}

/// A SIP user watching an XMPP user (stox is the RFC 6665 notifier). The body type is opaque
/// bytes (the serialized presence of the XMPP user).
#[derive(Debug, Clone)]
pub struct Watcher {
    auth: Auth,
    expires_at: Option<Instant>,
    /// The latest presence of the XMPP user.
    state: Option<Vec<u8>>,
    /// When the last NOTIFY with presence left.
    last_notify: Option<Instant>,
    /// The body of the last active NOTIFY (a "change" to the same state is not sent).
    last_sent: Option<Vec<u8>>,
    /// A coalesced NOTIFY waiting for [`NOTIFY_INTERVAL`] to pass.
    pending_at: Option<Instant>,
    /// Waiting for the XMPP user's presence after a probe, at most until then
    /// ([`FIRST_STATE_WAIT`]).
    awaiting: Option<Instant>,
    /// The NOTIFY that ends the wait is the final one (a fetch or an unsubscribe).
    final_after_state: bool,
    ended: bool,
    actions: Vec<WatcherAction>,
}

impl Watcher {
    /// A new SUBSCRIBE (`expires` as granted, already clamped by the io layer): asks the XMPP
    /// user, NOTIFY pending (RFC 6665 §4.2.1: a NOTIFY follows every accepted SUBSCRIBE).
    /// `authorized`: the XMPP user approved this watcher before (a persisted roster
    /// subscription), then NOTIFY active. `expires == 0` is a fetch.
    pub fn new(now: Instant, expires: u32, authorized: bool, cached: Option<Vec<u8>>) -> Watcher {
        let mut w = Watcher {
            auth: if authorized {
                Auth::Granted
            } else {
                Auth::Asked
            },
            expires_at: None,
            state: cached,
            last_notify: None,
            last_sent: None,
            pending_at: None,
            awaiting: None,
            final_after_state: false,
            ended: false,
            actions: Vec::new(),
        };
        if !authorized {
            w.actions.push(WatcherAction::AskXmpp);
        }
        w.on_subscribe(now, expires);
        w
    }

    /// A subscription brought back from the store after a restart: nothing is sent until
    /// the XMPP user's presence arrives (the io layer probes for it once the link is up),
    /// which is then notified at once.
    pub fn restore(expires_at: Instant, authorized: bool) -> Watcher {
        Watcher {
            auth: if authorized {
                Auth::Granted
            } else {
                Auth::Asked
            },
            expires_at: Some(expires_at),
            state: None,
            last_notify: None,
            last_sent: None,
            pending_at: None,
            awaiting: None,
            final_after_state: false,
            ended: false,
            actions: Vec::new(),
        }
    }

    /// When the subscription expires unless refreshed.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// `pending`, `active`, `rejected` or `terminated`, for the admin API and metrics.
    pub fn state_name(&self) -> &'static str {
        match (self.ended, self.auth) {
            (true, _) => "terminated",
            (false, Auth::Asked) => "pending",
            (false, Auth::Granted) => "active",
            (false, Auth::Rejected) => "rejected",
        }
    }

    /// The latest presence of the XMPP user, if any.
    pub fn state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }

    /// Asks for the XMPP user's presence and notifies when it comes, or after
    /// [`FIRST_STATE_WAIT`] without it.
    fn await_state(&mut self, now: Instant, final_notify: bool) {
        if self.awaiting.is_none() {
            self.actions.push(WatcherAction::Probe);
            self.awaiting = Some(now + FIRST_STATE_WAIT);
        }
        self.final_after_state |= final_notify;
    }

    /// The wait for the first state is over (it came, or time ran out).
    fn state_arrived(&mut self, now: Instant) {
        self.awaiting = None;
        if std::mem::take(&mut self.final_after_state) {
            let body = self.state.clone();
            self.terminate("timeout", body);
        } else {
            self.notify_now(now);
        }
    }

    /// Takes the actions decided so far.
    pub fn take_actions(&mut self) -> Vec<WatcherAction> {
        std::mem::take(&mut self.actions)
    }

    /// Whether the subscription is over (the entry can be dropped).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the XMPP user approved.
    pub fn authorized(&self) -> bool {
        self.auth == Auth::Granted
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.expires_at, self.pending_at, self.awaiting]
            .into_iter()
            .flatten()
            .min()
    }

    fn notify_now(&mut self, now: Instant) {
        let state = SubState::Active {
            expires: self.remaining(now),
        };
        self.actions.push(WatcherAction::Notify {
            state,
            body: self.state.clone(),
        });
        self.last_notify = Some(now);
        self.last_sent = self.state.clone();
        self.pending_at = None;
    }

    fn remaining(&self, now: Instant) -> Option<u32> {
        self.expires_at
            .map(|e| u32::try_from(e.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX))
    }

    /// A SUBSCRIBE in the dialog (refresh) or the initial one.
    pub fn on_subscribe(&mut self, now: Instant, expires: u32) {
        if self.ended {
            return;
        }
        if expires == 0 {
            // RFC 6665 §4.2.1.4 / RFC 8048 §5: a fetch or an unsubscribe: one final NOTIFY.
            // Without cached state, ask the XMPP server for it first and send the final
            // NOTIFY when it comes (or after FIRST_STATE_WAIT).
            if self.state.is_none() && self.auth == Auth::Granted {
                self.expires_at = None;
                self.pending_at = None;
                return self.await_state(now, true);
            }
            let body = (self.auth == Auth::Granted)
                .then(|| self.state.clone())
                .flatten();
            return self.terminate("timeout", body);
        }
        self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
        match self.auth {
            Auth::Asked => self.actions.push(WatcherAction::Notify {
                state: SubState::Pending,
                body: None,
            }),
            Auth::Granted if self.state.is_none() => self.await_state(now, false),
            Auth::Granted if self.awaiting.is_some() => {}
            Auth::Granted => self.notify_now(now),
            Auth::Rejected => {}
        }
    }

    /// The XMPP user approved (`subscribed`).
    pub fn on_xmpp_subscribed(&mut self, now: Instant) {
        if self.ended || self.auth == Auth::Granted {
            return;
        }
        self.auth = Auth::Granted;
        // What came before the approval is not her presence: a server answers a
        // subscription request with `unavailable` ("acknowledging receipt", RFC 6121 §3.1.3)
        // whatever her state. Ask for the real one.
        self.state = None;
        self.await_state(now, false);
    }

    /// The XMPP user refused or revoked (`unsubscribed`): `terminated;reason=rejected`.
    pub fn on_xmpp_unsubscribed(&mut self, _now: Instant) {
        if self.ended {
            return;
        }
        self.auth = Auth::Rejected;
        self.terminate("rejected", None);
    }

    /// The final NOTIFY (`terminated;reason=…`); nothing follows it.
    fn terminate(&mut self, reason: &str, body: Option<Vec<u8>>) {
        self.actions.push(WatcherAction::Notify {
            state: SubState::Terminated {
                reason: Some(reason.into()),
                retry_after: None,
            },
            body,
        });
        self.ended = true;
        self.expires_at = None;
        self.pending_at = None;
        self.awaiting = None;
    }

    /// New presence of the XMPP user. Coalesced: at most one NOTIFY per
    /// [`NOTIFY_INTERVAL`], carrying the latest state.
    pub fn on_presence(&mut self, now: Instant, presence: Vec<u8>) {
        self.state = Some(presence);
        if self.ended || self.auth != Auth::Granted {
            return;
        }
        if self.awaiting.is_some() {
            return self.state_arrived(now);
        }
        if self.pending_at.is_none() && self.state == self.last_sent {
            return; // nothing new to say
        }
        match self.last_notify {
            Some(t) if now < t + NOTIFY_INTERVAL => {
                self.pending_at.get_or_insert(t + NOTIFY_INTERVAL);
            }
            _ => self.notify_now(now),
        }
    }

    /// Runs what is due: a coalesced NOTIFY, or expiry (`terminated;reason=timeout`; the
    /// authorization is kept, RFC 8048 §5).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return self.terminate("timeout", None);
        }
        if self.awaiting.is_some_and(|a| a <= now) {
            return self.state_arrived(now);
        }
        if self.pending_at.is_some_and(|p| p <= now) {
            if self.state == self.last_sent {
                self.pending_at = None; // it changed and changed back
            } else {
                self.notify_now(now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
