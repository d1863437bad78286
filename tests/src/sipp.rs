//! SIPp (the `sip-tester` package) as SIP UAC or UAS for one test, with the scenarios in
//! `tests/sipp/`, plus a small parser for the SIP messages it logged (RFC 3261 §7).
//!
//! Scenario parameters reach SIPp two ways: `-key NAME VALUE` for `[NAME]` keywords in
//! message text (bodies are sent byte-exact: `[len]` counts bytes), and `@NAME@` template
//! placeholders filled before SIPp loads the file, for what SIPp checks at load time (the
//! status code of a response). Every run uses `-default_behaviors all,-bye` (an unexpected
//! message aborts the call, counted as failed, but SIPp sends no BYE/CANCEL: a MESSAGE is
//! not a dialog), `-trace_msg` (read back as
//! [`SippRun::messages`]), `-trace_err` and `-trace_stat` (call counts).
//!
//! # Presence scenarios (RFC 6665, RFC 3856, RFC 3903)
//!
//! | scenario | plays | constructor |
//! |---|---|---|
//! | `uas_presence_notifier.xml` | a watched SIP contact: 200, NOTIFY (pending,) active + PIDF, a second state on a timer or at the refresh, `terminated` after `Expires: 0` | [`Sipp::uas_presence_notifier`] ([`NotifierPlan`]) |
//! | `uas_presence_terminate.xml` | a notifier that ends the subscription: `reason=rejected`, `timeout`, ... | [`Sipp::uas_presence_terminate`] |
//! | `uas_presence_status.xml` | a contact refusing the SUBSCRIBE (403, 489, 603, 481...), or 423 + `Min-Expires` then accepting the retry | [`Sipp::uas_presence_status`], [`Sipp::uas_presence_min_expires`] |
//! | `uac_presence_watcher.xml` | a SIP watcher: SUBSCRIBE, NOTIFYs until a regex matches, N more, quiet, refreshes, `Expires: 0` or wait for `terminated` | [`Sipp::uac_presence_watcher`] ([`WatcherPlan`]) |
//! | `uac_publish.xml` | a publisher: initial PUBLISH, refresh, modify, remove, following `SIP-ETag` | [`Sipp::uac_publish`] ([`PublishPlan`]) |
//! | `uac_publish_if_match.xml` | one conditional PUBLISH expecting a status (412) | [`Sipp::uac_publish_if_match`] |
//! | `uas_publish.xml` | a compositor: ETags, 412 for unknown ones | [`Sipp::uas_publish`] |
//!
//! [`SippRun::requests`], [`SippRun::final_responses`], [`SippRun::subscription_states`],
//! [`SipMessage::subscription_state`] and [`SipMessage::pidf`] read back what went over the
//! wire. SIPp limits the scenarios must live with (all seen here with SIPp 3.6.1):
//!
//! * SIPp runs one scenario element per main-loop turn and reads its socket in between;
//!   a message arriving while the scenario stands on a `<nop>` (or any element that is
//!   not the `<recv>` it matches) is "unexpected" and aborts the call. So the scenarios
//!   decide right after a `<recv>` (while the peer waits for the answer) and branch with
//!   `next`/`test` on the `<send>` or `<recv>` itself.
//! * A call sends nothing while a request sent with `retrans` is unanswered, not even the
//!   200 to an incoming NOTIFY: the watcher sends its SUBSCRIBEs without retransmission
//!   (loopback UDP loses nothing), and answers a NOTIFY that arrives where it waits for a
//!   response (NOTIFY before the 200, a NOTIFY crossing a refresh) in an `_unexp.main`
//!   handler; such a NOTIFY does not count for `until`/`notifies`, and a NOTIFY and the
//!   response read in the same socket batch can still abort the call.
//! * Call variables are kept when a regex does not match, so flags are reset before each
//!   `<ereg>`; a variable referenced once is a load error; `[last_*]` inside actions are
//!   the previous message's headers.
//! * A UAS sends everything of a call to one address: the notifiers `setdest` to the
//!   subscriber's Contact after the 200 OK (the Contact needs an explicit `host:port`),
//!   so later responses go there too. A retried SUBSCRIBE after 423 must reuse the
//!   Call-ID (RFC 3261 §8.1.3.5 SHOULD), otherwise it is a new call.
//! * The UAS scenarios do not accept requests in the middle of their own sequences (e.g.
//!   a refresh while a NOTIFY is unanswered, anything during `uas_presence_terminate`'s
//!   wait).
//! * Calls are matched by Call-ID (and a finished call swallows later messages with the
//!   same Call-ID for a while), so the compositor answers all PUBLISHes of one Call-ID in
//!   one call and keeps the ETag in a global variable; PUBLISHes with new Call-IDs read
//!   in one socket batch are all checked against the ETag as it was before.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::crate_path;
use crate::pidf::{Pidf, PresenceState, SubscriptionState};
use crate::ports::free_port;
use crate::process::{tail, temp_dir, Process};

/// SIP transport for SIPp's `-t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`: UDP, one socket.
    Udp,
    /// `-t t1`: TCP, one connection.
    Tcp,
}

/// A SIPp invocation being prepared. [`SippCommand::spawn`] starts it in the background,
/// [`SippCommand::run`] starts it and waits for the result.
#[derive(Clone, Debug)]
pub struct SippCommand {
    scenario: String,
    templates: Vec<(String, String)>,
    /// Placeholders filled with scenario XML as is (not escaped).
    raw_templates: Vec<(String, String)>,
    keys: Vec<(String, String)>,
    remote: Option<SocketAddr>,
    port: u16,
    calls: u32,
    rate: u32,
    transport: Transport,
    timeout: Duration,
    extra: Vec<String>,
}

impl SippCommand {
    /// `scenario` is a file name in `tests/sipp/`. Defaults: a free local port, 1 call,
    /// 10 calls/s, UDP, a 30 s global timeout.
    pub fn new(scenario: &str) -> SippCommand {
        SippCommand {
            scenario: scenario.to_string(),
            templates: Vec::new(),
            raw_templates: Vec::new(),
            keys: Vec::new(),
            remote: None,
            port: free_port(),
            calls: 1,
            rate: 10,
            transport: Transport::Udp,
            timeout: Duration::from_secs(30),
            extra: Vec::new(),
        }
    }

    /// `-key name value`: `[name]` in the scenario's messages.
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// `@name@` in the scenario file is replaced by `value` (XML-escaped) before SIPp loads it.
    pub fn template(mut self, name: &str, value: &str) -> Self {
        self.templates.push((name.to_string(), value.to_string()));
        self
    }

    /// `@name@` in the scenario file is replaced by `value` as is: scenario XML (a step
    /// that only some runs have) or message text with its line breaks.
    pub fn raw_template(mut self, name: &str, value: &str) -> Self {
        self.raw_templates
            .push((name.to_string(), value.to_string()));
        self
    }

    /// The remote host:port (UAC target).
    pub fn remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// `-m`: number of calls (transactions for MESSAGE scenarios) before SIPp exits.
    pub fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }

    /// `-r`: calls per second.
    pub fn rate(mut self, per_second: u32) -> Self {
        self.rate = per_second;
        self
    }

    /// `-t`.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// `-p`: the local port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The local port SIPp will use (known before it starts, e.g. for the expected JID).
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// `-timeout`: SIPp gives up (and fails) after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Any other SIPp argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }

    /// The keys `basic{suffix}`, `note{suffix}`, `activity{suffix}` of the presence
    /// scenarios, from `state`.
    pub fn presence_keys(self, suffix: &str, state: &PresenceState) -> Self {
        self.key(&format!("basic{suffix}"), &state.basic)
            .key(&format!("note{suffix}"), &state.note)
            .key(&format!("activity{suffix}"), &state.activity)
    }

    /// Starts SIPp in the background. For a UAS, its port is listening when this returns.
    pub fn spawn(self) -> Result<Sipp> {
        let dir = temp_dir("sipp")?;
        let source = crate_path(&format!("sipp/{}", self.scenario));
        let mut text = fs::read_to_string(&source)
            .with_context(|| format!("reading scenario {}", source.display()))?;
        for (name, value) in &self.templates {
            text = text.replace(&format!("@{name}@"), &crate::xmpp::xml_escape(value));
        }
        for (name, value) in &self.raw_templates {
            text = text.replace(&format!("@{name}@"), value);
        }
        let scenario = dir.path().join(&self.scenario);
        fs::write(&scenario, text)?;
        let files = SippFiles {
            messages: dir.path().join("messages.log"),
            errors: dir.path().join("errors.log"),
            stats: dir.path().join("stats.csv"),
            screen: dir.path().join("screen.log"),
        };
        let mut cmd = Command::new("sipp");
        if let Some(remote) = self.remote {
            cmd.arg(remote.to_string());
        }
        cmd.arg("-sf").arg(&scenario);
        cmd.args(["-i", "127.0.0.1", "-p", &self.port.to_string()]);
        cmd.args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()]);
        cmd.arg("-t").arg(match self.transport {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        });
        cmd.args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-default_behaviors",
            "all,-bye",
        ]);
        cmd.arg("-trace_msg")
            .arg("-message_file")
            .arg(&files.messages);
        cmd.arg("-trace_err").arg("-error_file").arg(&files.errors);
        cmd.arg("-trace_stat").arg("-stf").arg(&files.stats);
        cmd.arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("-timeout_error");
        for (name, value) in &self.keys {
            cmd.arg("-key").arg(name).arg(value);
        }
        cmd.args(&self.extra);
        cmd.current_dir(dir.path());
        let process = Process::spawn_logged("sipp", cmd, &files.screen)?;
        let mut sipp = Sipp {
            process,
            port: self.port,
            transport: self.transport,
            files,
            _dir: dir,
        };
        if self.remote.is_none() {
            sipp.wait_listening()?;
        }
        Ok(sipp)
    }

    /// Starts SIPp and waits (up to the SIPp timeout plus 10 s) for it to finish.
    pub fn run(self) -> Result<SippRun> {
        let wait = self.timeout + Duration::from_secs(10);
        self.spawn()?.wait(wait)
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// What [`Sipp::uas_presence_notifier`] does.
#[derive(Clone, Debug)]
pub struct NotifierPlan {
    /// `Expires` granted in every 200 OK, and `expires=` of the active NOTIFYs.
    pub expires: u32,
    /// The PIDF `<tuple id>` (the resource of the contact's XMPP presence).
    pub tuple: String,
    /// The state of the first active NOTIFY.
    pub first: PresenceState,
    /// The state after the change.
    pub second: PresenceState,
    /// `Some(d)`: NOTIFY `pending` first, active after `d`.
    pub pending: Option<Duration>,
    /// `Some(d)`: NOTIFY `second` `d` after the first active NOTIFY, without waiting for
    /// a refresh.
    pub change_after: Option<Duration>,
    /// The answer to a refresh: `(200, "OK")`, or e.g. `(481, "Subscription Does Not
    /// Exist")`, after which the call ends.
    pub refresh_status: (u16, String),
}

impl NotifierPlan {
    /// Grants `expires`, tuple `phone`, first `open` "available", second `closed`
    /// "offline" (activity `unknown` both), no pending phase, the second state at the
    /// first refresh, refreshes answered 200.
    pub fn new(expires: u32) -> NotifierPlan {
        NotifierPlan {
            expires,
            tuple: "phone".to_string(),
            first: PresenceState::open("available"),
            second: PresenceState::closed("offline"),
            pending: None,
            change_after: None,
            refresh_status: (200, "OK".to_string()),
        }
    }

    /// Sets the two states.
    pub fn states(mut self, first: PresenceState, second: PresenceState) -> Self {
        self.first = first;
        self.second = second;
        self
    }

    /// Sets `pending`.
    pub fn pending_for(mut self, d: Duration) -> Self {
        self.pending = Some(d);
        self
    }

    /// Sets `change_after`.
    pub fn change_after(mut self, d: Duration) -> Self {
        self.change_after = Some(d);
        self
    }

    /// Sets `refresh_status`.
    pub fn refresh_status(mut self, status: u16, reason: &str) -> Self {
        self.refresh_status = (status, reason.to_string());
        self
    }
}

/// What [`Sipp::uac_presence_watcher`] does, step by step.
#[derive(Clone, Debug)]
pub struct WatcherPlan {
    /// `Expires` of the SUBSCRIBE and of each refresh.
    pub expires: u32,
    /// A POSIX extended regular expression: NOTIFYs are answered until one (the whole
    /// message) matches it.
    pub until: String,
    /// How many more NOTIFYs must then arrive.
    pub notifies: u32,
    /// Then NOTIFYs are answered until none came for this long.
    pub quiet: Duration,
    /// Refreshes (in-dialog SUBSCRIBE, 200, a NOTIFY, then quiet again).
    pub refreshes: u32,
    /// `true`: end with SUBSCRIBE `Expires: 0` and wait for NOTIFY `terminated`; `false`:
    /// wait for the notifier to send NOTIFY `terminated` by itself (expiry, rejection).
    pub unsubscribe: bool,
}

impl WatcherPlan {
    /// The ERE matching a NOTIFY of an active subscription.
    pub const ACTIVE: &'static str = "Subscription-State:[[:space:]]*active";

    /// Until the first active NOTIFY, no more, quiet for 300 ms, no refresh, unsubscribe.
    pub fn new(expires: u32) -> WatcherPlan {
        WatcherPlan {
            expires,
            until: WatcherPlan::ACTIVE.to_string(),
            notifies: 0,
            quiet: Duration::from_millis(300),
            refreshes: 0,
            unsubscribe: true,
        }
    }

    /// Like [`WatcherPlan::new`], but it never unsubscribes: it answers NOTIFYs until the
    /// notifier ends the subscription (`terminated;reason=rejected` before or after going
    /// active, `timeout` at expiry).
    pub fn until_terminated(expires: u32) -> WatcherPlan {
        WatcherPlan {
            unsubscribe: false,
            ..WatcherPlan::new(expires)
        }
    }

    /// Sets `until`.
    pub fn until(mut self, regex: &str) -> Self {
        self.until = regex.to_string();
        self
    }

    /// Sets `notifies`.
    pub fn then_notifies(mut self, n: u32) -> Self {
        self.notifies = n;
        self
    }

    /// Sets `quiet`.
    pub fn quiet(mut self, d: Duration) -> Self {
        self.quiet = d;
        self
    }

    /// Sets `refreshes`.
    pub fn refreshes(mut self, n: u32) -> Self {
        self.refreshes = n;
        self
    }
}

/// What [`Sipp::uac_publish`] does.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    /// `Expires` of the initial PUBLISH, the refresh and the modification.
    pub expires: u32,
    /// The PIDF `<tuple id>`.
    pub tuple: String,
    /// The initial state.
    pub first: PresenceState,
    /// The state of the modification.
    pub second: PresenceState,
    /// The wait before each PUBLISH after the first.
    pub pause: Duration,
    /// Whether to end with the removal (`Expires: 0`).
    pub remove: bool,
    /// Digest credentials `(user, password)` for a compositor that challenges (stox: only
    /// the presentity publishes its state): the first PUBLISH is sent again after the
    /// 401/407, every later one carries credentials.
    pub auth: Option<(String, String)>,
}

impl PublishPlan {
    /// Tuple `phone`, open "available" then closed "offline", 300 ms between steps, and
    /// the removal at the end.
    pub fn new(expires: u32) -> PublishPlan {
        PublishPlan {
            expires,
            tuple: "phone".to_string(),
            first: PresenceState::open("available"),
            second: PresenceState::closed("offline"),
            pause: Duration::from_millis(300),
            remove: true,
            auth: None,
        }
    }

    /// Sets `auth`.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// Sets the two states.
    pub fn states(mut self, first: PresenceState, second: PresenceState) -> Self {
        self.first = first;
        self.second = second;
        self
    }

    /// Sets `pause`.
    pub fn pause(mut self, d: Duration) -> Self {
        self.pause = d;
        self
    }

    /// Sets `remove`.
    pub fn remove(mut self, yes: bool) -> Self {
        self.remove = yes;
        self
    }
}

#[derive(Debug)]
struct SippFiles {
    messages: PathBuf,
    errors: PathBuf,
    stats: PathBuf,
    screen: PathBuf,
}

/// A running SIPp. `Drop` kills it by PID.
#[derive(Debug)]
pub struct Sipp {
    process: Process,
    port: u16,
    transport: Transport,
    files: SippFiles,
    _dir: tempfile::TempDir,
}

impl Sipp {
    /// A UAS on a free UDP port answering `calls` MESSAGEs with `status reason`
    /// (`tests/sipp/uas_message.xml`).
    pub fn uas_message_n(status: u16, reason: &str, calls: u32) -> Result<Sipp> {
        SippCommand::new("uas_message.xml")
            .template("STATUS", &status.to_string())
            .template("REASON", reason)
            .calls(calls)
            .spawn()
    }

    /// A SIP provider on a free UDP port (`tests/sipp/uas_provider.xml`): answers `calls`
    /// requests, each a REGISTER or a MESSAGE, with 200 OK and `Expires: 120`.
    pub fn uas_provider(calls: u32) -> Result<Sipp> {
        SippCommand::new("uas_provider.xml").calls(calls).spawn()
    }

    /// A provider's proxy that challenges one call (`tests/sipp/uas_invite_auth.xml`): 407
    /// with a Digest challenge (realm `provider.test`), then the INVITE with credentials
    /// rings and is refused 486.
    pub fn uas_invite_auth() -> Result<Sipp> {
        SippCommand::new("uas_invite_auth.xml").spawn()
    }

    /// A provider's proxy delivering a call to a registered Contact
    /// (`tests/sipp/uac_invite_bye.xml`): INVITE `ruri` (To `to_uri`, From
    /// `"Carol" <sip:carol@from_domain>`) with an Opus + PCMU + telephone-event offer (media
    /// on 127.0.0.1, a free port, no RTP sent); ACK on 200 OK, BYE after `pause`, expects
    /// 200. Send it to stox with `.remote(addr)`, adjust with the builder, then `.spawn()`.
    pub fn uac_invite_bye(
        ruri: &str,
        to_uri: &str,
        from_domain: &str,
        pause: Duration,
    ) -> SippCommand {
        SippCommand::new("uac_invite_bye.xml")
            .key("ruri", ruri)
            .key("to_uri", to_uri)
            .key("from_user", "carol")
            .key("from_domain", from_domain)
            .template("PAUSE_MS", &pause.as_millis().to_string())
            .arg("-mi")
            .arg("127.0.0.1")
            .arg("-mp")
            .arg(&free_port().to_string())
    }

    /// A UAS answering one MESSAGE with `status reason`.
    pub fn uas_message(status: u16, reason: &str) -> Result<Sipp> {
        Sipp::uas_message_n(status, reason, 1)
    }

    /// A UAC (`tests/sipp/uac_message.xml`) sending MESSAGE `sip:to_user@to_domain` with
    /// `body` (text/plain;charset=UTF-8) from `sip:carol@127.0.0.1:PORT` to `target`.
    /// Adjust with the builder, then `.run()`.
    pub fn uac_message(
        target: SocketAddr,
        to_user: &str,
        to_domain: &str,
        body: &str,
    ) -> SippCommand {
        SippCommand::new("uac_message.xml")
            .remote(target)
            .key("to_user", to_user)
            .key("to_domain", to_domain)
            .key("from_user", "carol")
            .key("content_type", "text/plain;charset=UTF-8")
            .key("body", body)
    }

    /// A UAC (`tests/sipp/uac_message_numbered.xml`) like [`Sipp::uac_message`], but the
    /// body of call N (counting from 1) is `{body_prefix}N`, and both `200 OK` and
    /// `202 Accepted` (stored for later delivery) count as success. Adjust with the
    /// builder (`.calls(n)`, `.rate(r)`), then `.run()`.
    pub fn uac_message_numbered(
        target: SocketAddr,
        to_user: &str,
        to_domain: &str,
        body_prefix: &str,
    ) -> SippCommand {
        SippCommand::new("uac_message_numbered.xml")
            .remote(target)
            .key("to_user", to_user)
            .key("to_domain", to_domain)
            .key("from_user", "carol")
            .key("content_type", "text/plain;charset=UTF-8")
            .key("body", body_prefix)
    }

    /// A UAS on a free UDP port refusing one INVITE: 180 Ringing, then `status reason`,
    /// then it expects the ACK (`tests/sipp/uas_invite_status.xml`).
    pub fn uas_invite_status(status: u16, reason: &str) -> Result<Sipp> {
        SippCommand::new("uas_invite_status.xml")
            .template("STATUS", &status.to_string())
            .template("REASON", reason)
            .timeout(Duration::from_secs(20))
            .spawn()
    }

    /// A UAC (`tests/sipp/uac_invite_wait_bye.xml`) calling `sip:to_user@to_domain` through
    /// `target` with a PCMU offer, then sending no RTP and waiting for a BYE, which it
    /// answers 200. Adjust with the builder, then `.spawn()` or `.run()`.
    pub fn uac_invite_wait_bye(target: SocketAddr, to_user: &str, to_domain: &str) -> SippCommand {
        SippCommand::new("uac_invite_wait_bye.xml")
            .remote(target)
            .key("to_user", to_user)
            .key("to_domain", to_domain)
            .key("from_user", "carol")
            .arg("-mi")
            .arg("127.0.0.1")
            .arg("-mp")
            .arg(&free_port().to_string())
    }

    /// A UAC (`tests/sipp/uac_invite_pcap.xml`) playing a SIP phone: INVITE
    /// `sip:to_user@to_domain` from `sip:carol@127.0.0.1:PORT` to `target` with a PCMU +
    /// telephone-event offer (media on 127.0.0.1, a free port); after the 200 OK and ACK it
    /// waits `pause`, replays the RTP of `pcap` toward the answer's media address (SIPp's
    /// `play_pcap_audio`, which needs root), waits `play` for it to finish, then sends BYE.
    /// Write the pcap with [`write_rtp_pcap`]. Adjust with the builder, then `.spawn()` or
    /// `.run()`.
    pub fn uac_invite_pcap(
        target: SocketAddr,
        to_user: &str,
        to_domain: &str,
        pcap: &Path,
        pause: Duration,
        play: Duration,
    ) -> SippCommand {
        SippCommand::new("uac_invite_pcap.xml")
            .remote(target)
            .key("to_user", to_user)
            .key("to_domain", to_domain)
            .key("from_user", "carol")
            .template("PCAP", &pcap.display().to_string())
            .template("PAUSE_MS", &pause.as_millis().to_string())
            .template("PLAY_MS", &play.as_millis().to_string())
            .arg("-mi")
            .arg("127.0.0.1")
            .arg("-mp")
            .arg(&free_port().to_string())
    }

    /// The watched SIP contact (`tests/sipp/uas_presence_notifier.xml`, RFC 6665 notifier,
    /// RFC 3856): answers one SUBSCRIBE 200 (To tag, Contact, `Expires` =
    /// `plan.expires`), optionally NOTIFY `pending` first, then NOTIFY `active` with a PIDF
    /// of `plan.first`; `plan.second` becomes the state after `plan.change_after` or at
    /// the first refresh (each refresh: 200 + NOTIFY of the current state); an in-dialog
    /// SUBSCRIBE `Expires: 0` gets 200 and NOTIFY `terminated;reason=timeout`, and the
    /// call ends. NOTIFYs go to the subscriber's Contact (host:port must be explicit).
    /// Adjust with the builder, then `.spawn()`.
    pub fn uas_presence_notifier(plan: &NotifierPlan) -> SippCommand {
        let (refresh_status, refresh_reason) = &plan.refresh_status;
        SippCommand::new("uas_presence_notifier.xml")
            .template("PENDING", if plan.pending.is_some() { "1" } else { "0" })
            .template(
                "PENDING_MS",
                &millis(plan.pending.unwrap_or(Duration::from_millis(1))),
            )
            .template(
                "CHANGE_AFTER_MS",
                &plan.change_after.map(millis).unwrap_or_else(|| "0".into()),
            )
            .template("REFRESH_STATUS", &refresh_status.to_string())
            .template("REFRESH_REASON", refresh_reason)
            .key("expires", &plan.expires.to_string())
            .key("tuple", &plan.tuple)
            .presence_keys("", &plan.first)
            .presence_keys("2", &plan.second)
    }

    /// A notifier that ends the subscription itself
    /// (`tests/sipp/uas_presence_terminate.xml`): answers one SUBSCRIBE 200 (`Expires`),
    /// sends NOTIFY `active` with a PIDF of `state` (or `pending` without body when `state`
    /// is `None`), waits `after`, then sends NOTIFY `terminated;reason=REASON`. Nothing may
    /// arrive meanwhile. Adjust with the builder, then `.spawn()`.
    pub fn uas_presence_terminate(
        expires: u32,
        state: Option<&PresenceState>,
        after: Duration,
        reason: &str,
    ) -> SippCommand {
        let shown = state
            .cloned()
            .unwrap_or_else(|| PresenceState::closed("pending"));
        SippCommand::new("uas_presence_terminate.xml")
            .template("ACTIVE", if state.is_some() { "1" } else { "0" })
            .template("AFTER_MS", &millis(after))
            .key("expires", &expires.to_string())
            .key("reason", reason)
            .key("tuple", "phone")
            .presence_keys("", &shown)
    }

    /// A SIP contact refusing a presence subscription (`tests/sipp/uas_presence_status.xml`):
    /// answers one SUBSCRIBE `status reason` with the header line `extra_header` (default
    /// `Allow-Events: presence`, which RFC 6665 §8.2.2 wants in a 489), and the call ends.
    /// For 423 use [`Sipp::uas_presence_min_expires`]. Adjust with the builder, then
    /// `.spawn()`.
    pub fn uas_presence_status(
        status: u16,
        reason: &str,
        extra_header: Option<&str>,
    ) -> SippCommand {
        SippCommand::new("uas_presence_status.xml")
            .template("STATUS", &status.to_string())
            .template("REASON", reason)
            .template(
                "EXTRA_HEADER",
                extra_header.unwrap_or("Allow-Events: presence"),
            )
            .template("MIN_EXPIRES", "0")
            .key("tuple", "phone")
            .presence_keys("", &PresenceState::open("unused"))
    }

    /// A SIP contact whose notifier wants longer subscriptions
    /// (`tests/sipp/uas_presence_status.xml` with 423): answers the first SUBSCRIBE
    /// `423 Interval Too Brief` with `Min-Expires: min_expires`, then accepts the retried
    /// SUBSCRIBE (same Call-ID; its `Expires` must be at least `min_expires`, else the call
    /// counts as failed) with 200 and that `Expires`, sends NOTIFY `active` with a PIDF of
    /// `state`; every in-dialog SUBSCRIBE then gets 200 and a NOTIFY of the same state,
    /// `Expires: 0` gets 200 and NOTIFY `terminated;reason=timeout`. Adjust with the
    /// builder, then `.spawn()`.
    pub fn uas_presence_min_expires(min_expires: u32, state: &PresenceState) -> SippCommand {
        SippCommand::new("uas_presence_status.xml")
            .template("STATUS", "423")
            .template("REASON", "Interval Too Brief")
            .template("EXTRA_HEADER", &format!("Min-Expires: {min_expires}"))
            .template("MIN_EXPIRES", &min_expires.to_string())
            .key("tuple", "phone")
            .presence_keys("", state)
    }

    /// A SIP user watching `sip:user@domain` through `target`
    /// (`tests/sipp/uac_presence_watcher.xml`, RFC 6665 subscriber) from
    /// `sip:carol@127.0.0.1:PORT`, following `plan` (see [`WatcherPlan`]): SUBSCRIBE, 200
    /// (a 423 is retried with its Min-Expires), NOTIFYs until one matches `plan.until`,
    /// `plan.notifies` more, quiet for `plan.quiet`, `plan.refreshes` refreshes, then
    /// unsubscribe (`Expires: 0`) or wait for the notifier's NOTIFY `terminated`. A NOTIFY
    /// `terminated` ends the call at any step. Adjust with the builder, then `.spawn()` or
    /// `.run()`.
    pub fn uac_presence_watcher(
        target: SocketAddr,
        user: &str,
        domain: &str,
        plan: &WatcherPlan,
    ) -> SippCommand {
        SippCommand::new("uac_presence_watcher.xml")
            .remote(target)
            .key("user", user)
            .key("domain", domain)
            .key("from_user", "carol")
            .key("expires", &plan.expires.to_string())
            .template("UNTIL", &plan.until)
            .template("NOTIFIES", &plan.notifies.to_string())
            .template(
                "QUIET_MS",
                &millis(plan.quiet.max(Duration::from_millis(1))),
            )
            .template("REFRESHES", &plan.refreshes.to_string())
            .template("UNSUBSCRIBE", if plan.unsubscribe { "1" } else { "0" })
    }

    /// A presence user agent publishing for `sip:user@domain` through `target`
    /// (`tests/sipp/uac_publish.xml`, RFC 3903): PUBLISH with a PIDF of `plan.first`
    /// (200 with `SIP-ETag` required), then after `plan.pause` a refresh (`SIP-If-Match`,
    /// no body), a modification to `plan.second`, and (`plan.remove`) the removal
    /// (`Expires: 0`), each answered 200 with a new ETag. Adjust with the builder, then
    /// `.spawn()` or `.run()`.
    pub fn uac_publish(
        target: SocketAddr,
        user: &str,
        domain: &str,
        plan: &PublishPlan,
    ) -> SippCommand {
        let command = SippCommand::new("uac_publish.xml")
            .remote(target)
            .key("user", user)
            .key("domain", domain)
            .key("expires", &plan.expires.to_string())
            .key("tuple", &plan.tuple)
            .presence_keys("", &plan.first)
            .presence_keys("2", &plan.second)
            .template(
                "PAUSE_MS",
                &millis(plan.pause.max(Duration::from_millis(1))),
            )
            .template("REMOVE", if plan.remove { "1" } else { "0" });
        match &plan.auth {
            Some((user, password)) => command
                .raw_template(
                    "AUTH_407",
                    "  <recv response=\"407\" auth=\"true\" optional=\"true\" next=\"challenged\"/>\n  \
                     <recv response=\"401\" auth=\"true\" optional=\"true\" next=\"challenged\"/>",
                )
                .raw_template("AUTH_HEADER", "\n[authentication]")
                .arg("-au")
                .arg(user)
                .arg("-ap")
                .arg(password),
            None => command
                .raw_template("AUTH_407", "")
                .raw_template("AUTH_HEADER", ""),
        }
    }

    /// A SIP phone registering `sip:user@domain` at `target` with Digest
    /// (`tests/sipp/uac_register.xml`): REGISTER (Contact `<contact>`, `Expires: expires`),
    /// the 401, the REGISTER again with credentials (`-au user -ap password`), expecting
    /// `status` (200, or 401/403 for a wrong password). `unregister_after`: then wait and
    /// unregister (`Expires: 0`). Adjust with the builder, then `.run()`.
    #[allow(clippy::too_many_arguments)]
    pub fn uac_register(
        target: SocketAddr,
        user: &str,
        domain: &str,
        password: &str,
        contact: &str,
        expires: u32,
        status: u16,
        unregister_after: Option<Duration>,
    ) -> SippCommand {
        let unregister = match unregister_after {
            None => String::new(),
            Some(d) => format!(
                "  <pause milliseconds=\"{}\"/>\n  <send retrans=\"500\">\n    <![CDATA[\n\
                 REGISTER sip:[domain] SIP/2.0\n\
                 Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
                 From: <sip:[user]@[domain]>;tag=[pid]SIPpTag[call_number]\n\
                 To: <sip:[user]@[domain]>\n\
                 Call-ID: [call_id]\n\
                 CSeq: [cseq] REGISTER\n\
                 Max-Forwards: 70\n\
                 [authentication]\n\
                 Contact: <[contact]>\n\
                 Expires: 0\n\
                 Content-Length: 0\n\n]]>\n  </send>\n  \
                 <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"200\"/>\n",
                millis(d.max(Duration::from_millis(1)))
            ),
        };
        SippCommand::new("uac_register.xml")
            .remote(target)
            .key("user", user)
            .key("domain", domain)
            .key("contact", contact)
            .key("expires", &expires.to_string())
            .template("FINAL", &status.to_string())
            .raw_template("UNREGISTER", &unregister)
            .arg("-au")
            .arg(user)
            .arg("-ap")
            .arg(password)
    }

    /// A SIP user of stox's domain sending one MESSAGE (`tests/sipp/uac_message_auth.xml`):
    /// MESSAGE `sip:to_user@to_domain` from `sip:from_user@from_domain`, the 407, the
    /// MESSAGE again with credentials, expecting `status`. Adjust, then `.run()`.
    #[allow(clippy::too_many_arguments)]
    pub fn uac_message_auth(
        target: SocketAddr,
        to_user: &str,
        to_domain: &str,
        from_user: &str,
        from_domain: &str,
        password: &str,
        body: &str,
        status: u16,
    ) -> SippCommand {
        SippCommand::new("uac_message_auth.xml")
            .remote(target)
            .key("to_user", to_user)
            .key("to_domain", to_domain)
            .key("from_user", from_user)
            .key("from_domain", from_domain)
            .key("content_type", "text/plain;charset=UTF-8")
            .key("body", body)
            .template("FINAL", &status.to_string())
            .arg("-au")
            .arg(from_user)
            .arg("-ap")
            .arg(password)
    }

    /// One conditional PUBLISH for `sip:user@domain` through `target`
    /// (`tests/sipp/uac_publish_if_match.xml`): `SIP-If-Match: etag`, `Expires: expires`,
    /// no body, expecting `status` (412 for an unknown ETag). Adjust with the builder,
    /// then `.run()`.
    pub fn uac_publish_if_match(
        target: SocketAddr,
        user: &str,
        domain: &str,
        etag: &str,
        expires: u32,
        status: u16,
    ) -> SippCommand {
        SippCommand::new("uac_publish_if_match.xml")
            .remote(target)
            .key("user", user)
            .key("domain", domain)
            .key("etag", etag)
            .key("expires", &expires.to_string())
            .template("STATUS", &status.to_string())
    }

    /// A presence compositor (`tests/sipp/uas_publish.xml`, RFC 3903) granting `expires`:
    /// initial PUBLISH → 200 with a new `SIP-ETag`; `SIP-If-Match` of the current ETag →
    /// 200 and a new ETag (refresh, modification) or 200 `Expires: 0` (removal, which ends
    /// the call); any other `SIP-If-Match` → 412. One call per Call-ID: a client that uses
    /// a new Call-ID per PUBLISH (baresip) leaves calls open, so stop it with
    /// [`Sipp::stop`]. Adjust with the builder, then `.spawn()`.
    pub fn uas_publish(expires: u32) -> SippCommand {
        SippCommand::new("uas_publish.xml").key("expires", &expires.to_string())
    }

    fn wait_listening(&mut self) -> Result<()> {
        // SIPp binds before it starts its scenario loop; poll until the port is taken.
        for _ in 0..100 {
            if let Some(status) = self.process.try_status() {
                anyhow::bail!(
                    "sipp exited early with {status}\n{}",
                    tail(&self.files.screen, 20)
                );
            }
            let taken = match self.transport {
                Transport::Udp => {
                    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, self.port)).is_err()
                }
                Transport::Tcp => {
                    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).is_err()
                }
            };
            if taken {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("sipp is not listening on {}", self.port)
    }

    /// The local SIP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The local SIP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits up to `timeout` for SIPp to finish (SIGTERM, then SIGKILL, if it does not) and
    /// reads back its logs.
    pub fn wait(mut self, timeout: Duration) -> Result<SippRun> {
        let status = match self.process.wait_timeout(timeout) {
            Some(status) => Some(status),
            None => {
                eprintln!("[harness] sipp still running after {timeout:?}, stopping it");
                self.process.terminate(Duration::from_secs(3));
                None
            }
        };
        self.collect(status)
    }

    /// Stops SIPp now (SIGTERM) and reads back its logs (e.g. a UAS that was expected to
    /// receive nothing).
    pub fn stop(mut self) -> Result<SippRun> {
        self.process.terminate(Duration::from_secs(3));
        self.collect(None)
    }

    fn collect(&self, status: Option<ExitStatus>) -> Result<SippRun> {
        let log = fs::read(&self.files.messages).unwrap_or_default();
        let stats = fs::read_to_string(&self.files.stats).unwrap_or_default();
        let (successful, failed) = parse_stats(&stats);
        Ok(SippRun {
            exit_code: status.and_then(|s| s.code()),
            successful,
            failed,
            messages: parse_message_log(&log),
            errors: String::from_utf8_lossy(&fs::read(&self.files.errors).unwrap_or_default())
                .to_string(),
            screen: tail(&self.files.screen, 40),
        })
    }

    /// Paths of SIPp's logs: (messages, errors, screen).
    pub fn log_paths(&self) -> (&Path, &Path, &Path) {
        (&self.files.messages, &self.files.errors, &self.files.screen)
    }
}

/// What a finished SIPp did.
#[derive(Clone, Debug)]
pub struct SippRun {
    /// SIPp's exit code: 0 all calls succeeded, 1 some failed, 97/99/255 see `sipp -h`;
    /// `None` if the harness had to stop it.
    pub exit_code: Option<i32>,
    /// `SuccessfulCall(C)` from the statistics file.
    pub successful: u64,
    /// `FailedCall(C)` from the statistics file.
    pub failed: u64,
    /// Every message sent or received, in log order.
    pub messages: Vec<SipMessage>,
    /// The `-trace_err` log (unexpected messages, aborted calls).
    pub errors: String,
    /// The tail of SIPp's screen output.
    pub screen: String,
}

impl SippRun {
    /// Received requests (retransmissions included).
    pub fn received_requests(&self) -> Vec<&SipMessage> {
        self.messages
            .iter()
            .filter(|m| m.received && m.is_request())
            .collect()
    }

    /// Received requests, one per Call-ID+CSeq (retransmissions removed).
    pub fn received_requests_unique(&self) -> Vec<&SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.received_requests()
            .into_iter()
            .filter(|m| seen.insert((m.header("Call-ID"), m.header("CSeq"))))
            .collect()
    }

    /// Status codes of received responses, in order.
    pub fn received_statuses(&self) -> Vec<u16> {
        self.messages
            .iter()
            .filter(|m| m.received)
            .filter_map(SipMessage::status)
            .collect()
    }

    /// For every request SIPp sent (retransmissions counted once), in sending order: its
    /// Call-ID, its body and the first final (≥ 200) status SIPp received for it, `None` if
    /// none arrived.
    pub fn sent_requests_outcome(&self) -> Vec<(String, String, Option<u16>)> {
        let mut out: Vec<(String, String, Option<u16>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for m in &self.messages {
            let call_id = m.header("Call-ID").unwrap_or("").to_string();
            if !m.received && m.is_request() {
                index.entry(call_id.clone()).or_insert_with(|| {
                    out.push((call_id, m.body_text(), None));
                    out.len() - 1
                });
            } else if m.received {
                if let (Some(status @ 200..), Some(&i)) = (m.status(), index.get(&call_id)) {
                    out[i].2.get_or_insert(status);
                }
            }
        }
        out
    }

    /// The requests with `method` that SIPp received (`received`) or sent, one per
    /// Call-ID + CSeq (retransmissions removed), in order.
    pub fn requests(&self, method: &str, received: bool) -> Vec<&SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.messages
            .iter()
            .filter(|m| m.received == received && m.method() == Some(method))
            .filter(|m| seen.insert((m.header("Call-ID"), m.header("CSeq"))))
            .collect()
    }

    /// The final (≥ 200) responses to requests with `method` (by their CSeq) that SIPp
    /// received (`received`) or sent, one per Call-ID + CSeq, in order.
    pub fn final_responses(&self, method: &str, received: bool) -> Vec<&SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.messages
            .iter()
            .filter(|m| m.received == received && m.status().is_some_and(|s| s >= 200))
            .filter(|m| m.cseq_method() == Some(method))
            .filter(|m| seen.insert((m.header("Call-ID"), m.header("CSeq"))))
            .collect()
    }

    /// The `Subscription-State` of every NOTIFY SIPp received (`received`) or sent, in
    /// order (retransmissions removed); a NOTIFY without one counts as `missing`.
    pub fn subscription_states(&self, received: bool) -> Vec<SubscriptionState> {
        self.requests("NOTIFY", received)
            .into_iter()
            .map(|m| {
                m.subscription_state().unwrap_or(SubscriptionState {
                    state: "missing".into(),
                    expires: None,
                    reason: None,
                    retry_after: None,
                })
            })
            .collect()
    }

    /// The first received final (≥ 200) status.
    pub fn final_status(&self) -> Option<u16> {
        self.received_statuses().into_iter().find(|s| *s >= 200)
    }

    /// A readable summary for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "exit {:?}, {} ok, {} failed, statuses {:?}\n--- errors ---\n{}\n--- screen ---\n{}",
            self.exit_code,
            self.successful,
            self.failed,
            self.received_statuses(),
            self.errors,
            self.screen
        )
    }
}

/// One SIP message (RFC 3261 §7), as logged by SIPp or read from a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipMessage {
    /// Whether SIPp received it (false: SIPp sent it).
    pub received: bool,
    /// `UDP`, `TCP`, ... (empty when parsed from raw bytes).
    pub transport: String,
    /// The start line.
    pub start_line: String,
    /// Header fields in order, names as written.
    pub headers: Vec<(String, String)>,
    /// The body, exactly `Content-Length` bytes when that header is present.
    pub body: Vec<u8>,
    /// The whole message.
    pub raw: Vec<u8>,
}

/// RFC 3261 §7.3.3 compact header forms (and RFC 6665 §8.2's `o` and `u`).
fn expand_compact(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "call-id",
        "m" => "contact",
        "o" => "event",
        "u" => "allow-events",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        _ => name,
    }
}

impl SipMessage {
    /// Parses one message from bytes (lenient: for test assertions, not for production).
    pub fn parse(raw: &[u8]) -> Option<SipMessage> {
        let (head_len, sep_len) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => (p, 4),
            None => (raw.windows(2).position(|w| w == b"\n\n")?, 2),
        };
        let head = String::from_utf8_lossy(&raw[..head_len]);
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let start_line = lines.next()?.to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Header folding (RFC 3261 §7.3.1).
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let rest = &raw[head_len + sep_len..];
        let mut message = SipMessage {
            received: false,
            transport: String::new(),
            start_line,
            headers,
            body: Vec::new(),
            raw: raw.to_vec(),
        };
        let body_len = message
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(rest.len())
            .min(rest.len());
        message.body = rest[..body_len].to_vec();
        message.raw.truncate(head_len + sep_len + body_len);
        Some(message)
    }

    /// Whether the start line is a request line.
    pub fn is_request(&self) -> bool {
        !self.start_line.starts_with("SIP/")
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        self.is_request()
            .then(|| self.start_line.split_whitespace().next())
            .flatten()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        self.is_request()
            .then(|| self.start_line.split_whitespace().nth(1))
            .flatten()
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if self.is_request() {
            return None;
        }
        self.start_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        if self.is_request() {
            return None;
        }
        self.start_line.splitn(3, ' ').nth(2)
    }

    /// The first value of header `name` (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let wanted = expand_compact(name).to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| expand_compact(n).to_ascii_lowercase() == wanted)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let wanted = expand_compact(name).to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| expand_compact(n).to_ascii_lowercase() == wanted)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The URI inside a name-addr header value (`"Name" <sip:u@h;gr=x>;tag=1` → `sip:u@h;gr=x`).
    pub fn header_uri(&self, name: &str) -> Option<&str> {
        let value = self.header(name)?;
        match (value.find('<'), value.find('>')) {
            (Some(start), Some(end)) if start < end => Some(&value[start + 1..end]),
            _ => Some(value.split(';').next().unwrap_or(value).trim()),
        }
    }

    /// The body as UTF-8 (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// The method in `CSeq` (`SUBSCRIBE` for a response to one).
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }

    /// The number in `CSeq`.
    pub fn cseq_number(&self) -> Option<u32> {
        self.header("CSeq")?.split_whitespace().next()?.parse().ok()
    }

    /// `Expires` as a number.
    pub fn expires(&self) -> Option<u32> {
        self.header("Expires")?.trim().parse().ok()
    }

    /// The `tag` parameter of header `name` (`From`, `To`).
    pub fn tag(&self, name: &str) -> Option<&str> {
        let value = self.header(name)?;
        let params = match value.find('>') {
            Some(end) => &value[end + 1..],
            None => value,
        };
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("tag"))
            .map(|(_, v)| v.trim())
    }

    /// `Subscription-State` (RFC 6665 §8.2.3), parsed.
    pub fn subscription_state(&self) -> Option<SubscriptionState> {
        SubscriptionState::parse(self.header("Subscription-State")?)
    }

    /// The body as PIDF (RFC 3863), when it is one.
    pub fn pidf(&self) -> Option<Pidf> {
        Pidf::parse(&self.body_text())
    }
}

/// Parses a SIPp `-trace_msg` log: entries headed by `UDP message received [N] bytes :` or
/// `UDP message sent (N bytes):`, a blank line, then exactly N bytes.
pub fn parse_message_log(log: &[u8]) -> Vec<SipMessage> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < log.len() {
        let line_end = log[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i)
            .unwrap_or(log.len());
        let line = String::from_utf8_lossy(&log[pos..line_end]);
        if let Some((transport, received, len)) = parse_entry_header(&line) {
            let start = line_end + 2;
            let end = start + len;
            if log.get(line_end + 1) == Some(&b'\n') && end <= log.len() {
                if let Some(mut message) = SipMessage::parse(&log[start..end]) {
                    message.received = received;
                    message.transport = transport;
                    out.push(message);
                }
                pos = end;
                continue;
            }
        }
        pos = line_end + 1;
    }
    out
}

fn parse_entry_header(line: &str) -> Option<(String, bool, usize)> {
    let (transport, rest) = line.split_once(" message ")?;
    if !matches!(transport, "UDP" | "TCP" | "TLS" | "SCTP") {
        return None;
    }
    let (received, rest) = if let Some(r) = rest.strip_prefix("received [") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("sent (") {
        (false, r)
    } else {
        return None;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((transport.to_string(), received, digits.parse().ok()?))
}

/// `SuccessfulCall(C)` and `FailedCall(C)` from the last row of a `-trace_stat` file.
fn parse_stats(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let names: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let column = |name: &str| -> u64 {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}

/// An RTP packet (RFC 3550 §5.1: version 2, no padding, extension or CSRC).
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((u8::from(marker) << 7) | (pt & 0x7f));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// G.711 μ-law encoding of one 16-bit linear sample (ITU-T G.711, as in RFC 3551's PCMU).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let exponent = (7 - ((x as u32).leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// The RFC 4733 event code of a DTMF key (`0`-`9`, `*` 10, `#` 11, `A`-`D` 12-15).
pub fn dtmf_event_code(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        _ => None,
    }
}

/// What a SIP phone sends while its user dials: 20 ms PCMU packets (payload type 0) of a
/// `tone_hz` sine for `lead`, then for each key of `digits` an RFC 4733 telephone-event
/// (payload type 101, volume 10, 200 ms: a marked first packet, the duration growing by 160
/// every 20 ms, the end packet sent three times) followed by `gap` of the tone, then `tail`
/// of the tone. Returns (send time, RTP packet) pairs for [`write_rtp_pcap`]. Audio is
/// suppressed during the events, as RFC 4733 §2.5.1.2 suggests; one timestamp clock
/// (8 kHz) and one sequence run the whole stream.
pub fn pcmu_tone_with_rfc4733(
    tone_hz: f64,
    lead: Duration,
    digits: &str,
    gap: Duration,
    tail: Duration,
) -> Vec<(Duration, Vec<u8>)> {
    const SSRC: u32 = 0x5354_4f58;
    const TS0: u32 = 0x1000;
    const PTIME_MS: u64 = 20;
    const SAMPLES: u32 = 160;
    let mut out = Vec::new();
    let mut seq: u16 = 0x2000;
    let mut slot: u32 = 0; // 20 ms packet slots since the start
    let audio = |slot: &mut u32, seq: &mut u16, out: &mut Vec<(Duration, Vec<u8>)>, n: u32| {
        for _ in 0..n {
            let ts = TS0.wrapping_add(*slot * SAMPLES);
            let payload: Vec<u8> = (0..SAMPLES)
                .map(|i| {
                    let t = f64::from(*slot * SAMPLES + i) / 8000.0;
                    let v = 0.25 * 32767.0 * (2.0 * std::f64::consts::PI * tone_hz * t).sin();
                    linear_to_ulaw(v as i16)
                })
                .collect();
            let at = Duration::from_millis(u64::from(*slot) * PTIME_MS);
            out.push((at, rtp_packet(0, false, *seq, ts, SSRC, &payload)));
            *seq = seq.wrapping_add(1);
            *slot += 1;
        }
    };
    let slots = |d: Duration| (d.as_millis() as u64 / PTIME_MS) as u32;
    audio(&mut slot, &mut seq, &mut out, slots(lead));
    for key in digits.chars() {
        let Some(code) = dtmf_event_code(key) else {
            continue;
        };
        let start_ts = TS0.wrapping_add(slot * SAMPLES);
        let steps = 10u16; // 200 ms
        for step in 1..=steps + 2 {
            let end = step >= steps;
            let duration = (step.min(steps)) * SAMPLES as u16;
            let mut payload = vec![code, 10, 0, 0];
            if end {
                payload[1] |= 0x80;
            }
            payload[2..4].copy_from_slice(&duration.to_be_bytes());
            let at = Duration::from_millis(u64::from(slot) * PTIME_MS);
            out.push((
                at,
                rtp_packet(101, step == 1, seq, start_ts, SSRC, &payload),
            ));
            seq = seq.wrapping_add(1);
            slot += 1;
        }
        audio(&mut slot, &mut seq, &mut out, slots(gap));
    }
    audio(&mut slot, &mut seq, &mut out, slots(tail));
    out
}

/// Writes `packets` (send time, UDP payload) as a libpcap file of Ethernet/IPv4/UDP frames
/// from 192.168.0.3:49176 to 192.168.0.1:10000, like SIPp's own `dtmf_2833_*.pcap`: SIPp's
/// `play_pcap_audio` sends the payloads with the recorded timing to the media address of
/// the call.
pub fn write_rtp_pcap(path: &Path, packets: &[(Duration, Vec<u8>)]) -> Result<()> {
    let mut f = Vec::new();
    // Global header: magic, v2.4, GMT, accuracy 0, snaplen 65535, LINKTYPE_ETHERNET.
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    let start = 1_700_000_000u64;
    for (i, (at, payload)) in packets.iter().enumerate() {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0x00, 0x50, 0xbf, 0x99, 0x03, 0x36]);
        frame.extend_from_slice(&[0x00, 0x0d, 0x87, 0x14, 0xac, 0x24]);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0x00];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0x00, 0x00, 64, 17, 0, 0]);
        ip.extend_from_slice(&[192, 168, 0, 3, 192, 168, 0, 1]);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&49176u16.to_be_bytes());
        frame.extend_from_slice(&10000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes());
        frame.extend_from_slice(payload);
        let t = Duration::from_secs(start) + *at;
        f.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        f.extend_from_slice(&t.subsec_micros().to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&frame);
    }
    fs::write(path, f).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_g711_reference_values() {
        // ITU-T G.711 μ-law: 0 → 0xFF, full scale → 0x80 / 0x00, small values near 0xFF/0x7F.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xce);
        assert_eq!(linear_to_ulaw(-1000), 0x4e);
    }

    #[test]
    fn rfc4733_stream_has_marked_events_of_growing_duration_and_three_ends() {
        let packets = pcmu_tone_with_rfc4733(
            500.0,
            Duration::from_millis(100),
            "1#",
            Duration::from_millis(40),
            Duration::from_millis(40),
        );
        let events: Vec<&Vec<u8>> = packets
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p[1] & 0x7f == 101)
            .collect();
        assert_eq!(events.len(), 24);
        assert_eq!(
            events[0][1],
            0x80 | 101,
            "first packet of an event is marked"
        );
        assert_eq!((events[0][12], events[0][13]), (1, 10));
        assert_eq!(u16::from_be_bytes([events[0][14], events[0][15]]), 160);
        let ends: Vec<_> = events[..12].iter().filter(|p| p[13] & 0x80 != 0).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|p| u16::from_be_bytes([p[14], p[15]]) == 1600));
        assert_eq!(events[12][12], 11, "# is event 11");
        // One sequence, 20 ms apart, timestamps of audio packets 160 apart.
        for pair in packets.windows(2) {
            let seq = |p: &Vec<u8>| u16::from_be_bytes([p[2], p[3]]);
            assert_eq!(seq(&pair[1].1), seq(&pair[0].1).wrapping_add(1));
            assert_eq!(pair[1].0 - pair[0].0, Duration::from_millis(20));
        }
        let audio = &packets[0].1;
        assert_eq!((audio[1], audio.len()), (0, 12 + 160));
    }

    #[test]
    fn rtp_pcap_has_the_layout_of_sipps_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let payload = rtp_packet(101, true, 7, 9, 11, &[1, 10, 0, 160]);
        write_rtp_pcap(
            &path,
            &[
                (Duration::ZERO, payload.clone()),
                (Duration::from_millis(20), payload.clone()),
            ],
        )
        .unwrap();
        let ours = fs::read(&path).unwrap();
        let sipps = fs::read("/usr/share/sip-tester/dtmf_2833_1.pcap");
        if let Ok(sipps) = sipps {
            assert_eq!(ours[..24], sipps[..24], "same global header");
            // Same frame headers up to the IP id/checksum: lengths, protocol, addresses, ports.
            let (a, b) = (&ours[40..82], &sipps[40..82]);
            assert_eq!(a[..18], b[..18]);
            assert_eq!(a[20..24], b[20..24]);
            assert_eq!(a[26..40], b[26..40]);
        }
        assert_eq!(&ours[82..82 + payload.len()], &payload[..]);
        assert_eq!(ours.len(), 24 + 2 * (16 + 42 + payload.len()));
    }

    fn entry(header: &str, message: &[u8]) -> Vec<u8> {
        let mut out =
            b"----------------------------------------------- 2026-11-25 11:45:27.975523\n"
                .to_vec();
        out.extend_from_slice(header.replace("N", &message.len().to_string()).as_bytes());
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn message_log_entries_are_split_by_byte_count() {
        let mut log = entry(
            "UDP message received [N] bytes :",
            "MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0\r\nf: <sip:a@b;gr=r1>;tag=1\r\n\
             Content-Length:    5\r\ni: x\r\n\r\nhéé"
                .as_bytes(),
        );
        log.extend(entry(
            "UDP message sent (N bytes):",
            b"SIP/2.0 486 Busy Here\r\nl: 0\r\n\r\n",
        ));
        log.extend_from_slice(b"\n\n-----------------------------------------------\n");
        log.extend_from_slice(b"Unexpected UDP message received:\n\nSIP/2.0 200 OK\r\n\r\n");
        let messages = parse_message_log(&log);
        assert_eq!(messages.len(), 2, "{messages:#?}");
        let request = &messages[0];
        assert!(request.received);
        assert_eq!(request.transport, "UDP");
        assert_eq!(request.method(), Some("MESSAGE"));
        assert_eq!(request.request_uri(), Some("sip:bob@127.0.0.1:5080"));
        assert_eq!(request.header("From"), Some("<sip:a@b;gr=r1>;tag=1"));
        assert_eq!(request.header_uri("from"), Some("sip:a@b;gr=r1"));
        assert_eq!(request.header("Call-ID"), Some("x"));
        assert_eq!(request.body, "héé".as_bytes());
        let response = &messages[1];
        assert!(!response.received);
        assert_eq!(response.status(), Some(486));
        assert_eq!(response.reason(), Some("Busy Here"));
        assert!(response.body.is_empty());
    }

    #[test]
    fn sent_requests_outcome_pairs_each_request_with_its_first_final_status() {
        let request = |call: &str, body: &str| {
            format!(
                "MESSAGE sip:a@b SIP/2.0\r\nCall-ID: {call}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let response = |call: &str, status: &str| {
            format!("SIP/2.0 {status}\r\nCall-ID: {call}\r\nContent-Length: 0\r\n\r\n")
        };
        let mut log = entry(
            "UDP message sent (N bytes):",
            request("c1", "m1").as_bytes(),
        );
        log.extend(entry(
            "UDP message sent (N bytes):",
            request("c2", "m2").as_bytes(),
        ));
        // A retransmission of c1, a provisional response, then the finals.
        log.extend(entry(
            "UDP message sent (N bytes):",
            request("c1", "m1").as_bytes(),
        ));
        log.extend(entry(
            "UDP message received [N] bytes :",
            response("c1", "100 Trying").as_bytes(),
        ));
        log.extend(entry(
            "UDP message received [N] bytes :",
            response("c1", "202 Accepted").as_bytes(),
        ));
        log.extend(entry(
            "UDP message received [N] bytes :",
            response("c1", "200 OK").as_bytes(),
        ));
        log.extend(entry(
            "UDP message sent (N bytes):",
            request("c3", "m3").as_bytes(),
        ));
        log.extend(entry(
            "UDP message received [N] bytes :",
            response("c3", "200 OK").as_bytes(),
        ));
        let run = SippRun {
            exit_code: Some(1),
            successful: 2,
            failed: 1,
            messages: parse_message_log(&log),
            errors: String::new(),
            screen: String::new(),
        };
        assert_eq!(
            run.sent_requests_outcome(),
            vec![
                ("c1".to_string(), "m1".to_string(), Some(202)),
                ("c2".to_string(), "m2".to_string(), None),
                ("c3".to_string(), "m3".to_string(), Some(200)),
            ]
        );
    }

    #[test]
    fn stats_columns_are_found_by_name() {
        let csv = "A;SuccessfulCall(C);FailedCall(C);\n1;0;0;\n2;7;3;\n";
        assert_eq!(parse_stats(csv), (7, 3));
        assert_eq!(parse_stats(""), (0, 0));
    }
}
