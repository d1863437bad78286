//! A real XMPP call client for one test: StanzaJS 12 (XEP-0166 Jingle, XEP-0167 RTP, XEP-0176
//! ICE-UDP, XEP-0320 DTLS-SRTP) on libwebrtc (`@roamhq/wrtc`), with its own XEP-0353 (Jingle
//! Message Initiation) layer: `tests/peers/jingle/jingle_peer.js`, driven over JSON lines on
//! its stdin/stdout like [`crate::XmppClient`].
//!
//! The peer logs into Prosody over WebSocket (RFC 7395; start Prosody with
//! `ProsodyOptions { websocket: true, .. }`), sends a sine tone of its own frequency as its
//! microphone and reports what it hears (dominant frequency and RMS, once per second).
//! Every Jingle and JMI stanza it sends or receives, and every SDP libwebrtc produced or was
//! given, goes to a capture log ([`JinglePeer::capture_log`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use stox_tests::jingle_peer::{CallOptions, JinglePeer, PeerOptions};
//! use stox_tests::{Prosody, ProsodyOptions, PASSWORD};
//!
//! let prosody = Prosody::start(ProsodyOptions { websocket: true, ..Default::default() }).unwrap();
//! let mut a = JinglePeer::connect(&prosody, "alice", PASSWORD, "a", PeerOptions::tone(440)).unwrap();
//! let mut b = JinglePeer::connect(&prosody, "bob", PASSWORD, "b", PeerOptions::tone(660)).unwrap();
//! let sid = a.call("bob@localhost", CallOptions::jmi()).unwrap();
//! a.wait_connected(&sid, Duration::from_secs(10)).unwrap();
//! let heard = a.wait_tone(&sid, 660.0, 10.0, 0.05, Duration::from_secs(10)).unwrap();
//! assert!((heard.freq - 660.0).abs() < 10.0);
//! a.hangup(&sid).unwrap();
//! b.expect_event("terminated", &sid, Duration::from_secs(5)).unwrap();
//! ```

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::process::{tail, temp_dir, wait_for_tcp, Process};
use crate::{crate_path, Prosody};

/// The peer's directory (`tests/peers/jingle`).
pub fn peer_dir() -> PathBuf {
    crate_path("peers/jingle")
}

/// The Node.js binary (`STOX_TEST_NODE`, default `node` from `PATH`).
fn node() -> PathBuf {
    std::env::var_os("STOX_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Makes sure the peer's npm packages are installed: runs `npm ci` in `tests/peers/jingle`
/// (exact versions from `package-lock.json`) when `node_modules` lacks them, e.g. in a fresh
/// clone. Serialised within this process, so parallel tests install once.
pub fn ensure_installed() -> Result<()> {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = peer_dir();
    let modules = dir.join("node_modules");
    if modules.join("stanza/package.json").is_file()
        && modules.join("@roamhq/wrtc/package.json").is_file()
    {
        return Ok(());
    }
    crate::process::npm_ci(&dir)
}

/// The WebSocket URL (RFC 7395) of a Prosody started with `websocket: true`.
pub fn websocket_url(prosody: &Prosody) -> String {
    format!("ws://127.0.0.1:{}/xmpp-websocket", prosody.http_port())
}

/// How the peer answers calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Answer {
    /// On `<propose>`: `<ringing/>` then `<proceed/>` at once; a direct `session-initiate` is
    /// accepted at once.
    #[default]
    Auto,
    /// On `<propose>`: `<ringing/>` only; a direct `session-initiate` gets `session-info`
    /// `<ringing/>`. The test then calls [`JinglePeer::proceed`], [`JinglePeer::accept`] or
    /// [`JinglePeer::reject`].
    Manual,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Auto => "auto",
            Answer::Manual => "manual",
        }
    }
}

/// Options of a [`JinglePeer`].
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// Frequency of the tone the peer sends (Hz); 0 sends silence.
    pub tone_hz: u32,
    /// Amplitude of the tone, full scale 1.0 (RMS is amplitude / √2).
    pub amplitude: f64,
    /// How it answers calls.
    pub answer: Answer,
    /// Codecs it offers and answers with (`a=rtpmap` encoding names, e.g. `["opus"]`,
    /// `["PCMU"]`); empty: all of libwebrtc's.
    pub codecs: Vec<String>,
    /// Interval of `audio` reports (ms).
    pub report_ms: u32,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            tone_hz: 440,
            amplitude: 0.3,
            answer: Answer::Auto,
            codecs: Vec::new(),
            report_ms: 1000,
        }
    }
}

impl PeerOptions {
    /// Defaults with a tone of `hz`.
    pub fn tone(hz: u32) -> Self {
        PeerOptions {
            tone_hz: hz,
            ..PeerOptions::default()
        }
    }

    /// With `answer`.
    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }
}

/// How [`JinglePeer::call`] places a call.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// XEP-0353: `<propose>` to the (bare) JID, `session-initiate` to the full JID that sends
    /// `<proceed>`. Without it, `session-initiate` goes straight to `to` (a full JID).
    pub jmi: bool,
    /// Codecs offered in this call (see [`PeerOptions::codecs`]); `None`: the peer's setting.
    pub codecs: Option<Vec<String>>,
}

impl CallOptions {
    /// A XEP-0353 call with the peer's codecs.
    pub fn jmi() -> Self {
        CallOptions {
            jmi: true,
            codecs: None,
        }
    }

    /// A direct `session-initiate` to a full JID.
    pub fn direct() -> Self {
        CallOptions {
            jmi: false,
            codecs: None,
        }
    }

    /// Offer only `codecs` (e.g. `&["opus"]`, `&["PCMU"]`).
    pub fn codecs(mut self, codecs: &[&str]) -> Self {
        self.codecs = Some(codecs.iter().map(|c| c.to_string()).collect());
        self
    }
}

/// One event line of the peer (see `tests/peers/jingle/README.md`), e.g.
/// `{"event":"terminated","sid":"…","reason":"success","by":"remote"}`.
#[derive(Clone, Debug)]
pub struct PeerEvent {
    /// The whole JSON object.
    pub value: Value,
}

impl PeerEvent {
    /// `event`.
    pub fn kind(&self) -> &str {
        self.value["event"].as_str().unwrap_or("")
    }

    /// `sid` (the XEP-0353 id, which is also the Jingle sid).
    pub fn sid(&self) -> Option<&str> {
        self.value["sid"].as_str()
    }

    /// A string field.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.value[field].as_str()
    }

    /// A number field.
    pub fn f64(&self, field: &str) -> Option<f64> {
        self.value[field].as_f64()
    }
}

impl std::fmt::Display for PeerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value)
    }
}

/// One analysis window of received audio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heard {
    /// Dominant frequency (Hz).
    pub freq: f64,
    /// RMS, full scale 1.0.
    pub rms: f64,
    /// Sample rate libwebrtc delivered (48000 for Opus, 8000 for PCMU).
    pub rate: u32,
}

/// A call as the `stats` command reports it.
#[derive(Clone, Debug)]
pub struct CallStats {
    /// The sid.
    pub sid: String,
    /// The JID the Jingle session runs with.
    pub peer: String,
    /// Call state (`proposed`, `ringing`, `proceeded`, `active`, `ended`, ...).
    pub state: String,
    /// The received audio codec from libwebrtc's stats, e.g. `audio/opus`, `audio/PCMU`.
    pub codec: Option<String>,
    /// RTP packets received.
    pub packets_received: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// The last analysis window.
    pub heard: Option<Heard>,
    /// DTMF keys heard so far on this call, in order (see [`JinglePeer::expect_dtmf`]).
    pub dtmf: String,
}

/// An entry of the capture log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Captured {
    /// A Jingle or JMI stanza as written on / read from the WebSocket.
    Stanza {
        /// `"in"` or `"out"`.
        dir: String,
        /// The stanza's XML.
        xml: String,
    },
    /// An SDP libwebrtc produced (`"local"`) or was given (`"remote"`).
    Sdp {
        /// `"local"` or `"remote"`.
        dir: String,
        /// The session.
        sid: String,
        /// `"offer"` or `"answer"`.
        kind: String,
        /// The SDP text.
        sdp: String,
    },
}

enum Line {
    Event(PeerEvent),
    Garbage(String),
}

/// A running call client. `Drop` kills it by PID.
pub struct JinglePeer {
    jid: String,
    stdin: Option<ChildStdin>,
    events: Receiver<Line>,
    backlog: VecDeque<PeerEvent>,
    /// `call` commands sent so far (their `tag`).
    calls_placed: u64,
    stderr_log: PathBuf,
    capture: PathBuf,
    process: Process,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for JinglePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinglePeer")
            .field("jid", &self.jid)
            .finish()
    }
}

impl JinglePeer {
    /// Logs `user@domain/resource` into `prosody` over WebSocket, sends initial presence and
    /// returns once the server has processed it (`online`).
    pub fn connect(
        prosody: &Prosody,
        user: &str,
        password: &str,
        resource: &str,
        opts: PeerOptions,
    ) -> Result<JinglePeer> {
        ensure_installed()?;
        wait_for_tcp(
            std::net::SocketAddr::from(([127, 0, 0, 1], prosody.http_port())),
            Duration::from_secs(10),
        )
        .context("Prosody's HTTP port (start it with ProsodyOptions { websocket: true, .. })")?;
        let jid = format!("{user}@{}/{resource}", prosody.domain());
        let dir = temp_dir("jingle")?;
        let stderr_log = dir.path().join("peer.stderr");
        let capture = dir.path().join("jingle.jsonl");
        let mut cmd = Command::new(node());
        cmd.arg(peer_dir().join("jingle_peer.js"))
            .args(["--jid", &jid, "--password", password])
            .args(["--url", &websocket_url(prosody)])
            .args(["--tone", &opts.tone_hz.to_string()])
            .args(["--amplitude", &opts.amplitude.to_string()])
            .args(["--answer", opts.answer.as_str()])
            .args(["--report-ms", &opts.report_ms.to_string()])
            .arg("--log")
            .arg(&capture)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?);
        if !opts.codecs.is_empty() {
            cmd.args(["--codecs", &opts.codecs.join(",")]);
        }
        if std::env::var_os("STOX_TEST_JINGLE_DEBUG").is_some() {
            cmd.arg("--debug");
        }
        let mut process = Process::spawn("jingle_peer.js", cmd)?;
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
                let item = match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.is_object() => Line::Event(PeerEvent { value }),
                    _ => Line::Garbage(line),
                };
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        let mut peer = JinglePeer {
            jid,
            stdin,
            events,
            backlog: VecDeque::new(),
            calls_placed: 0,
            stderr_log,
            capture,
            process,
            _dir: dir,
        };
        peer.expect(Duration::from_secs(30), |e| e.kind() == "online")
            .with_context(|| format!("{} did not come online", peer.jid))?;
        Ok(peer)
    }

    /// The full JID, e.g. `alice@localhost/a`.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The bare JID, e.g. `alice@localhost`.
    pub fn bare_jid(&self) -> &str {
        self.jid.split('/').next().unwrap_or(&self.jid)
    }

    /// The peer's stderr (StanzaJS debug output with `STOX_TEST_JINGLE_DEBUG=1`).
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_log
    }

    /// The capture log file (JSON lines, see [`JinglePeer::capture_log`]).
    pub fn capture_path(&self) -> &Path {
        &self.capture
    }

    /// The PID of the Node.js process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn command(&mut self, cmd: Value) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{} has quit", self.jid))?;
        writeln!(stdin, "{cmd}").context("writing to the Jingle peer")?;
        stdin.flush()?;
        Ok(())
    }

    /// Places a call to `to` and returns its sid (the peer then reports `proposed` for JMI,
    /// or `outgoing` once the `session-initiate` is on its way).
    pub fn call(&mut self, to: &str, opts: CallOptions) -> Result<String> {
        self.calls_placed += 1;
        let tag = self.calls_placed;
        let mut cmd = json!({"cmd": "call", "to": to, "jmi": opts.jmi, "tag": tag});
        if let Some(codecs) = opts.codecs {
            cmd["codecs"] = json!(codecs);
        }
        self.command(cmd)?;
        let event = self.expect(Duration::from_secs(10), |e| {
            e.kind() == "calling" && e.value["tag"].as_u64() == Some(tag)
        })?;
        event
            .sid()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{event} has no sid"))
    }

    /// XEP-0353: `<proceed/>` to a proposal received in [`Answer::Manual`] mode.
    pub fn proceed(&mut self, sid: &str) -> Result<()> {
        self.command(json!({"cmd": "proceed", "sid": sid}))
    }

    /// Rejects a call: XEP-0353 `<reject/>` with a `<reason/>` (`decline`, `busy`, ...) for a
    /// proposal, or `session-terminate` with that reason for a direct `session-initiate`.
    pub fn reject(&mut self, sid: &str, reason: &str) -> Result<()> {
        self.command(json!({"cmd": "reject", "sid": sid, "reason": reason}))
    }

    /// XEP-0353: `<retract/>` (reason `cancel`) of our proposal.
    pub fn retract(&mut self, sid: &str) -> Result<()> {
        self.command(json!({"cmd": "retract", "sid": sid}))
    }

    /// Accepts a direct `session-initiate` received in [`Answer::Manual`] mode.
    pub fn accept(&mut self, sid: &str) -> Result<()> {
        self.command(json!({"cmd": "accept", "sid": sid}))
    }

    /// Hangs up: `session-terminate` with `<success/>`.
    pub fn hangup(&mut self, sid: &str) -> Result<()> {
        self.command(json!({"cmd": "hangup", "sid": sid}))
    }

    /// Ends call `sid` with `session-terminate` carrying `reason` (XEP-0166 §7.4: `cancel`
    /// for a call not answered yet, `success`, `busy`, `decline`, ...).
    pub fn hangup_with(&mut self, sid: &str, reason: &str) -> Result<()> {
        self.command(json!({"cmd": "hangup", "sid": sid, "reason": reason}))
    }

    /// Changes how later calls are answered.
    pub fn set_answer(&mut self, answer: Answer) -> Result<()> {
        self.command(json!({"cmd": "set", "answer": answer.as_str()}))?;
        self.expect(Duration::from_secs(5), |e| e.kind() == "set")?;
        Ok(())
    }

    /// Whether the `session-initiate` that follows our XEP-0353 `<proceed/>` is accepted at
    /// once (the default) or, with `false`, rings (session-info `<ringing/>`) until
    /// [`JinglePeer::accept`], so a test can act between session-initiate and session-accept.
    pub fn set_accept_proceeded(&mut self, yes: bool) -> Result<()> {
        self.command(json!({"cmd": "set", "accept_proceeded": yes}))?;
        self.expect(Duration::from_secs(5), |e| e.kind() == "set")?;
        Ok(())
    }

    /// Changes the codecs of later offers and answers (empty: all).
    pub fn set_codecs(&mut self, codecs: &[&str]) -> Result<()> {
        self.command(json!({"cmd": "set", "codecs": codecs}))?;
        self.expect(Duration::from_secs(5), |e| e.kind() == "set")?;
        Ok(())
    }

    /// Sends a raw stanza on the stream.
    pub fn send_raw(&mut self, xml: &str) -> Result<()> {
        self.command(json!({"cmd": "send", "xml": xml}))
    }

    fn next_until(&mut self, deadline: Instant) -> Option<PeerEvent> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Line::Event(event)) => {
                    if matches!(event.kind(), "error" | "log") {
                        eprintln!("[{}] {event}", self.jid);
                    }
                    return Some(event);
                }
                Ok(Line::Garbage(line)) => eprintln!("[{}] stdout: {line}", self.jid),
                Err(RecvTimeoutError::Disconnected) => {
                    thread::sleep(left);
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
    }

    /// The first event (queued or new) matching `pred` within `timeout`; others stay queued.
    /// On timeout the error lists what arrived and the peer's stderr.
    pub fn expect(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&PeerEvent) -> bool,
    ) -> Result<PeerEvent> {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            // `pos` comes from `position` on the same deque, so it is in range.
            if let Some(event) = self.backlog.remove(pos) {
                return Ok(event);
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(event) = self.next_until(deadline) {
            if pred(&event) {
                return Ok(event);
            }
            self.backlog.push_back(event);
        }
        let seen: Vec<String> = self
            .backlog
            .iter()
            .filter(|e| e.kind() != "audio")
            .map(ToString::to_string)
            .collect();
        bail!(
            "{}: no matching event within {timeout:?}; received meanwhile:\n  {}\n--- stderr ---\n{}",
            self.jid,
            seen.join("\n  "),
            tail(&self.stderr_log, 20)
        )
    }

    /// The first `kind` event of call `sid`.
    pub fn expect_event(&mut self, kind: &str, sid: &str, timeout: Duration) -> Result<PeerEvent> {
        self.expect(timeout, |e| e.kind() == kind && e.sid() == Some(sid))
    }

    /// Waits for an incoming call (`propose` for JMI, `incoming` for a direct
    /// `session-initiate`) and returns it.
    pub fn expect_incoming(&mut self, timeout: Duration) -> Result<PeerEvent> {
        self.expect(timeout, |e| matches!(e.kind(), "propose" | "incoming"))
    }

    /// Waits until libwebrtc reports the peer connection of `sid` as `connected`
    /// (ICE and DTLS done).
    pub fn wait_connected(&mut self, sid: &str, timeout: Duration) -> Result<()> {
        self.expect(timeout, |e| {
            e.kind() == "connection" && e.sid() == Some(sid) && e.str("state") == Some("connected")
        })?;
        Ok(())
    }

    /// Waits for an analysis window of call `sid` whose dominant frequency is within `tol` Hz
    /// of `freq` and whose RMS is at least `min_rms`. Windows that do not match (e.g. the
    /// first one, half silence) are skipped; the error lists them.
    pub fn wait_tone(
        &mut self,
        sid: &str,
        freq: f64,
        tol: f64,
        min_rms: f64,
        timeout: Duration,
    ) -> Result<Heard> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.expect(left, |e| e.kind() == "audio" && e.sid() == Some(sid)) {
                Ok(event) => event,
                Err(err) => bail!(
                    "{}: no {freq} Hz ± {tol} with RMS ≥ {min_rms} on {sid}; heard {seen:?}: {err}",
                    self.jid
                ),
            };
            let heard = Heard {
                freq: event.f64("freq").unwrap_or(0.0),
                rms: event.f64("rms").unwrap_or(0.0),
                rate: event.f64("rate").unwrap_or(0.0) as u32,
            };
            if (heard.freq - freq).abs() <= tol && heard.rms >= min_rms {
                return Ok(heard);
            }
            seen.push(heard);
        }
    }

    /// Collects the DTMF keys heard on call `sid` (`dtmf` events) until `count` arrived or
    /// `timeout`. libwebrtc's NetEq plays received RFC 4733 telephone-events out as the key's
    /// dual tone; the peer finds them in the decoded audio (Goertzel, ~25 ms blocks), so this
    /// checks that the events arrived, were decrypted and were understood as telephone-events.
    pub fn expect_dtmf(&mut self, sid: &str, count: usize, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut digits = String::new();
        while digits.chars().count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .expect(left, |e| e.kind() == "dtmf" && e.sid() == Some(sid))
                .with_context(|| format!("DTMF so far on {sid}: {digits:?}"))?;
            digits.push_str(event.str("digit").unwrap_or("?"));
        }
        Ok(digits)
    }

    /// Asks for the state of every call (codec from libwebrtc's stats, packet counters, last
    /// audio window).
    pub fn stats(&mut self) -> Result<Vec<CallStats>> {
        self.command(json!({"cmd": "stats"}))?;
        let event = self.expect(Duration::from_secs(10), |e| e.kind() == "stats")?;
        let calls = event.value["calls"].as_array().cloned().unwrap_or_default();
        Ok(calls
            .iter()
            .map(|c| CallStats {
                sid: c["sid"].as_str().unwrap_or("").to_string(),
                peer: c["peer"].as_str().unwrap_or("").to_string(),
                state: c["state"].as_str().unwrap_or("").to_string(),
                codec: c["codec"].as_str().map(str::to_string),
                packets_received: c["packets_received"].as_u64().unwrap_or(0),
                packets_sent: c["packets_sent"].as_u64().unwrap_or(0),
                heard: c["audio"].as_object().map(|a| Heard {
                    freq: a.get("freq").and_then(Value::as_f64).unwrap_or(0.0),
                    rms: a.get("rms").and_then(Value::as_f64).unwrap_or(0.0),
                    rate: a.get("rate").and_then(Value::as_u64).unwrap_or(0) as u32,
                }),
                dtmf: c["dtmf"].as_str().unwrap_or("").to_string(),
            })
            .collect())
    }

    /// The stats of call `sid`.
    pub fn call_stats(&mut self, sid: &str) -> Result<CallStats> {
        self.stats()?
            .into_iter()
            .find(|c| c.sid == sid)
            .ok_or_else(|| anyhow!("{}: no call {sid} in stats", self.jid))
    }

    /// Everything in the capture log so far, in order.
    pub fn capture_log(&self) -> Result<Vec<Captured>> {
        let text = std::fs::read_to_string(&self.capture)
            .with_context(|| format!("reading {}", self.capture.display()))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue; // a line being written right now
            };
            let dir = v["dir"].as_str().unwrap_or("").to_string();
            if let Some(xml) = v["xml"].as_str() {
                out.push(Captured::Stanza {
                    dir,
                    xml: xml.to_string(),
                });
            } else if let Some(sdp) = v["sdp"].as_str() {
                out.push(Captured::Sdp {
                    dir,
                    sid: v["sid"].as_str().unwrap_or("").to_string(),
                    kind: v["type"].as_str().unwrap_or("").to_string(),
                    sdp: sdp.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// The first SDP of call `sid` in the capture log that libwebrtc produced (`dir`
    /// `"local"`) or was given (`"remote"`), of `kind` `"offer"` or `"answer"`.
    pub fn captured_sdp(&self, sid: &str, dir: &str, kind: &str) -> Result<Option<String>> {
        Ok(self.capture_log()?.into_iter().find_map(|c| match c {
            Captured::Sdp {
                dir: d,
                sid: s,
                kind: k,
                sdp,
            } if d == dir && s == sid && k == kind => Some(sdp),
            _ => None,
        }))
    }

    /// Captured stanzas in direction `dir` (`"in"`/`"out"`) whose XML contains `needle`.
    pub fn captured_stanzas(&self, dir: &str, needle: &str) -> Result<Vec<String>> {
        Ok(self
            .capture_log()?
            .into_iter()
            .filter_map(|c| match c {
                Captured::Stanza { dir: d, xml } if d == dir && xml.contains(needle) => Some(xml),
                _ => None,
            })
            .collect())
    }

    /// Ends every session, closes the stream and waits (up to 5 s) for the peer to exit.
    pub fn quit(mut self) -> Result<()> {
        self.command(json!({"cmd": "quit"}))?;
        self.stdin.take();
        if self.process.wait_timeout(Duration::from_secs(5)).is_none() {
            self.process.kill();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_files_exist() {
        let dir = peer_dir();
        assert!(dir.join("jingle_peer.js").is_file());
        assert!(dir.join("package.json").is_file());
        assert!(dir.join("package-lock.json").is_file());
    }

    #[test]
    fn call_options_build_the_codec_list() {
        let opts = CallOptions::jmi().codecs(&["opus"]);
        assert!(opts.jmi);
        assert_eq!(opts.codecs, Some(vec!["opus".to_string()]));
        assert!(!CallOptions::direct().jmi);
    }

    #[test]
    fn peer_event_accessors() {
        let event = PeerEvent {
            value: json!({"event": "audio", "sid": "s1", "freq": 660.5, "rms": 0.2}),
        };
        assert_eq!(event.kind(), "audio");
        assert_eq!(event.sid(), Some("s1"));
        assert_eq!(event.f64("freq"), Some(660.5));
        assert_eq!(event.str("missing"), None);
    }
}
