//! A real XMPP client (RFC 6120 c2s, RFC 6121 IM) for one test: slixmpp in
//! `tests/peers/xmpp_client.py`, driven over JSON lines on its stdin/stdout.
//!
//! Test steps read like biboumi's `send_stanza` / `expect_stanza`:
//! [`XmppClient::send_raw`] writes a stanza; [`XmppClient::expect`] waits for the first
//! received stanza matching a predicate. Stanzas that did not match stay queued for later
//! `expect`s, so a test does not depend on the order of unrelated stanzas.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use minidom::{Element, NSChoice};

use crate::process::{tail, temp_dir, Process};
use crate::{crate_path, Prosody};

/// `jabber:client`.
pub const NS_CLIENT: &str = "jabber:client";
/// RFC 6120 §8.3.3 stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The Python interpreter with `python3-slixmpp` (Debian's, not a pyenv shim).
fn python() -> PathBuf {
    std::env::var_os("STOX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

/// A XEP-0004 form of `type='submit'` with one value per field.
pub fn data_form_submit(fields: &[(&str, &str)]) -> String {
    let f: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<field var='{}'><value>{}</value></field>",
                xml_escape(k),
                xml_escape(v)
            )
        })
        .collect();
    format!("<x xmlns='jabber:x:data' type='submit'>{f}</x>")
}

/// Escapes text for XML character data and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A stanza received by an [`XmppClient`]: its XML text and, when it parses, the element.
#[derive(Clone, Debug)]
pub struct Stanza {
    xml: String,
    element: Option<Element>,
}

impl Stanza {
    /// Parses `xml` (kept as text even if it does not parse).
    pub fn new(xml: String) -> Stanza {
        let element = xml.parse::<Element>().ok();
        Stanza { xml, element }
    }

    /// The XML text as received.
    pub fn xml(&self) -> &str {
        &self.xml
    }

    /// The parsed element, if the XML parsed.
    pub fn element(&self) -> Option<&Element> {
        self.element.as_ref()
    }

    /// `message`, `presence` or `iq`.
    pub fn name(&self) -> &str {
        self.element.as_ref().map(Element::name).unwrap_or("")
    }

    /// An attribute of the top element.
    pub fn attr<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.element.as_ref().and_then(|e| e.attr(name))
    }

    /// `from`.
    pub fn from(&self) -> Option<&str> {
        self.attr("from")
    }

    /// `to`.
    pub fn to(&self) -> Option<&str> {
        self.attr("to")
    }

    /// `type`.
    pub fn kind(&self) -> Option<&str> {
        self.attr("type")
    }

    /// `id`.
    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }

    /// Whether this is a `<message/>`.
    pub fn is_message(&self) -> bool {
        self.name() == "message"
    }

    /// A direct child by name, in any namespace.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.element
            .as_ref()
            .and_then(|e| e.get_child(name, NSChoice::Any))
    }

    /// The text of `<body/>`.
    pub fn body(&self) -> Option<String> {
        self.child("body").map(Element::text)
    }

    /// The text of `<subject/>`.
    pub fn subject(&self) -> Option<String> {
        self.child("subject").map(Element::text)
    }

    /// The text of `<thread/>`.
    pub fn thread(&self) -> Option<String> {
        self.child("thread").map(Element::text)
    }

    /// Whether this is a `<presence/>`.
    pub fn is_presence(&self) -> bool {
        self.name() == "presence"
    }

    /// RFC 6121 §4.7.2.1: the text of `<show/>` (away, chat, dnd, xa).
    pub fn show(&self) -> Option<String> {
        self.child("show").map(Element::text)
    }

    /// RFC 6121 §4.7.2.2: the text of `<status/>`.
    pub fn status(&self) -> Option<String> {
        self.child("status").map(Element::text)
    }

    /// RFC 6121 §4.7.2.3: `<priority/>`.
    pub fn priority(&self) -> Option<i8> {
        self.child("priority")?.text().trim().parse().ok()
    }

    /// RFC 6120 §8.3: the defined condition of `<error/>` (e.g. `item-not-found`).
    pub fn error_condition(&self) -> Option<String> {
        self.child("error")?
            .children()
            .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
            .map(|c| c.name().to_string())
    }

    /// RFC 6120 §8.3.2: the error `type` (cancel, wait, modify, auth, continue).
    pub fn error_type(&self) -> Option<&str> {
        self.child("error")?.attr("type")
    }

    /// RFC 6120 §8.3.4: the error `<text/>`.
    pub fn error_text(&self) -> Option<String> {
        self.child("error")?
            .get_child("text", NS_STANZAS)
            .map(Element::text)
    }
}

enum Event {
    Online,
    Stanza(Stanza),
    Error(String),
    Offline,
}

/// How an [`XmppClient`] behaves beyond the defaults of [`XmppClient::connect`].
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Reconnect (every 0.2 s) when the stream closes, e.g. across [`Prosody::restart`],
    /// instead of exiting. Each new session sends initial presence again; stanzas sent
    /// while offline go out once it has started. See [`XmppClient::sessions`].
    pub reconnect: bool,
    /// The priority of the initial presence (RFC 6121 §4.7.2.3), default 0.
    pub priority: i8,
    /// Leave subscription requests to the test (RFC 6121 §3.1): slixmpp neither approves
    /// them (roster `auto_authorize`) nor subscribes back (`auto_subscribe`), which it does
    /// by default. Answer with [`XmppClient::approve`] or [`XmppClient::deny`].
    pub manual_subscriptions: bool,
}

/// `jabber:iq:roster`.
pub const NS_ROSTER: &str = "jabber:iq:roster";

/// One roster item (RFC 6121 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// `jid`.
    pub jid: String,
    /// `subscription`: `none`, `to`, `from` or `both` (`none` when absent).
    pub subscription: String,
    /// `ask='subscribe'` while a subscription request is pending.
    pub ask: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// A logged-in XMPP client. `Drop` kills the helper by PID.
pub struct XmppClient {
    jid: String,
    /// Counter for the ids of the iqs this harness sends.
    next_iq: u64,
    /// Sessions started so far (1 after `connect`; more after reconnects).
    sessions: usize,
    /// Stream closures seen so far.
    closures: usize,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    backlog: VecDeque<Stanza>,
    log: PathBuf,
    process: Process,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for XmppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppClient")
            .field("jid", &self.jid)
            .finish()
    }
}

impl XmppClient {
    /// Logs `user@domain/resource` into `prosody` (c2s, SASL, no TLS), sends initial presence
    /// and returns once the session is established.
    pub fn connect(
        prosody: &Prosody,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<XmppClient> {
        XmppClient::connect_with(prosody, user, password, resource, ClientOptions::default())
    }

    /// [`XmppClient::connect`] with `options` (e.g. reconnecting across a server restart).
    pub fn connect_with(
        prosody: &Prosody,
        user: &str,
        password: &str,
        resource: &str,
        options: ClientOptions,
    ) -> Result<XmppClient> {
        let jid = format!("{user}@{}/{resource}", prosody.domain());
        let dir = temp_dir("xmpp")?;
        let log = dir.path().join("slixmpp.log");
        let stderr = std::fs::File::create(&log)?;
        let script = crate_path("peers/xmpp_client.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .args(["--jid", &jid, "--password", password, "--host", "127.0.0.1"])
            .args(["--port", &prosody.c2s_addr().port().to_string()])
            .args(["--priority", &options.priority.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if options.reconnect {
            cmd.arg("--reconnect");
        }
        if options.manual_subscriptions {
            cmd.arg("--manual-subscriptions");
        }
        if std::env::var_os("STOX_TEST_XMPP_DEBUG").is_some() {
            cmd.arg("--debug");
        }
        let mut process = Process::spawn("xmpp_client.py", cmd)?;
        let stdin = process.child_mut().stdin.take();
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => match v["event"].as_str() {
                        Some("online") => Event::Online,
                        Some("stanza") => {
                            Event::Stanza(Stanza::new(v["xml"].as_str().unwrap_or("").to_string()))
                        }
                        Some("offline") => Event::Offline,
                        _ => Event::Error(v["text"].as_str().unwrap_or(&line).to_string()),
                    },
                    Err(_) => Event::Error(format!("bad line from helper: {line}")),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut client = XmppClient {
            jid,
            next_iq: 0,
            sessions: 0,
            closures: 0,
            stdin,
            events,
            backlog: VecDeque::new(),
            log,
            process,
            _dir: dir,
        };
        client.wait_online(Duration::from_secs(20))?;
        Ok(client)
    }

    fn wait_online(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Online) => {
                    self.sessions += 1;
                    return Ok(());
                }
                // Messages can arrive before "online": offline storage is
                // flushed as soon as the initial presence is processed, and
                // the helper reports "online" only after a ping round trip.
                // So can presences (subscription requests kept while offline,
                // RFC 6121 §3.1.3). Keep both; the bind and roster results are
                // not part of any test.
                Ok(Event::Stanza(stanza)) => {
                    if matches!(stanza.name(), "message" | "presence") {
                        self.backlog.push_back(stanza);
                    }
                }
                Ok(Event::Error(text)) => {
                    bail!(
                        "{}: {text}\n--- slixmpp log ---\n{}",
                        self.jid,
                        tail(&self.log, 30)
                    )
                }
                Ok(Event::Offline) | Err(RecvTimeoutError::Disconnected) => bail!(
                    "{}: helper went away before the session started\n--- slixmpp log ---\n{}",
                    self.jid,
                    tail(&self.log, 30)
                ),
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{}: not online after {timeout:?}\n--- slixmpp log ---\n{}",
                    self.jid,
                    tail(&self.log, 30)
                ),
            }
        }
    }

    /// The full JID, e.g. `alice@localhost/phone`.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The bare JID, e.g. `alice@localhost`.
    pub fn bare_jid(&self) -> &str {
        self.jid.split('/').next().unwrap_or(&self.jid)
    }

    /// The resource.
    pub fn resource(&self) -> &str {
        self.jid.split_once('/').map(|(_, r)| r).unwrap_or("")
    }

    /// Sessions started so far, as far as the events read up to now tell: 1 after
    /// [`XmppClient::connect`], one more after each reconnect ([`ClientOptions::reconnect`]).
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Stream closures seen so far (as far as the events read up to now tell).
    pub fn closures(&self) -> usize {
        self.closures
    }

    /// Waits until at least `n` sessions have started (see [`XmppClient::sessions`]);
    /// stanzas received meanwhile stay queued for later `expect`s.
    pub fn wait_sessions(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.sessions < n {
            if Instant::now() >= deadline {
                bail!(
                    "{}: {} session(s) after {timeout:?}, expected {n}\n--- slixmpp log ---\n{}",
                    self.jid,
                    self.sessions,
                    tail(&self.log, 30)
                );
            }
            // Short slices, so a session start right after a stanza is noticed at once.
            let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
            if let Some(stanza) = self.next_event_until(slice) {
                self.backlog.push_back(stanza);
            }
        }
        Ok(())
    }

    /// The helper's stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends one stanza as raw XML (Prosody stamps `from`).
    pub fn send_raw(&mut self, xml: &str) -> Result<()> {
        let line = serde_json::json!({"cmd": "send", "xml": xml}).to_string();
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{} is disconnected", self.jid))?;
        writeln!(stdin, "{line}").context("writing to the XMPP helper")?;
        stdin.flush()?;
        Ok(())
    }

    /// Sends `<message to=TO type='chat'><body>BODY</body></message>` (escaped).
    pub fn send_message(&mut self, to: &str, body: &str) -> Result<()> {
        self.send_raw(&format!(
            "<message to='{}' type='chat'><body>{}</body></message>",
            xml_escape(to),
            xml_escape(body)
        ))
    }

    fn send_presence_type(&mut self, to: &str, kind: &str) -> Result<()> {
        self.send_raw(&format!(
            "<presence to='{}' type='{kind}'/>",
            xml_escape(to)
        ))
    }

    /// RFC 6121 §3.1.1: asks `jid` for a subscription to its presence
    /// (`<presence type='subscribe'/>`).
    pub fn subscribe(&mut self, jid: &str) -> Result<()> {
        self.send_presence_type(jid, "subscribe")
    }

    /// RFC 6121 §3.1.4: approves `jid`'s subscription request (`type='subscribed'`).
    pub fn approve(&mut self, jid: &str) -> Result<()> {
        self.send_presence_type(jid, "subscribed")
    }

    /// RFC 6121 §3.1.4 / §3.2: refuses `jid`'s subscription request, or cancels the
    /// subscription `jid` has (`type='unsubscribed'`).
    pub fn deny(&mut self, jid: &str) -> Result<()> {
        self.send_presence_type(jid, "unsubscribed")
    }

    /// RFC 6121 §3.3: ends this user's subscription to `jid` (`type='unsubscribe'`).
    pub fn unsubscribe(&mut self, jid: &str) -> Result<()> {
        self.send_presence_type(jid, "unsubscribe")
    }

    /// RFC 6121 §4.4: broadcasts available presence with `show` (away, chat, dnd, xa),
    /// `status` and `priority`.
    pub fn set_presence(
        &mut self,
        show: Option<&str>,
        status: Option<&str>,
        priority: i8,
    ) -> Result<()> {
        let mut xml = String::from("<presence>");
        if let Some(show) = show {
            xml.push_str(&format!("<show>{}</show>", xml_escape(show)));
        }
        if let Some(status) = status {
            xml.push_str(&format!("<status>{}</status>", xml_escape(status)));
        }
        xml.push_str(&format!("<priority>{priority}</priority></presence>"));
        self.send_raw(&xml)
    }

    /// RFC 6121 §4.5: broadcasts unavailable presence (the session stays open).
    pub fn set_unavailable(&mut self, status: Option<&str>) -> Result<()> {
        match status {
            Some(status) => self.send_raw(&format!(
                "<presence type='unavailable'><status>{}</status></presence>",
                xml_escape(status)
            )),
            None => self.send_raw("<presence type='unavailable'/>"),
        }
    }

    /// The first `<presence/>` (queued or new, within `timeout`) whose `from` starts with
    /// `from_prefix` (a bare JID matches all its resources) and whose `type` is `kind`
    /// (`None`: available presence, which has no `type`; else `subscribe`, `subscribed`,
    /// `unavailable`, `unsubscribed`, `error`, ...).
    pub fn expect_presence(
        &mut self,
        from_prefix: &str,
        kind: Option<&str>,
        timeout: Duration,
    ) -> Result<Stanza> {
        self.expect(timeout, |s| {
            s.is_presence()
                && s.from().is_some_and(|f| f.starts_with(from_prefix))
                && s.kind() == kind
        })
        .with_context(|| format!("waiting for presence {kind:?} from {from_prefix}"))
    }

    /// RFC 6121 §2.2: the roster (`<iq type='get'><query xmlns='jabber:iq:roster'/>`).
    pub fn roster(&mut self, timeout: Duration) -> Result<Vec<RosterItem>> {
        self.next_iq += 1;
        let id = format!("roster-{}", self.next_iq);
        self.send_raw(&format!(
            "<iq type='get' id='{id}'><query xmlns='{NS_ROSTER}'/></iq>"
        ))?;
        let result = self.expect(timeout, |s| s.name() == "iq" && s.id() == Some(&id))?;
        if result.kind() != Some("result") {
            bail!("roster query refused: {}", result.xml());
        }
        let Some(query) = result.child("query") else {
            return Ok(Vec::new());
        };
        Ok(query
            .children()
            .filter(|c| c.name() == "item")
            .map(|item| RosterItem {
                jid: item.attr("jid").unwrap_or_default().to_string(),
                subscription: item.attr("subscription").unwrap_or("none").to_string(),
                ask: item.attr("ask").map(str::to_string),
                name: item.attr("name").map(str::to_string),
            })
            .collect())
    }

    /// Sends `<iq type=KIND to=TO>PAYLOAD</iq>` with a fresh id and returns the answer with
    /// that id (a result or an error), within `timeout`.
    pub fn iq(&mut self, kind: &str, to: &str, payload: &str, timeout: Duration) -> Result<Stanza> {
        self.next_iq += 1;
        let id = format!("iq-{}", self.next_iq);
        self.send_raw(&format!(
            "<iq type='{kind}' id='{id}' to='{}'>{payload}</iq>",
            xml_escape(to)
        ))?;
        self.expect(timeout, |s| s.name() == "iq" && s.id() == Some(&id))
    }

    /// XEP-0077: registers with `to` by submitting a XEP-0004 form with `fields`
    /// (`jabber:iq:register`); returns the answer.
    pub fn register_with_form(
        &mut self,
        to: &str,
        fields: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Stanza> {
        let payload = format!(
            "<query xmlns='jabber:iq:register'>{}</query>",
            data_form_submit(fields)
        );
        self.iq("set", to, &payload, timeout)
    }

    /// XEP-0050: executes command `node` at `to`, with a submitted form when `fields` is
    /// given (`action='complete'`), else `action='execute'`; returns the answer.
    pub fn command(
        &mut self,
        to: &str,
        node: &str,
        fields: Option<&[(&str, &str)]>,
        timeout: Duration,
    ) -> Result<Stanza> {
        let payload = match fields {
            Some(f) => format!(
                "<command xmlns='http://jabber.org/protocol/commands' node='{}' action='complete'>{}</command>",
                xml_escape(node),
                data_form_submit(f)
            ),
            None => format!(
                "<command xmlns='http://jabber.org/protocol/commands' node='{}' action='execute'/>",
                xml_escape(node)
            ),
        };
        self.iq("set", to, &payload, timeout)
    }

    fn next_event_until(&mut self, deadline: Instant) -> Option<Stanza> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Stanza(stanza)) => return Some(stanza),
                Ok(Event::Error(text)) => eprintln!("[{}] helper error: {text}", self.jid),
                Ok(Event::Online) => self.sessions += 1,
                Ok(Event::Offline) => {
                    self.closures += 1;
                    eprintln!("[{}] stream closed", self.jid);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The helper is gone: nothing more will arrive.
                    thread::sleep(left);
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
    }

    /// The first received stanza (queued or new) matching `pred`, within `timeout`.
    /// Non-matching stanzas stay queued. On timeout, the error lists what did arrive.
    pub fn expect(&mut self, timeout: Duration, pred: impl Fn(&Stanza) -> bool) -> Result<Stanza> {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            // `pos` comes from `position` on the same deque, so it is in range.
            if let Some(stanza) = self.backlog.remove(pos) {
                return Ok(stanza);
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(stanza) = self.next_event_until(deadline) {
            if pred(&stanza) {
                return Ok(stanza);
            }
            self.backlog.push_back(stanza);
        }
        let seen: Vec<&str> = self.backlog.iter().map(Stanza::xml).collect();
        bail!(
            "{}: no matching stanza within {timeout:?}; received meanwhile:\n  {}",
            self.jid,
            seen.join("\n  ")
        )
    }

    /// The first `<message/>` received (any type, errors included).
    pub fn expect_message(&mut self, timeout: Duration) -> Result<Stanza> {
        self.expect(timeout, Stanza::is_message)
    }

    /// `n` received stanzas matching `pred`, in arrival order.
    pub fn collect_matching(
        &mut self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Stanza) -> bool,
    ) -> Result<Vec<Stanza>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.expect(left, &pred) {
                Ok(stanza) => out.push(stanza),
                Err(err) => bail!("got {} of {n} stanzas: {err}", out.len()),
            }
        }
        Ok(out)
    }

    /// `n` received `<message/>` stanzas, in arrival order.
    pub fn collect(&mut self, n: usize, timeout: Duration) -> Result<Vec<Stanza>> {
        self.collect_matching(n, timeout, Stanza::is_message)
    }

    /// Everything received so far and not yet consumed by an `expect` (waits `settle` first).
    pub fn drain(&mut self, settle: Duration) -> Vec<Stanza> {
        let deadline = Instant::now() + settle;
        while let Some(stanza) = self.next_event_until(deadline) {
            self.backlog.push_back(stanza);
        }
        self.backlog.drain(..).collect()
    }

    /// Closes the stream politely and waits for the helper to exit.
    pub fn disconnect(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", serde_json::json!({"cmd": "quit"}));
        }
        if self.process.wait_timeout(Duration::from_secs(5)).is_none() {
            self.process.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_accessors_read_slixmpp_output() {
        let s = Stanza::new(
            "<message xmlns=\"jabber:client\" type=\"error\" from=\"b@x\" id=\"m1\">\
             <body>h\u{e9} &lt;&amp;&gt;</body><error type=\"cancel\">\
             <item-not-found xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\">Not Found</text></error></message>"
                .to_string(),
        );
        assert!(s.is_message());
        assert_eq!(s.kind(), Some("error"));
        assert_eq!(s.from(), Some("b@x"));
        assert_eq!(s.body().as_deref(), Some("h\u{e9} <&>"));
        assert_eq!(s.error_condition().as_deref(), Some("item-not-found"));
        assert_eq!(s.error_type(), Some("cancel"));
        assert_eq!(s.error_text().as_deref(), Some("Not Found"));
    }

    #[test]
    fn xml_escape_covers_markup_characters() {
        assert_eq!(
            xml_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
