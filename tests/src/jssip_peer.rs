//! JsSIP 3.13 (npm `jssip`, the SIP stack of many browser softphones) in Node.js as a SIP
//! over WebSocket client (RFC 7118): `tests/peers/jssip/jssip_peer.js`, driven over JSON
//! lines (see that file for the events and commands).
//!
//! What JsSIP does on the wire (seen against stox): it opens the WebSocket with the `sip`
//! subprotocol, REGISTERs at once with `Supported: path, gruu, outbound` and a contact
//! `<sip:RANDOM@RANDOM.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:…>"`,
//! answers 401/407 challenges itself, and writes `Via: SIP/2.0/WSS RANDOM.invalid` (WSS
//! even over `ws://`). Node 20 has no WebSocket global: the peer installs `ws`'s.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::crate_path;
use crate::process::{tail, temp_dir, Process};

/// The peer's directory (`tests/peers/jssip`).
pub fn peer_dir() -> PathBuf {
    crate_path("peers/jssip")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Runs `npm ci` in `tests/peers/jssip` when `node_modules` lacks JsSIP or ws.
pub fn ensure_installed() -> Result<()> {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = peer_dir();
    let modules = dir.join("node_modules");
    if modules.join("jssip/package.json").is_file() && modules.join("ws/package.json").is_file() {
        return Ok(());
    }
    crate::process::npm_ci(&dir)
}

/// How to start the peer.
#[derive(Clone, Debug)]
pub struct JsSipOptions {
    /// `ws://127.0.0.1:PORT` or `wss://…`.
    pub url: String,
    /// The AOR, e.g. `sip:dave@sip.localhost`.
    pub uri: String,
    /// Digest password.
    pub password: String,
    /// Trust this CA file for `wss://` (`NODE_EXTRA_CA_CERTS`).
    pub ca_file: Option<PathBuf>,
}

/// A running JsSIP user agent.
pub struct JsSipPeer {
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    backlog: VecDeque<Value>,
    seen: Vec<Value>,
    stderr_log: PathBuf,
    process: Process,
    next_id: u64,
    _dir: tempfile::TempDir,
}

impl JsSipPeer {
    /// Starts the peer (it connects and registers at once; see [`JsSipPeer::expect`]).
    pub fn start(opts: &JsSipOptions) -> Result<JsSipPeer> {
        JsSipPeer::start_script("jssip_peer.js", opts)
    }

    /// Starts `tests/peers/jssip/ws_phone.js` instead: a scripted SIP UA over WebSocket
    /// (on `ws`, not JsSIP, which needs WebRTC for calls) that registers with outbound and
    /// answers INVITEs with a plain RTP/AVP offer; every request it gets is a `request`
    /// event with its text (see that file).
    pub fn start_ws_phone(opts: &JsSipOptions) -> Result<JsSipPeer> {
        JsSipPeer::start_script("ws_phone.js", opts)
    }

    fn start_script(script: &str, opts: &JsSipOptions) -> Result<JsSipPeer> {
        ensure_installed()?;
        let dir = temp_dir("jssip")?;
        let stderr_log = dir.path().join("peer.stderr");
        let node = std::env::var_os("STOX_TEST_NODE").unwrap_or_else(|| "node".into());
        let mut cmd = Command::new(node);
        cmd.arg(peer_dir().join(script))
            .args(["--url", &opts.url, "--uri", &opts.uri])
            .args(["--password", &opts.password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?);
        if let Some(ca) = &opts.ca_file {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        if std::env::var_os("STOX_TEST_JSSIP_DEBUG").is_some() {
            cmd.arg("--debug");
        }
        let mut process = Process::spawn(script, cmd)?;
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
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| json!({"event": "garbage", "line": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Ok(JsSipPeer {
            stdin,
            events,
            backlog: VecDeque::new(),
            seen: Vec::new(),
            stderr_log,
            process,
            next_id: 1,
            _dir: dir,
        })
    }

    /// The PID of the Node.js process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The peer's stderr (JsSIP's debug output with `STOX_TEST_JSSIP_DEBUG=1`).
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_log
    }

    /// Every event read so far, in order.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// How many events of a kind were read so far.
    pub fn count(&self, kind: &str) -> usize {
        self.seen.iter().filter(|e| e["event"] == kind).count()
    }

    /// The first event (not consumed yet) matching `pred`, waiting up to `timeout`.
    pub fn expect(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).ok_or_else(|| anyhow!("backlog"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Ok(v);
                    }
                    self.backlog.push_back(v);
                }
                Err(_) => bail!(
                    "no matching JsSIP event in {timeout:?}; seen: {:?}\nstderr:\n{}",
                    self.seen,
                    tail(&self.stderr_log, 30)
                ),
            }
        }
    }

    /// Waits for an event of a kind.
    pub fn expect_event(&mut self, kind: &str, timeout: Duration) -> Result<Value> {
        self.expect(timeout, |e| e["event"] == kind)
    }

    fn command(&mut self, cmd: Value) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("the JsSIP peer has quit"))?;
        writeln!(stdin, "{cmd}").context("writing to the JsSIP peer")?;
        stdin.flush()?;
        Ok(())
    }

    /// Sends a MESSAGE (text/plain); returns its id for the `sent`/`send_failed` event.
    pub fn send_message(&mut self, to: &str, body: &str) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.command(json!({"cmd": "message", "id": id, "to": to, "body": body}))?;
        Ok(id)
    }

    /// Opens a second, bare WebSocket to `url`, sends a WebSocket ping and a double-CRLF
    /// keepalive (RFC 5626 §4.4.1) and returns the `keepalive` event (`pong`: the WebSocket
    /// pong came; `answer`: the first message back, in hex; `binary`: its frame type).
    pub fn keepalive(&mut self, url: &str) -> Result<Value> {
        self.command(json!({"cmd": "keepalive", "url": url}))?;
        self.expect_event("keepalive", Duration::from_secs(10))
    }

    /// SUBSCRIBEs to `target`'s presence (RFC 6665, `Event: presence`, `Expires: 600`);
    /// `subscription`, `notify` and `subscription_terminated` events follow.
    pub fn subscribe(&mut self, target: &str) -> Result<()> {
        self.command(json!({"cmd": "subscribe", "target": target}))
    }

    /// `ws_phone.js` only: calls `to` (INVITE with a plain RTP offer); `call_response`
    /// events follow.
    pub fn call(&mut self, to: &str) -> Result<()> {
        self.command(json!({"cmd": "call", "to": to}))
    }

    /// Kills the Node.js process (SIGKILL): its WebSocket closes without unregistering.
    pub fn kill(&mut self) {
        self.stdin = None;
        self.process.kill();
    }

    /// Unregisters and exits.
    pub fn quit(&mut self) {
        let _ = self.command(json!({"cmd": "quit"}));
        self.stdin = None;
        let _ = self.process.wait_timeout(Duration::from_secs(3));
    }
}
