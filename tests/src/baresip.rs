//! baresip 1.0 (Debian `baresip-core`) as the real SIP phone of the call tests: RFC 3261
//! INVITE/BYE, an RFC 3264 SDP offer/answer with PCMU (RFC 3551) and/or Opus (RFC 7587),
//! RTP (RFC 3550) and RFC 4733 telephone-events, all on 127.0.0.1.
//!
//! Each [`Baresip`] owns a temp dir with its `config` and `accounts` (`-f DIR`):
//!
//! * microphone: `aufile` playing a WAV tone written by [`crate::audio::write_tone`]
//!   (baresip 1.0's `aufile` plays the file once and does not loop: at its end the `menu`
//!   module sees "audio error (end of file)" and hangs the call up, so
//!   [`BaresipOptions::tone_length`], 30 s by default, is the longest a call can last);
//! * ears: the `sndfile` audio filter dumps what is decoded (`dump-<time>-dec.wav`, at the
//!   decoder's rate: 8 kHz mono for PCMU, 48 kHz stereo for Opus) and what is sent
//!   (`-enc.wav`) into `rec/`; the audio player is an `aubridge` device bridged to nothing,
//!   since no sound card exists here;
//! * control: `ctrl_tcp` on a free port, netstring-framed JSON (`{"command":"dial",
//!   "params":"sip:…","token":"3"}` → `{"response":true,"ok":true,"data":"…","token":"3"}`,
//!   and events `{"event":true,"type":"CALL_ESTABLISHED","class":"call",…}`);
//!   the commands are the `menu` module's long commands (`dial`, `accept`, `hangup`,
//!   `sndcode`, `quit`);
//! * no registration unless asked (`regint=0`), codecs restricted per account
//!   (`audio_codecs=`), no audio device modules, `net_interface 127.0.0.1` so the SDP says
//!   127.0.0.1 (`net_interface lo` fails in containers: "could not get IPv4 address").
//!
//! # Presence (the `presence` module, RFC 3856 / RFC 6665 / RFC 3903)
//!
//! [`BaresipOptions::watch`] and [`BaresipOptions::publish_every`] load `contact.so` and
//! `presence.so` and write a `contacts` file (`<URI>;presence=p2p` per watched URI) and
//! the account's `pubint`. What baresip 1.0 really does: seen on the wire against SIPp
//! (`tests/tests/presence_peers.rs`), and, where marked *(source)*, read in baresip's
//! `modules/presence/*.c` and libre's `src/sipevent/` at v1.0.0 but not exercised:
//!
//! * **Commands** (ctrl_tcp long names): `presence_online` and `presence_offline` set the
//!   UA's own status ([`Baresip::set_presence`]); there is no away/busy/note.
//!   `contacts` lists each contact as `STATUS NAME <URI>` with STATUS one of `Unknown`,
//!   `Online`, `Offline`, `Busy` ([`Baresip::contacts`], [`ContactStatus`] says how a
//!   NOTIFY maps to it). The log says `<URI> changed status from Online to Busy` (not
//!   from `Unknown`) and `presence: subscriber closed <URI>: rejected; will retry in
//!   3600 secs`.
//! * **SUBSCRIBE** (subscriber.c, libre sipevent), about 1 s after start, to each
//!   contact: Request-URI and To = the contact URI, From = the account AOR (with a tag),
//!   `Contact: <sip:USER-0x55d1...@127.0.0.1:PORT>` (a per-run user part: NOTIFYs must go
//!   to the Contact as given), `Event: presence`, `Expires: 600` (fixed), `Supported:
//!   gruu`, **no `Accept`** (RFC 3856 §6: then PIDF is meant), no body. With `outbound`
//!   it carries `Route: <sip:PROXY;lr>` (the Request-URI stays the contact); requests in
//!   the dialog (refresh, `Expires: 0` at quit) go to the notifier's Contact without
//!   Route. `terminated;reason=rejected` → `Unknown`, SUBSCRIBE again in 3600 s.
//!   *(source)* Refresh at 90 % of the 200 OK's `Expires`, rescheduled to 90 % of
//!   `expires=` of every NOTIFY `active`/`pending`. A 423 is retried with its
//!   `Min-Expires`; 403, 489, 603... close it (retry in 30 s, then 300 s, 3600 s). A
//!   NOTIFY `terminated;reason=timeout|deactivated` → SUBSCRIBE again in 5 s;
//!   `noresource` → 3600 s; others 300 s (or `retry-after`). NOTIFYs are answered 200;
//!   no `Event` → 489, no/bad `Subscription-State` → 400, CSeq not increasing → 500 "Bad
//!   Sequence", unknown dialog → 481, a Content-Type other than application/pidf+xml →
//!   415; a NOTIFY with neither Content-Type nor Content-Length dereferences NULL in
//!   subscriber.c: always send `Content-Length: 0` on a bodyless NOTIFY.
//! * **PUBLISH** (publisher.c) to the account AOR (Request-URI, From and To; `Route` with
//!   `outbound`), 10 ms after start, each PUBLISH with a new Call-ID and a random CSeq,
//!   no Contact: `Event: presence`, `Expires: <pubint>`, `Content-Type:
//!   application/pidf+xml` and this body, `<basic>` `open`/`closed`, and **`unknown`**
//!   until the status is set (by a command, or by a REGISTER 200, which sets `open`):
//!
//!   ```text
//!   <?xml version="1.0" encoding="UTF-8" standalone="no"?>
//!   <presence xmlns="urn:ietf:params:xml:ns:pidf"
//!       xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
//!       xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
//!       entity="sip:carol@sip.localhost">
//!     <dm:person id="p4159"><rpid:activities/></dm:person>
//!     <tuple id="t4109">
//!       <status>
//!         <basic>unknown</basic>
//!       </status>
//!       <contact>sip:carol@sip.localhost</contact>
//!     </tuple>
//!   </presence>
//!   ```
//!
//!   The refresh, at 90 % of pubint, has `SIP-If-Match: <last SIP-ETag>`, no body but
//!   still `Content-Type: application/pidf+xml` (`Content-Length: 0`). A status change is
//!   a PUBLISH with `SIP-If-Match` and the whole body, sent at once even while an earlier
//!   PUBLISH is unanswered (so with a stale ETag). On 412 it forgets the ETag and
//!   publishes the whole state again, at once. At quit: `Expires: 0`, `SIP-If-Match`, no
//!   body, no Content-Type. *(source)* Other errors are only logged (no retry until the
//!   next status change); a 200 without `SIP-ETag` stops the refreshes.
//! * *(source)* **Its own notifier**: a SUBSCRIBE to its AOR gets 200 and NOTIFYs of the
//!   same PIDF (`Expires: 600`); not used by the gateway tests.
//! * The TLS transport listens on the SIP port + 1 (`tls: accept error` in the log when
//!   something else connects there).
//!
//! ```no_run
//! use std::time::Duration;
//! use stox_tests::baresip::{Baresip, BaresipOptions};
//!
//! let t = Duration::from_secs(5);
//! let mut a = Baresip::start(BaresipOptions::new("a", 440.0)).unwrap();
//! let mut b = Baresip::start(BaresipOptions::new("b", 660.0)).unwrap();
//! a.dial(&b.uri()).unwrap();
//! b.expect_event("CALL_INCOMING", t).unwrap();
//! b.accept().unwrap();
//! a.expect_event("CALL_ESTABLISHED", t).unwrap();
//! std::thread::sleep(Duration::from_secs(2));
//! a.hangup().unwrap();
//! b.expect_event("CALL_CLOSED", t).unwrap();
//! let heard = a.heard(Duration::from_millis(500)).unwrap();
//! assert!(heard.is_tone(660.0, 10.0));
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::audio::{self, Analysis, Wav};
use crate::ports::free_port;
use crate::process::{tail, temp_dir, Process};
use crate::sipp::SipMessage;

/// Where Debian's `baresip-core` installs the modules.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// Which audio codecs the account offers and accepts, in preference order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codecs {
    /// Opus first, then PCMU (PCMA is not offered).
    OpusAndPcmu,
    /// PCMU only.
    PcmuOnly,
    /// Opus only.
    OpusOnly,
}

impl Codecs {
    /// The value of the account's `audio_codecs` parameter.
    fn account_value(self) -> &'static str {
        match self {
            Codecs::OpusAndPcmu => "opus/48000/2,PCMU/8000/1",
            Codecs::PcmuOnly => "PCMU/8000/1",
            Codecs::OpusOnly => "opus/48000/2",
        }
    }
}

/// How to run one baresip.
#[derive(Clone, Debug)]
pub struct BaresipOptions {
    /// User part of the account's AOR.
    pub user: String,
    /// The microphone tone (Hz).
    pub tone_hz: f64,
    /// The tone's sample rate (8000 or 48000); also baresip's `ausrc_srate`.
    pub tone_rate: u32,
    /// How long the tone lasts. aufile does not loop, and baresip hangs up when it ends.
    pub tone_length: Duration,
    /// Codec preference.
    pub codecs: Codecs,
    /// AOR domain (host\[:port\]); default `127.0.0.1:<sip port>`, so that the From URI
    /// routes back to this phone.
    pub domain: Option<String>,
    /// Send every request through this proxy (the account's `outbound`).
    pub outbound_proxy: Option<SocketAddr>,
    /// Reach the outbound proxy over TCP (`;transport=tcp`) instead of UDP.
    pub outbound_tcp: bool,
    /// Reach the outbound proxy over TLS (`;transport=tls`; wins over `outbound_tcp`).
    /// libre then opens a TLS connection to it; see [`BaresipOptions::tls_ca`].
    pub outbound_tls: bool,
    /// `sip_cafile`: the CA (PEM) baresip trusts for SIP over TLS.
    pub tls_ca: Option<PathBuf>,
    /// `sip_certificate`: certificate and key in one PEM file. baresip then also listens
    /// for SIP over TLS, on the SIP port + 1 ([`Baresip::tls_port`]).
    pub tls_certificate: Option<PathBuf>,
    /// Plain contacts (no presence) written to the `contacts` file, loading `contact.so`:
    /// the `message` command sends a MESSAGE to the current one ([`Baresip::message`]).
    pub contacts: Vec<String>,
    /// REGISTER interval in seconds (`regint`); 0 (default) never registers.
    pub register_interval: u32,
    /// Digest password (`auth_pass`).
    pub password: Option<String>,
    /// Answer incoming calls by itself (`answermode=auto`).
    pub auto_answer: bool,
    /// `-s`: print every SIP message into the log.
    pub sip_trace: bool,
    /// Extra `config` lines appended as they are.
    pub extra_config: Vec<String>,
    /// Load the `contact` and `presence` modules (set by [`BaresipOptions::watch`] and
    /// [`BaresipOptions::publish_every`]). See the module doc for what they send.
    pub presence: bool,
    /// The account's `pubint` (seconds): PUBLISH its own status (RFC 3903) with this
    /// `Expires`, refreshed at 90 %; 0 (default) publishes nothing.
    pub publish_interval: u32,
    /// SIP URIs written to the `contacts` file with `;presence=p2p`: baresip SUBSCRIBEs to
    /// each (RFC 6665, `Event: presence`, `Expires: 600`) about 1 s after start.
    pub watched: Vec<String>,
}

impl BaresipOptions {
    /// `sip:user@127.0.0.1:PORT`, playing `tone_hz` at 48 kHz for 30 s, Opus and PCMU, no
    /// registration, manual answer.
    pub fn new(user: &str, tone_hz: f64) -> BaresipOptions {
        BaresipOptions {
            user: user.to_string(),
            tone_hz,
            tone_rate: 48000,
            tone_length: Duration::from_secs(30),
            codecs: Codecs::OpusAndPcmu,
            domain: None,
            outbound_proxy: None,
            outbound_tcp: false,
            outbound_tls: false,
            tls_ca: None,
            tls_certificate: None,
            contacts: Vec::new(),
            register_interval: 0,
            password: None,
            auto_answer: false,
            sip_trace: false,
            extra_config: Vec::new(),
            presence: false,
            publish_interval: 0,
            watched: Vec::new(),
        }
    }

    /// Sets the AOR domain (host\[:port\]).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_string());
        self
    }

    /// Sends every request through `proxy` (the account's `outbound`, added as a
    /// `Route: <sip:HOST:PORT;lr>` to out-of-dialog requests).
    pub fn outbound(mut self, proxy: SocketAddr) -> Self {
        self.outbound_proxy = Some(proxy);
        self
    }

    /// Watches `uri` (a `;presence=p2p` contact), and loads the presence modules.
    pub fn watch(mut self, uri: &str) -> Self {
        self.watched.push(uri.to_string());
        self.presence = true;
        self
    }

    /// Publishes its own status every `seconds` (`pubint`), and loads the presence
    /// modules.
    pub fn publish_every(mut self, seconds: u32) -> Self {
        self.publish_interval = seconds;
        self.presence = true;
        self
    }

    /// Sets the codec preference.
    pub fn codecs(mut self, codecs: Codecs) -> Self {
        self.codecs = codecs;
        self
    }

    /// Sets `auto_answer`.
    pub fn auto_answer(mut self, yes: bool) -> Self {
        self.auto_answer = yes;
        self
    }

    /// Sets `sip_trace`.
    pub fn sip_trace(mut self, yes: bool) -> Self {
        self.sip_trace = yes;
        self
    }
}

/// An event baresip reported over ctrl_tcp.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `type`, e.g. `CALL_INCOMING`, `CALL_RINGING`, `CALL_ESTABLISHED`, `CALL_CLOSED`,
    /// `CALL_DTMF_START`, `REGISTER_OK`.
    pub kind: String,
    /// `class`: `call`, `register`, `other`, …
    pub class: String,
    /// `direction`: `incoming` or `outgoing` (call events).
    pub direction: Option<String>,
    /// `peeruri`.
    pub peer_uri: Option<String>,
    /// `id`: baresip's call id (the SIP Call-ID).
    pub call_id: Option<String>,
    /// `param`: the reason of `CALL_CLOSED`, the digit of `CALL_DTMF_START`, …
    pub param: Option<String>,
    /// The whole JSON object.
    pub raw: Value,
}

impl Event {
    fn from_json(raw: Value) -> Event {
        let field = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_string);
        Event {
            kind: field("type").unwrap_or_default(),
            class: field("class").unwrap_or_default(),
            direction: field("direction"),
            peer_uri: field("peeruri"),
            call_id: field("id"),
            param: field("param"),
            raw,
        }
    }
}

/// A command's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `ok`.
    pub ok: bool,
    /// `data`: the command's text output.
    pub data: String,
}

/// A running baresip. `Drop` stops it (SIGTERM, then SIGKILL) by PID.
#[derive(Debug)]
pub struct Baresip {
    process: Process,
    ctrl: TcpStream,
    buf: Vec<u8>,
    sip_port: u16,
    ctrl_port: u16,
    aor: String,
    log: PathBuf,
    rec: PathBuf,
    tone: PathBuf,
    history: Vec<Event>,
    pending: VecDeque<Event>,
    next_token: u64,
    dir: tempfile::TempDir,
}

impl Baresip {
    /// Writes the config dir, starts `baresip -f DIR` and connects to its ctrl_tcp port.
    pub fn start(options: BaresipOptions) -> Result<Baresip> {
        let dir = temp_dir("baresip")?;
        // libre binds UDP and TCP on the SIP port and TLS on the next one: both reserved.
        let sip_port = crate::ports::free_ports(2);
        let ctrl_port = free_port();
        let rec = dir.path().join("rec");
        fs::create_dir_all(&rec)?;
        let tone = dir.path().join("tone.wav");
        audio::write_tone(
            &tone,
            options.tone_hz,
            options.tone_rate,
            options.tone_length,
            audio::DEFAULT_AMPLITUDE,
        )?;
        fs::write(
            dir.path().join("config"),
            config_text(&options, sip_port, ctrl_port, &tone, &rec),
        )?;
        let domain = options
            .domain
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{sip_port}"));
        let aor = format!("sip:{}@{domain}", options.user);
        fs::write(
            dir.path().join("accounts"),
            format!("{}\n", account_line(&options, &aor)),
        )?;
        if options.presence || !options.contacts.is_empty() {
            // Always written: without it the contact module writes a template that
            // subscribes to <sip:USER@DOMAIN-of-the-machine>.
            fs::write(dir.path().join("contacts"), contacts_text(&options))?;
        }
        let log = dir.path().join("baresip.log");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(dir.path());
        if options.sip_trace {
            cmd.arg("-s");
        }
        cmd.current_dir(dir.path());
        let mut process = Process::spawn_logged("baresip", cmd, &log)?;
        let ctrl = connect_ctrl(&mut process, ctrl_port, &log)?;
        Ok(Baresip {
            process,
            ctrl,
            buf: Vec::new(),
            sip_port,
            ctrl_port,
            aor,
            log,
            rec,
            tone,
            history: Vec::new(),
            pending: VecDeque::new(),
            next_token: 1,
            dir,
        })
    }

    /// The account's AOR, `sip:user@127.0.0.1:PORT` by default: dial this to call it.
    pub fn uri(&self) -> String {
        self.aor.clone()
    }

    /// Sends a MESSAGE with `text` to the first of [`BaresipOptions::contacts`] (the
    /// contact module's `contact_next` selects it, `message` sends; the contact module is
    /// loaded only when contacts were given).
    pub fn message(&mut self, text: &str) -> Result<Response> {
        self.command("contact_next", None)?;
        self.command("message", Some(text))
    }

    /// The SIP over TLS port when [`BaresipOptions::tls_certificate`] is set (libre takes
    /// the SIP port + 1).
    pub fn tls_port(&self) -> u16 {
        self.sip_port + 1
    }

    /// The local SIP port (UDP and TCP).
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// The local SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    /// The ctrl_tcp port.
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The config dir (`-f`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The WAV played as microphone.
    pub fn tone_path(&self) -> &Path {
        &self.tone
    }

    /// baresip's stdout/stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Every event received so far, in order.
    pub fn events(&self) -> &[Event] {
        &self.history
    }

    /// Sends a ctrl_tcp command and waits (10 s) for its response; events read meanwhile are
    /// kept for [`Baresip::expect_event`]. A response with `ok: false` is returned, not an
    /// error.
    pub fn command(&mut self, command: &str, params: Option<&str>) -> Result<Response> {
        let token = self.next_token.to_string();
        self.next_token += 1;
        let mut msg = json!({ "command": command, "token": token });
        if let Some(params) = params {
            msg["params"] = Value::from(params);
        }
        let body = msg.to_string();
        let frame = format!("{}:{body},", body.len());
        self.ctrl
            .write_all(frame.as_bytes())
            .with_context(|| format!("sending {body} to baresip\n{}", self.context()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Some(value) = self.read_message(deadline)? else {
                bail!("no response to {body}\n{}", self.context());
            };
            if value.get("response").and_then(Value::as_bool) == Some(true) {
                if value.get("token").and_then(Value::as_str) != Some(token.as_str()) {
                    continue;
                }
                return Ok(Response {
                    ok: value.get("ok").and_then(Value::as_bool).unwrap_or(false),
                    data: value
                        .get("data")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
    }

    fn command_ok(&mut self, command: &str, params: Option<&str>) -> Result<Response> {
        let response = self.command(command, params)?;
        if !response.ok {
            bail!(
                "baresip refused {command} {params:?}: {}\n{}",
                response.data,
                self.context()
            );
        }
        Ok(response)
    }

    /// `dial URI`: starts an outgoing call (RFC 3261 INVITE with an SDP offer).
    pub fn dial(&mut self, uri: &str) -> Result<()> {
        self.command_ok("dial", Some(uri)).map(drop)
    }

    /// `accept`: answers the current incoming call (200 OK with the SDP answer).
    pub fn accept(&mut self) -> Result<()> {
        self.command_ok("accept", None).map(drop)
    }

    /// `hangup`: BYE for an established call, CANCEL for an outgoing one still ringing,
    /// 486 for an incoming one not answered yet.
    pub fn hangup(&mut self) -> Result<()> {
        self.command_ok("hangup", None).map(drop)
    }

    /// `sndcode DIGITS`: sends each of `0-9*#A-D` as an RFC 4733 telephone-event on the
    /// current call (baresip sends SIP INFO instead when telephone-event was not negotiated).
    pub fn send_dtmf(&mut self, digits: &str) -> Result<()> {
        self.command_ok("sndcode", Some(digits)).map(drop)
    }

    /// `presence_online` / `presence_offline` (the presence module): sets this UA's own
    /// status, which baresip PUBLISHes at once (`<basic>open</basic>` / `closed`, with
    /// `SIP-If-Match` of the last ETag) and NOTIFYs to its own watchers. Only open and
    /// closed exist; no note, no activity.
    pub fn set_presence(&mut self, online: bool) -> Result<()> {
        let command = if online {
            "presence_online"
        } else {
            "presence_offline"
        };
        self.command_ok(command, None).map(drop)
    }

    /// `contacts`: each contact and the presence status baresip shows for it (what the
    /// last NOTIFY said, see [`ContactStatus`]).
    pub fn contacts(&mut self) -> Result<Vec<ContactPresence>> {
        let response = self.command_ok("contacts", None)?;
        Ok(parse_contacts(&response.data))
    }

    /// Polls `contacts` every 100 ms until the contact `uri` shows `status`.
    pub fn expect_contact_status(
        &mut self,
        uri: &str,
        status: ContactStatus,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let contacts = self.contacts()?;
            if contacts.iter().any(|c| c.uri == uri && c.status == status) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{uri} is not {status:?} after {timeout:?}: {contacts:?}\n{}",
                    self.context()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The SIP requests with `method` that baresip sent (retransmissions removed), in
    /// order (only with [`BaresipOptions::sip_trace`]).
    pub fn sent_requests(&self, method: &str) -> Vec<SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.sip_trace()
            .into_iter()
            .filter(|t| !t.received && t.message.method() == Some(method))
            .filter(|t| {
                seen.insert((
                    t.message.header("Call-ID").map(str::to_string),
                    t.message.header("CSeq").map(str::to_string),
                ))
            })
            .map(|t| t.message)
            .collect()
    }

    /// Waits until baresip has sent `n` requests with `method` (only with
    /// [`BaresipOptions::sip_trace`]), and returns them.
    pub fn expect_sent_requests(
        &self,
        method: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<SipMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent_requests(method);
            if sent.len() >= n {
                return Ok(sent);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} {method} sent after {timeout:?}, expected {n}\n{}",
                    sent.len(),
                    self.context()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The final (≥ 200) responses baresip received to its requests with `method` (by
    /// CSeq; retransmissions removed), in order (only with [`BaresipOptions::sip_trace`]).
    pub fn received_final_responses(&self, method: &str) -> Vec<SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.sip_trace()
            .into_iter()
            .filter(|t| t.received && t.message.status().is_some_and(|s| s >= 200))
            .filter(|t| t.message.cseq_method() == Some(method))
            .filter(|t| {
                seen.insert((
                    t.message.header("Call-ID").map(str::to_string),
                    t.message.header("CSeq").map(str::to_string),
                ))
            })
            .map(|t| t.message)
            .collect()
    }

    /// Waits until baresip has received `n` final responses to its requests with
    /// `method` (only with [`BaresipOptions::sip_trace`]), and returns them.
    pub fn expect_final_responses(
        &self,
        method: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<SipMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received_final_responses(method);
            if got.len() >= n {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} answers to {method} after {timeout:?}, expected {n}\n{}",
                    got.len(),
                    self.context()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether baresip's log has a line containing `text` (ANSI colours removed).
    pub fn log_contains(&self, text: &str) -> bool {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.log).unwrap_or_default(),
        ))
        .contains(text)
    }

    /// `quit`, then waits up to 5 s for the process to exit.
    pub fn quit(&mut self) -> Result<()> {
        self.command("quit", None)?;
        if self.process.wait_timeout(Duration::from_secs(5)).is_none() {
            bail!("baresip did not exit after quit\n{}", self.context());
        }
        Ok(())
    }

    /// Waits up to `timeout` for an event of type `kind` (e.g. `CALL_ESTABLISHED`) and
    /// removes it from the pending events; earlier events of other types stay pending.
    pub fn expect_event(&mut self, kind: &str, timeout: Duration) -> Result<Event> {
        self.expect_event_where(timeout, |e| e.kind == kind)
            .with_context(|| format!("waiting for {kind}"))
    }

    /// Waits up to `timeout` for the first pending or new event matching `pred`.
    pub fn expect_event_where(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(&pred) {
                if let Some(event) = self.pending.remove(i) {
                    return Ok(event);
                }
            }
            if self.read_message(deadline)?.is_none() {
                bail!("no matching event after {timeout:?}\n{}", self.context());
            }
        }
    }

    /// Collects the digits of `CALL_DTMF_START` events until `count` arrived or `timeout`.
    pub fn expect_dtmf(&mut self, count: usize, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut digits = String::new();
        while digits.chars().count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .expect_event("CALL_DTMF_START", left)
                .with_context(|| format!("DTMF so far: {digits:?}"))?;
            digits.push_str(event.param.as_deref().unwrap_or("?"));
        }
        Ok(digits)
    }

    /// Recordings of what this phone heard (`rec/*-dec.wav`), oldest first.
    pub fn recordings(&self) -> Result<Vec<PathBuf>> {
        self.dumps("-dec.wav")
    }

    /// Recordings of what this phone sent (`rec/*-enc.wav`), oldest first.
    pub fn sent_recordings(&self) -> Result<Vec<PathBuf>> {
        self.dumps("-enc.wav")
    }

    fn dumps(&self, suffix: &str) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.rec)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        // Names are dump-YYYY-MM-DD-HH-MM-SS-{dec,enc}.wav: lexical order is time order.
        out.sort();
        Ok(out)
    }

    /// The last call's recording, read once baresip has closed it (its WAV header is fixed
    /// up on close; after 2 s it is read as it is).
    pub fn last_recording(&self) -> Result<Wav> {
        let path = self
            .recordings()?
            .pop()
            .ok_or_else(|| anyhow!("no recording in {}\n{}", self.rec.display(), self.context()))?;
        wait_closed(&path, Duration::from_secs(2));
        Wav::read(&path)
    }

    /// Dominant frequency and RMS of the last call's recording (first channel), skipping
    /// its first `skip` (call setup, jitter buffer).
    pub fn heard(&self, skip: Duration) -> Result<Analysis> {
        Ok(self.last_recording()?.analyse(skip))
    }

    /// The SIP messages baresip sent and received so far, in order, read from its log
    /// (only with [`BaresipOptions::sip_trace`]; retransmissions included).
    pub fn sip_trace(&self) -> Vec<TracedSip> {
        parse_sip_trace(&fs::read(&self.log).unwrap_or_default(), self.sip_port)
    }

    /// The SIP requests with `method` that baresip received (retransmissions removed).
    pub fn received_requests(&self, method: &str) -> Vec<SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.sip_trace()
            .into_iter()
            .filter(|t| t.received && t.message.method() == Some(method))
            .filter(|t| {
                seen.insert((
                    t.message.header("Call-ID").map(str::to_string),
                    t.message.header("CSeq").map(str::to_string),
                ))
            })
            .map(|t| t.message)
            .collect()
    }

    /// The status codes of the SIP responses baresip sent, in order (retransmissions
    /// included).
    pub fn sent_statuses(&self) -> Vec<u16> {
        self.sip_trace()
            .iter()
            .filter(|t| !t.received)
            .filter_map(|t| t.message.status())
            .collect()
    }

    /// The log tail and the events seen, for failure messages.
    pub fn context(&self) -> String {
        let mut out = format!(
            "--- baresip {} (pid {}) events:\n",
            self.aor,
            self.process.pid()
        );
        for e in &self.history {
            let _ = writeln!(
                out,
                "  {} {}",
                e.kind,
                e.param.as_deref().unwrap_or_default()
            );
        }
        let _ = write!(out, "--- log tail:\n{}", tail(&self.log, 30));
        out
    }

    /// Reads one netstring message; events go to `history` and `pending`. `None` at the
    /// deadline.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            match netstring_split(&self.buf) {
                Ok(Some((body, used))) => {
                    let value: Value = serde_json::from_slice(body).with_context(|| {
                        format!("bad JSON from baresip: {}", String::from_utf8_lossy(body))
                    })?;
                    self.buf.drain(..used);
                    if value.get("event").and_then(Value::as_bool) == Some(true) {
                        let event = Event::from_json(value.clone());
                        self.history.push(event.clone());
                        self.pending.push_back(event);
                    }
                    return Ok(Some(value));
                }
                Ok(None) => {}
                Err(err) => bail!("{err}\n{}", self.context()),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.ctrl
                .set_read_timeout(Some((deadline - now).min(Duration::from_millis(200))))?;
            let mut chunk = [0u8; 4096];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => bail!("baresip closed ctrl_tcp\n{}", self.context()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !self.process.is_running() {
                        bail!("baresip exited\n{}", self.context());
                    }
                }
                Err(err) => return Err(err).context("reading ctrl_tcp"),
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGTERM lets baresip send BYE and close its WAV dumps.
        self.process.terminate(Duration::from_secs(2));
    }
}

/// A contact's presence as baresip 1.0 shows it (`contact_presence_str`), from the last
/// NOTIFY (modules/presence/subscriber.c): a body with `<basic>open</basic>` is
/// `Online`, any other `<basic>` `Offline`; then `<rpid:away/>` makes it `Offline`,
/// `<rpid:busy/>` or `<rpid:on-the-phone/>` `Busy` (matched as text, with that `rpid:`
/// prefix). A NOTIFY without Content-Type and with `Content-Length: 0` (pending) is
/// `Unknown`, and so is the contact once the subscription is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactStatus {
    /// No state yet, or the subscription ended.
    Unknown,
    /// `<basic>open</basic>`, no away/busy activity.
    Online,
    /// `<basic>closed</basic>`, or `<rpid:away/>`.
    Offline,
    /// `<rpid:busy/>` or `<rpid:on-the-phone/>`.
    Busy,
}

/// One line of the `contacts` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactPresence {
    /// The display name (may be empty).
    pub name: String,
    /// The contact's URI.
    pub uri: String,
    /// Its presence.
    pub status: ContactStatus,
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the `contacts` output: `--- Contacts (N) ---`, then per contact
/// `> STATUS NAME <URI>` (`>` marks the current one, STATUS is coloured).
pub fn parse_contacts(data: &str) -> Vec<ContactPresence> {
    strip_ansi(data)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('>').trim();
            let (status, rest) = line.split_once(' ')?;
            let status = match status {
                "Unknown" => ContactStatus::Unknown,
                "Online" => ContactStatus::Online,
                "Offline" => ContactStatus::Offline,
                "Busy" => ContactStatus::Busy,
                _ => return None,
            };
            let start = rest.rfind('<')?;
            let end = rest[start..].find('>')? + start;
            Some(ContactPresence {
                name: rest[..start].trim().to_string(),
                uri: rest[start + 1..end].to_string(),
                status,
            })
        })
        .collect()
}

/// One SIP message from baresip's `-s` trace.
#[derive(Clone, Debug)]
pub struct TracedSip {
    /// The transport of the trace line, `UDP` or `TCP`.
    pub transport: String,
    /// `src` of the trace line, e.g. `127.0.0.1:5060`.
    pub src: String,
    /// `dst` of the trace line.
    pub dst: String,
    /// Whether baresip received it (its destination is baresip's SIP port).
    pub received: bool,
    /// The message.
    pub message: SipMessage,
}

/// Parses the SIP trace that `baresip -s` writes into its log: each message is preceded by
/// `ESC[36;1m#`, then `UDP 127.0.0.1:A -> 127.0.0.1:B`, then the message, then `ESC[;m`.
///
/// Direction: a message to `own_port` was received, one from it was sent. A TCP connection
/// baresip opened itself runs from an ephemeral port; connections to baresip land on
/// `own_port`, so on a connection with neither end at `own_port` the first message was
/// baresip's, and its source is baresip's end.
pub fn parse_sip_trace(log: &[u8], own_port: u16) -> Vec<TracedSip> {
    const START: &[u8] = b"\x1b[36;1m#\n";
    const END: &[u8] = b"\x1b[;m";
    let own = format!(":{own_port}");
    let mut local_ends: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut rest = log;
    while let Some(at) = find(rest, START) {
        rest = &rest[at + START.len()..];
        let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = String::from_utf8_lossy(&rest[..eol]).to_string();
        let body_end = find(&rest[eol + 1..], END).unwrap_or(rest.len() - eol - 1);
        let raw = &rest[eol + 1..eol + 1 + body_end];
        rest = &rest[eol + 1 + body_end..];
        let mut parts = line.split_whitespace();
        let (transport, src, _arrow, dst) =
            (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(transport), Some(src), Some(dst)) = (transport, src, dst) else {
            continue;
        };
        let received = if dst.ends_with(&own) {
            true
        } else if src.ends_with(&own) {
            false
        } else if local_ends.contains(dst) {
            true
        } else {
            // A connection baresip opened: this end is its own from now on.
            local_ends.insert(src.to_string());
            false
        };
        if let Some(message) = SipMessage::parse(raw) {
            out.push(TracedSip {
                transport: transport.to_string(),
                src: src.to_string(),
                dst: dst.to_string(),
                received,
                message,
            });
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits one netstring (`LEN:BODY,`) off the front of `buf`: the body and the bytes used,
/// `None` if incomplete.
pub fn netstring_split(buf: &[u8]) -> Result<Option<(&[u8], usize)>> {
    let Some(colon) = buf.iter().position(|&b| b == b':') else {
        if buf.len() > 10 || !buf.iter().all(u8::is_ascii_digit) {
            bail!("bad netstring prefix {:?}", String::from_utf8_lossy(buf));
        }
        return Ok(None);
    };
    let len: usize = std::str::from_utf8(&buf[..colon])
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "bad netstring length {:?}",
                String::from_utf8_lossy(&buf[..colon])
            )
        })?;
    let end = colon + 1 + len;
    if buf.len() <= end {
        return Ok(None);
    }
    if buf[end] != b',' {
        bail!("netstring of length {len} not terminated by ','");
    }
    Ok(Some((&buf[colon + 1..end], end + 1)))
}

fn config_text(
    o: &BaresipOptions,
    sip_port: u16,
    ctrl_port: u16,
    tone: &Path,
    rec: &Path,
) -> String {
    let mut c = format!(
        "\
poll_method epoll
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
call_local_timeout 120
call_max_calls 4
audio_source aufile,{tone}
audio_player aubridge,nil
audio_alert aubridge,nil
ausrc_srate {rate}
ausrc_channels 1
ausrc_format s16
auplay_format s16
auenc_format s16
audec_format s16
audio_buffer 20-160
audio_level no
rtp_tos 0
rtp_ports 40000-49998
rtcp_mux no
jitter_buffer_delay 5-10
rtp_stats no
module_path {MODULE_PATH}
module opus.so
module g711.so
module sndfile.so
module aufile.so
module aubridge.so
module_tmp uuid.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
snd_path {rec}
opus_bitrate 28000
statmode_default off
ringback_disabled yes
",
        tone = tone.display(),
        rate = o.tone_rate,
        rec = rec.display(),
    );
    if o.presence {
        // contact before presence: the presence module reads the contacts at load time.
        c.push_str("module_app contact.so\nmodule_app presence.so\n");
    } else if !o.contacts.is_empty() {
        c.push_str("module_app contact.so\n");
    }
    if let Some(ca) = &o.tls_ca {
        let _ = writeln!(c, "sip_cafile {}", ca.display());
    }
    if let Some(cert) = &o.tls_certificate {
        let _ = writeln!(c, "sip_certificate {}", cert.display());
    }
    for line in &o.extra_config {
        c.push_str(line);
        c.push('\n');
    }
    c
}

fn contacts_text(o: &BaresipOptions) -> String {
    o.watched
        .iter()
        .map(|uri| format!("<{uri}>;presence=p2p\n"))
        .chain(o.contacts.iter().map(|uri| format!("<{uri}>\n")))
        .collect()
}

fn account_line(o: &BaresipOptions, aor: &str) -> String {
    let mut line = format!(
        "<{aor}>;regint={};audio_codecs={};answermode={}",
        o.register_interval,
        o.codecs.account_value(),
        if o.auto_answer { "auto" } else { "manual" }
    );
    if let Some(proxy) = o.outbound_proxy {
        let transport = if o.outbound_tls {
            ";transport=tls"
        } else if o.outbound_tcp {
            ";transport=tcp"
        } else {
            ""
        };
        let _ = write!(line, ";outbound=\"sip:{proxy}{transport}\"");
    }
    if let Some(password) = &o.password {
        let _ = write!(line, ";auth_pass={password}");
    }
    if o.publish_interval > 0 {
        let _ = write!(line, ";pubint={}", o.publish_interval);
    }
    line
}

fn connect_ctrl(process: &mut Process, port: u16, log: &Path) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = process.try_status() {
            bail!("baresip exited with {status}\n{}", tail(log, 30));
        }
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => return Ok(stream),
            Err(err) if Instant::now() >= deadline => {
                bail!(
                    "baresip ctrl_tcp {addr} not up after 10 s: {err}\n{}",
                    tail(log, 30)
                )
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until the WAV at `path` has a header whose RIFF length matches the file size
/// (libsndfile fixes it up on close), or `timeout`.
fn wait_closed(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(bytes) = fs::read(path) {
            if bytes.len() >= 8 {
                let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
                if riff + 8 == bytes.len() {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_split_whole_partial_and_bad() {
        let two = b"5:hello,2:{},";
        let (body, used) = netstring_split(two).unwrap().unwrap();
        assert_eq!((body, used), (&b"hello"[..], 8));
        assert_eq!(netstring_split(&two[used..]).unwrap().unwrap().0, b"{}");
        assert_eq!(netstring_split(b"5:hel").unwrap(), None);
        assert_eq!(netstring_split(b"5:hello").unwrap(), None);
        assert_eq!(netstring_split(b"12").unwrap(), None);
        assert_eq!(netstring_split(b"").unwrap(), None);
        assert!(netstring_split(b"5:hello;").is_err());
        assert!(netstring_split(b"x:").is_err());
        assert!(netstring_split(b":").is_err());
        assert!(netstring_split(b"{\"a\"").is_err());
    }

    #[test]
    fn account_line_carries_codecs_answer_mode_and_proxy() {
        let mut o = BaresipOptions::new("alice", 440.0).codecs(Codecs::PcmuOnly);
        assert_eq!(
            account_line(&o, "sip:alice@127.0.0.1:5070"),
            "<sip:alice@127.0.0.1:5070>;regint=0;audio_codecs=PCMU/8000/1;answermode=manual"
        );
        o.auto_answer = true;
        o.register_interval = 60;
        o.password = Some("pw".into());
        o.outbound_proxy = Some("127.0.0.1:5060".parse().unwrap());
        assert_eq!(
            account_line(&o, "sip:alice@example.org"),
            "<sip:alice@example.org>;regint=60;audio_codecs=PCMU/8000/1;answermode=auto;\
             outbound=\"sip:127.0.0.1:5060\";auth_pass=pw"
        );
        o.outbound_tls = true;
        assert!(account_line(&o, "sip:alice@example.org")
            .contains(";outbound=\"sip:127.0.0.1:5060;transport=tls\";"));
        o.tls_ca = Some("/tmp/ca.pem".into());
        o.contacts = vec!["sip:bob@localhost".into()];
        let config = config_text(&o, 5070, 5071, Path::new("/t.wav"), Path::new("/rec"));
        assert!(config.contains("\nsip_cafile /tmp/ca.pem\n"), "{config}");
        assert!(config.contains("\nmodule_app contact.so\n"), "{config}");
        assert_eq!(contacts_text(&o), "<sip:bob@localhost>\n");
    }

    #[test]
    fn sip_trace_is_split_into_messages_with_direction() {
        let log = b"baresip is ready.\n\x1b[36;1m#\nUDP 127.0.0.1:5000 -> 127.0.0.1:6000\n\
INVITE sip:b@127.0.0.1:6000 SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n\
\x1b[;m\nua: something\n\x1b[36;1m#\nUDP 127.0.0.1:6000 -> 127.0.0.1:5000\n\
SIP/2.0 180 Ringing\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\x1b[;m\n";
        let trace = parse_sip_trace(log, 6000);
        assert_eq!(trace.len(), 2);
        assert!(trace[0].received);
        assert_eq!(trace[0].message.method(), Some("INVITE"));
        assert_eq!(trace[0].message.body, b"v=0\n");
        assert!(!trace[1].received);
        assert_eq!(trace[1].message.status(), Some(180));
        assert_eq!(trace[1].src, "127.0.0.1:6000");
        assert_eq!(trace[1].transport, "UDP");

        // TCP from an ephemeral port baresip opened: first message out, answers in.
        let log = b"\x1b[36;1m#\nTCP 127.0.0.1:40001 -> 127.0.0.1:5060\n\
INVITE sip:a@localhost SIP/2.0\r\nContent-Length: 0\r\n\r\n\x1b[;m\n\
\x1b[36;1m#\nTCP 127.0.0.1:5060 -> 127.0.0.1:40001\n\
SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n\x1b[;m\n";
        let trace = parse_sip_trace(log, 6000);
        assert_eq!(trace.len(), 2);
        assert!(!trace[0].received);
        assert!(trace[1].received);
        assert_eq!(trace[1].transport, "TCP");
    }

    #[test]
    fn contacts_output_gives_uri_and_status() {
        let data = "\n--- Contacts (3) ---\n>     \u{1b}[31mOffline\u{1b}[;m Carol <sip:carol@127.0.0.1:16001>\n\
                      \u{1b}[32mUnknown\u{1b}[;m  <sip:alice@localhost>\n\
                       \u{1b}[31mBusy\u{1b}[;m \"Bob B\" <sip:bob@x>\n\n";
        let contacts = parse_contacts(data);
        assert_eq!(
            contacts,
            vec![
                ContactPresence {
                    name: "Carol".into(),
                    uri: "sip:carol@127.0.0.1:16001".into(),
                    status: ContactStatus::Offline
                },
                ContactPresence {
                    name: "".into(),
                    uri: "sip:alice@localhost".into(),
                    status: ContactStatus::Unknown
                },
                ContactPresence {
                    name: "\"Bob B\"".into(),
                    uri: "sip:bob@x".into(),
                    status: ContactStatus::Busy
                },
            ]
        );
    }

    #[test]
    fn presence_options_write_pubint_and_contacts() {
        let o = BaresipOptions::new("b", 440.0)
            .publish_every(60)
            .watch("sip:carol@127.0.0.1:5070")
            .outbound("127.0.0.1:5060".parse().unwrap());
        assert!(o.presence);
        assert!(account_line(&o, "sip:b@sip.localhost")
            .ends_with(";outbound=\"sip:127.0.0.1:5060\";pubint=60"));
        assert_eq!(
            contacts_text(&o),
            "<sip:carol@127.0.0.1:5070>;presence=p2p\n"
        );
        let config = config_text(&o, 1, 2, Path::new("/t.wav"), Path::new("/rec"));
        assert!(config.contains("module_app contact.so\nmodule_app presence.so\n"));
    }

    #[test]
    fn events_are_read_from_ctrl_tcp_json() {
        let e = Event::from_json(json!({
            "event": true, "type": "CALL_DTMF_START", "class": "call",
            "direction": "incoming", "peeruri": "sip:a@127.0.0.1:1", "id": "c1", "param": "5"
        }));
        assert_eq!(e.kind, "CALL_DTMF_START");
        assert_eq!(e.param.as_deref(), Some("5"));
        assert_eq!(e.call_id.as_deref(), Some("c1"));
        assert_eq!(e.direction.as_deref(), Some("incoming"));
    }
}
