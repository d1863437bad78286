//! The presence benchmark's phases against a running Prosody and stox (RFC 8048):
//!
//! 1. **Establish** N subscriptions, half each way: SIP watchers `wK` SUBSCRIBE to XMPP users
//!    `presI` (who approve), and XMPP users `watI` subscribe to SIP contacts `cJ` (who
//!    answer and NOTIFY `active`). Offered at a rate; timed until every one is active.
//! 2. **Fan-out**: `pres1` changes presence; time until each of its SIP watchers got a NOTIFY
//!    whose PIDF note is the new status (older states are counted as stale, not as arrivals).
//! 3. **Burst**: every `presI` changes at once: NOTIFYs out of stox per second.
//! 4. **NOTIFY in**: the SIP contacts send NOTIFYs into stox's dialogs at an offered rate,
//!    round-robin over the dialogs; counted: `200`s, presence stanzas that reach the XMPP
//!    users (stox translates at most one NOTIFY per second per watch, the last state
//!    winning), and whether every dialog's last state arrived.
//!
//! Between phases the subscriptions are checked through `GET /api/v1/subscriptions` and
//! the `stox_presence_subscriptions` gauges on `/metrics`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::presence::Show;

use super::mem::{MemSampler, Range};
use super::sip::{codes_text, Contacts, Fanout, SubState, Watchers};
use super::xmpp::{connect, Board, Command, PresenceClient};
use crate::bench::body::now_us;
use crate::bench::pace::Pacer;
use crate::bench::procstat::{
    clock_ticks_per_second, cpu_ticks, load_average, memory, udp_rcvbuf_errors, CpuSampler,
};
use crate::bench::sip::bind;
use crate::bench::stats::{Recorder, Summary};
use stox_tests::stox::{http_request, ADMIN_TOKEN};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// Subscriptions in all, half each direction.
    pub subscriptions: usize,
    /// SIP watchers per watched XMPP user.
    pub per_user: usize,
    /// SIP contacts per watching XMPP user.
    pub contacts_per_user: usize,
    /// SUBSCRIBEs (and subscription requests) offered per second while establishing.
    pub subscribe_rate: u64,
    /// Fan-out rounds.
    pub fanout_rounds: u32,
    /// Burst rounds (every watched user changes at once).
    pub burst_rounds: u32,
    /// Offered NOTIFY rates into stox, per second.
    pub notify_rates: Vec<u64>,
    /// NOTIFYs per NOTIFY run.
    pub notify_count: u32,
    /// Runs per NOTIFY rate.
    pub notify_repeats: u32,
    /// Pause after the last NOTIFY to a watcher before the next change (stox sends at most
    /// one per subscription per 5 s), s.
    pub gap_secs: f64,
    /// A phase ends when it is complete or nothing moved for this long, s.
    pub idle_secs: f64,
    /// Establishment ends when complete or nothing moved for this long, s.
    pub establish_idle_secs: f64,
    /// Extra Prosody config (storage), as given.
    pub prosody_config: String,
    /// Pause between NOTIFY runs, s.
    pub settle_secs: f64,
}

/// Where the peers are.
#[derive(Clone, Debug)]
pub struct Peers {
    /// Prosody's c2s listener.
    pub c2s: SocketAddr,
    /// stox's SIP UDP listener.
    pub stox_sip: SocketAddr,
    /// stox's admin API.
    pub admin: SocketAddr,
    /// The XMPP domain.
    pub domain: String,
    /// stox's component domain.
    pub component: String,
    /// The password of every user.
    pub password: String,
    /// stox's PID.
    pub stox_pid: u32,
    /// Prosody's PID.
    pub prosody_pid: u32,
    /// XMPP users watched by SIP watchers (`pres1..`).
    pub watched: Vec<String>,
    /// XMPP users watching SIP contacts (`wat1..`).
    pub watching: Vec<String>,
}

/// CPU use over a phase, % of one core.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    /// stox.
    pub stox: Option<f64>,
    /// stox's busiest thread.
    pub stox_thread: Option<f64>,
    /// Prosody.
    pub prosody: Option<f64>,
    /// This process.
    pub bench: Option<f64>,
    /// Everything else on the machine.
    pub others: Option<f64>,
}

/// One direction of establishment.
#[derive(Clone, Debug, Serialize)]
pub struct Establish {
    /// `SIP->XMPP` (SIP watchers of XMPP users) or `XMPP->SIP`.
    pub direction: &'static str,
    /// Subscriptions asked for.
    pub subscriptions: usize,
    /// Offered rate, per second.
    pub offered_rate: u64,
    /// SUBSCRIBEs or subscription requests sent.
    pub sent: u64,
    /// SIP->XMPP: stox's final responses to the SUBSCRIBEs. XMPP->SIP: the SUBSCRIBEs the
    /// contacts received, as `200:N` (the contacts answer every one 200).
    pub responses: BTreeMap<u16, u64>,
    /// Subscriptions that became active (SIP->XMPP: NOTIFY active; XMPP->SIP: `subscribed`
    /// and available presence reached the XMPP user).
    pub active: u64,
    /// SIP->XMPP: watchers left pending. XMPP->SIP: contacts with a dialog but nothing
    /// (or only part) at the XMPP user.
    pub incomplete: u64,
    /// SIP->XMPP: watchers whose subscription was terminated.
    pub terminated: u64,
    /// First send to the last subscription becoming active, s.
    pub time_s: f64,
    /// active / time_s.
    pub per_second: f64,
    /// CPU over the phase.
    pub cpu: Cpu,
    /// stox CPU time per subscription, µs.
    pub stox_us_per_sub: Option<f64>,
    /// Prosody CPU time per subscription, µs.
    pub prosody_us_per_sub: Option<f64>,
    /// stox RSS before and after, MB.
    pub stox_rss_mb: (f64, f64),
    /// Prosody RSS before and after, MB.
    pub prosody_rss_mb: (f64, f64),
}

/// What stox says about its subscriptions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdminCheck {
    /// When (`after establish`, `at the end`).
    pub when: String,
    /// `GET /api/v1/subscriptions`: count by `direction state`.
    pub api: BTreeMap<String, u64>,
    /// `stox_presence_subscriptions{direction,state}` on `/metrics`.
    pub gauges: BTreeMap<String, f64>,
    /// Why the check failed, if it did.
    pub error: Option<String>,
}

impl AdminCheck {
    /// Subscriptions the API lists as `direction active`.
    pub fn active(&self, direction: &str) -> u64 {
        self.api
            .get(&format!("{direction} active"))
            .copied()
            .unwrap_or(0)
    }
}

/// One presence change (fan-out) or several at once (burst).
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    /// Round number.
    pub round: u32,
    /// XMPP users that changed.
    pub users: usize,
    /// The new `<show/>`.
    pub show: &'static str,
    /// SIP watchers that should be told.
    pub watchers: usize,
    /// Arrivals of the new state, stale NOTIFYs, duplicates, latency.
    #[serde(flatten)]
    pub summary: Summary,
    /// NOTIFYs with the new note but another `<show/>`.
    pub wrong_show: u64,
    /// First send to the first watcher told, ms.
    pub first_ms: Option<f64>,
    /// First send to the last watcher told, ms.
    pub complete_ms: f64,
    /// Watchers told per second (watchers / complete_ms).
    pub notify_per_s: f64,
    /// CPU over the round.
    pub cpu: Cpu,
    /// stox CPU time per NOTIFY, µs.
    pub stox_us_per_notify: Option<f64>,
    /// UDP datagrams the kernel dropped.
    pub udp_drops: Option<u64>,
}

/// One NOTIFY-in run.
#[derive(Clone, Debug, Serialize)]
pub struct NotifyRun {
    /// Offered NOTIFYs per second.
    pub offered_rate: u64,
    /// Dialogs the NOTIFYs went round-robin over.
    pub dialogs: usize,
    /// Sent, answered (`responses`), translated (`delivered`: presence stanzas with the
    /// note that reached the XMPP users), latency NOTIFY → presence.
    #[serde(flatten)]
    pub summary: Summary,
    /// NOTIFYs without a final response after the drain.
    pub unanswered: u64,
    /// Dialogs whose last NOTIFY's state is what the XMPP user saw last.
    pub final_state_ok: usize,
    /// Dialogs that got at least one NOTIFY.
    pub dialogs_used: usize,
    /// CPU over the run.
    pub cpu: Cpu,
    /// stox CPU time per NOTIFY sent, µs.
    pub stox_us_per_notify: Option<f64>,
    /// Prosody CPU time per NOTIFY sent, µs.
    pub prosody_us_per_notify: Option<f64>,
    /// UDP datagrams the kernel dropped.
    pub udp_drops: Option<u64>,
    /// stox RSS at the end, MB.
    pub stox_rss_mb: f64,
    /// Load average at the end.
    pub load: Option<f64>,
}

/// RSS over a phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseMemory {
    /// The phase.
    pub phase: String,
    /// stox.
    pub stox: Option<Range>,
    /// Prosody.
    pub prosody: Option<Range>,
}

/// Things that should not happen.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Incidents {
    /// XMPP stream disconnections.
    pub xmpp_disconnects: u64,
    /// Presence errors the XMPP users received.
    pub xmpp_presence_errors: u64,
    /// `unsubscribed` the XMPP users received from contacts.
    pub xmpp_unsubscribed: u64,
    /// Watchers whose subscription stox terminated.
    pub watchers_terminated: u64,
    /// Datagrams the watchers could not use.
    pub watcher_other: u64,
    /// Requests or datagrams the contacts could not use.
    pub contact_other: u64,
    /// New dialogs stox started for a contact that had one.
    pub contact_new_dialogs_again: u64,
    /// SUBSCRIBE refreshes the contacts received.
    pub contact_refreshes: u64,
    /// SUBSCRIBE retransmissions the contacts received.
    pub contact_retransmissions: u64,
    /// Contacts with a dialog at the end (of those watched).
    pub contact_dialogs_at_end: usize,
    /// Responses to the contacts' first NOTIFYs, `200:N`.
    pub contact_initial_notify_responses: String,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Establishment, per direction.
    pub establish: Vec<Establish>,
    /// stox's own view of its subscriptions.
    pub checks: Vec<AdminCheck>,
    /// Fan-out rounds.
    pub fanout: Vec<FanoutResult>,
    /// Burst rounds.
    pub burst: Vec<FanoutResult>,
    /// NOTIFY-in runs.
    pub notify_in: Vec<NotifyRun>,
    /// RSS per phase.
    pub memory: Vec<PhaseMemory>,
    /// Incidents.
    pub incidents: Incidents,
}

/// The benchmark, connected.
pub struct PresenceBench {
    opts: Options,
    peers: Peers,
    watchers: Arc<Watchers>,
    contacts: Arc<Contacts>,
    board: Arc<Board>,
    /// Clients of `peers.watched`, then of `peers.watching`.
    watched: Vec<PresenceClient>,
    watching: Vec<PresenceClient>,
    tasks: Vec<JoinHandle<()>>,
    cpu: CpuSampler,
    mem: MemSampler,
    next_run: u32,
}

/// The SIP→XMPP and XMPP→SIP shares of `n` subscriptions.
pub fn split(n: usize) -> (usize, usize) {
    (n / 2, n - n / 2)
}

/// How many users `n` subscriptions need at `per_user` each.
pub fn users_for(n: usize, per_user: usize) -> usize {
    n.div_ceil(per_user.max(1))
}

const SHOWS: [(Show, &str); 4] = [
    (Show::Away, "away"),
    (Show::Dnd, "dnd"),
    (Show::Xa, "xa"),
    (Show::Chat, "chat"),
];

impl PresenceBench {
    /// Binds the SIP UAs, logs the XMPP users in, starts the samplers.
    pub async fn connect(opts: Options, peers: Peers) -> Result<PresenceBench> {
        let (to_xmpp, to_sip) = split(opts.subscriptions);
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let watchers = Watchers::new(Arc::new(bind(any).await?), to_xmpp)?;
        let contacts = Contacts::new(Arc::new(bind(any).await?), to_sip)?;
        let board = Arc::new(Board::new(to_sip, contacts.local(), &peers.component));
        eprintln!(
            "[bench-presence] SIP watchers on {}, SIP contacts on {}; logging {} XMPP users in",
            watchers.local(),
            contacts.local(),
            peers.watched.len() + peers.watching.len()
        );
        let tasks = vec![
            tokio::spawn(watchers.clone().run()),
            tokio::spawn(contacts.clone().run()),
        ];
        let mut watched = Vec::new();
        for user in &peers.watched {
            let jid = format!("{user}@{}", peers.domain);
            watched.push(connect(peers.c2s, &jid, &peers.password, board.clone()).await?);
        }
        let mut watching = Vec::new();
        for user in &peers.watching {
            let jid = format!("{user}@{}", peers.domain);
            watching.push(connect(peers.c2s, &jid, &peers.password, board.clone()).await?);
        }
        let pids = vec![peers.stox_pid, peers.prosody_pid, std::process::id()];
        let cpu = CpuSampler::start(pids.clone(), Duration::from_millis(100));
        let mem = MemSampler::start(pids, Duration::from_millis(500));
        Ok(PresenceBench {
            opts,
            peers,
            watchers,
            contacts,
            board,
            watched,
            watching,
            tasks,
            cpu,
            mem,
            next_run: 1,
        })
    }

    fn run_id(&mut self) -> u32 {
        let r = self.next_run;
        self.next_run += 1;
        r
    }

    fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.opts.idle_secs)
    }

    fn gap(&self) -> Duration {
        Duration::from_secs_f64(self.opts.gap_secs)
    }

    fn cpu(&self, from_us: u64, to_us: u64) -> Cpu {
        let w = self.cpu.window(from_us, to_us.max(from_us + 1));
        let of = |i: usize| w.process.get(i).copied().flatten();
        let ours: Option<f64> = (0..3).map(of).sum();
        Cpu {
            stox: of(0),
            stox_thread: w.busiest_thread.first().copied().flatten(),
            prosody: of(1),
            bench: of(2),
            others: w.machine.zip(ours).map(|(m, o)| (m - o).max(0.0)),
        }
    }

    fn rss_mb(&self, pid: u32) -> f64 {
        memory(pid).map_or(0.0, |m| m.rss_kb as f64 / 1024.0)
    }

    fn ticks(&self) -> [Option<u64>; 2] {
        [
            cpu_ticks(self.peers.stox_pid),
            cpu_ticks(self.peers.prosody_pid),
        ]
    }

    /// Waits until `done`, or nothing moved (`progress` unchanged) for the idle period.
    async fn wait(&self, progress: impl Fn() -> u64, done: impl Fn() -> bool) {
        self.wait_idle(self.idle(), progress, done).await;
    }

    /// [`Self::wait`] with another idle period.
    async fn wait_idle(&self, idle: Duration, progress: impl Fn() -> u64, done: impl Fn() -> bool) {
        let mut last = progress();
        let mut moved = Instant::now();
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = progress();
            if now != last {
                last = now;
                moved = Instant::now();
            } else if moved.elapsed() >= idle {
                return;
            }
        }
    }

    /// Phase 1, SIP→XMPP: the SIP watchers subscribe; the XMPP users approve.
    pub async fn establish_sip_watchers(&mut self) -> Result<Establish> {
        let n = self.watchers.len();
        let (rss0, prss0) = (
            self.rss_mb(self.peers.stox_pid),
            self.rss_mb(self.peers.prosody_pid),
        );
        let ticks0 = self.ticks();
        let t0 = now_us();
        let mut pacer = Pacer::new(self.opts.subscribe_rate, n as u64);
        let mut sent = 0u64;
        while let Some(batch) = pacer.next_batch().await {
            for k in batch {
                let k = usize::try_from(k).unwrap_or(usize::MAX);
                let user = &self.peers.watched[k / self.opts.per_user.max(1)];
                self.watchers
                    .subscribe(k, user, &self.peers.domain, self.peers.stox_sip)
                    .await
                    .context("sending SUBSCRIBE")?;
                sent += 1;
            }
        }
        let c = &self.watchers.counters;
        self.wait_idle(
            Duration::from_secs_f64(self.opts.establish_idle_secs),
            || {
                c.subscribe_responses.total()
                    + c.notifies.load(Relaxed)
                    + self.board.approvals.load(Relaxed)
            },
            || c.active.load(Relaxed) + c.terminated.load(Relaxed) >= n as u64,
        )
        .await;
        let end = c.last_active_us.load(Relaxed).max(t0 + 1);
        let states: Vec<SubState> = (0..n).map(|k| self.watchers.state(k)).collect();
        let active = states.iter().filter(|s| **s == SubState::Active).count() as u64;
        let terminated = states
            .iter()
            .filter(|s| **s == SubState::Terminated)
            .count() as u64;
        Ok(self.establish_result(
            "SIP->XMPP",
            n,
            sent,
            c.subscribe_responses.get(),
            (active, n as u64 - active - terminated, terminated),
            (t0, end),
            ticks0,
            (rss0, prss0),
        ))
    }

    /// Phase 1, XMPP→SIP: the XMPP users subscribe to the SIP contacts.
    pub async fn establish_sip_contacts(&mut self) -> Result<Establish> {
        let n = self.contacts.len();
        let (rss0, prss0) = (
            self.rss_mb(self.peers.stox_pid),
            self.rss_mb(self.peers.prosody_pid),
        );
        let ticks0 = self.ticks();
        let t0 = now_us();
        let mut pacer = Pacer::new(self.opts.subscribe_rate, n as u64);
        let mut sent = 0u64;
        while let Some(batch) = pacer.next_batch().await {
            for j in batch {
                let j = usize::try_from(j).unwrap_or(usize::MAX);
                let client = &self.watching[j / self.opts.contacts_per_user.max(1)];
                let to: Jid = self.board.contact_jid(j).parse().context("contact JID")?;
                client
                    .commands
                    .send(Command::Subscribe(to))
                    .await
                    .map_err(|_| anyhow!("XMPP client gone"))?;
                sent += 1;
            }
        }
        let b = &self.board;
        let cc = &self.contacts.counters;
        self.wait_idle(
            Duration::from_secs_f64(self.opts.establish_idle_secs),
            || {
                b.subscribed.load(Relaxed)
                    + b.available.load(Relaxed)
                    + cc.dialogs.load(Relaxed)
                    + cc.initial_notify_responses.total()
            },
            || b.established() >= n,
        )
        .await;
        let end = b.last_established_us.load(Relaxed).max(t0 + 1);
        let active = b.established() as u64;
        let dialogs = cc.dialogs.load(Relaxed);
        let responses = BTreeMap::from([(200u16, dialogs)]);
        Ok(self.establish_result(
            "XMPP->SIP",
            n,
            sent,
            responses,
            (active, n as u64 - active, 0),
            (t0, end),
            ticks0,
            (rss0, prss0),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn establish_result(
        &self,
        direction: &'static str,
        n: usize,
        sent: u64,
        responses: BTreeMap<u16, u64>,
        (active, incomplete, terminated): (u64, u64, u64),
        (t0, end): (u64, u64),
        ticks0: [Option<u64>; 2],
        (rss0, prss0): (f64, f64),
    ) -> Establish {
        let ticks1 = self.ticks();
        let per = |i: usize| {
            let (a, b) = (ticks0[i]?, ticks1[i]?);
            (n > 0).then(|| b.saturating_sub(a) as f64 / clock_ticks_per_second() * 1e6 / n as f64)
        };
        let time_s = end.saturating_sub(t0) as f64 / 1e6;
        Establish {
            direction,
            subscriptions: n,
            offered_rate: self.opts.subscribe_rate,
            sent,
            responses,
            active,
            incomplete,
            terminated,
            time_s,
            per_second: if time_s > 0.0 {
                active as f64 / time_s
            } else {
                0.0
            },
            cpu: self.cpu(t0, end),
            stox_us_per_sub: per(0),
            prosody_us_per_sub: per(1),
            stox_rss_mb: (rss0, self.rss_mb(self.peers.stox_pid)),
            prosody_rss_mb: (prss0, self.rss_mb(self.peers.prosody_pid)),
        }
    }

    /// stox's view: `GET /api/v1/subscriptions` and the gauges on `/metrics`.
    pub async fn check(&self, when: &str) -> AdminCheck {
        // stox publishes the gauges once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let admin = self.peers.admin;
        let fetched = tokio::task::spawn_blocking(move || {
            let subs = http_request(
                admin,
                "GET",
                "/api/v1/subscriptions",
                Some(ADMIN_TOKEN),
                None,
            )?;
            let metrics = http_request(admin, "GET", "/metrics", Some(ADMIN_TOKEN), None)?;
            anyhow::Ok((subs, metrics))
        })
        .await;
        let mut check = AdminCheck {
            when: when.to_string(),
            ..AdminCheck::default()
        };
        let (subs, metrics) = match fetched {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                check.error = Some(e.to_string());
                return check;
            }
            Err(e) => {
                check.error = Some(e.to_string());
                return check;
            }
        };
        match subs.json() {
            Ok(serde_json::Value::Array(list)) => {
                for s in list {
                    let field = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("?");
                    let key = format!("{} {}", field("direction"), field("state"));
                    *check.api.entry(key).or_insert(0) += 1;
                }
            }
            Ok(other) => check.error = Some(format!("subscriptions: not a list: {other}")),
            Err(e) => check.error = Some(format!("subscriptions {}: {e}", subs.status)),
        }
        check.gauges = subscription_gauges(&metrics.body);
        check
    }

    /// Phase 2 and 3: `users` (indexes into the watched users) change presence at once; each
    /// of their SIP watchers should get a NOTIFY with the new state.
    pub async fn change(&mut self, round: u32, users: usize) -> Result<FanoutResult> {
        let users = users.min(self.watched.len()).max(1);
        let per_user = self.opts.per_user.max(1);
        let watchers = (users * per_user).min(self.watchers.len());
        let run = self.run_id();
        let (show, show_name) = SHOWS[round as usize % SHOWS.len()].clone();
        let fanout = Arc::new(Fanout::new(run, 0..watchers, Some(show_name)));
        self.watchers.set_fanout(fanout.clone());
        let drops0 = udp_rcvbuf_errors();
        let ticks0 = self.ticks();
        let mut sent = Vec::new();
        for client in &self.watched[..users] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            client
                .commands
                .send(Command::Change {
                    run,
                    show: show.clone(),
                    sent: Some(tx),
                })
                .await
                .map_err(|_| anyhow!("XMPP client gone"))?;
            sent.push(rx);
        }
        let mut first = u64::MAX;
        for rx in sent {
            let at = rx.await.context("XMPP client did not send")?;
            first = first.min(at);
        }
        let rec = &fanout.recorder;
        for _ in 0..watchers {
            rec.on_sent(first);
        }
        self.wait(
            || rec.delivered() + rec.summary().foreign,
            || rec.delivered() >= watchers as u64,
        )
        .await;
        let ticks1 = self.ticks();
        let summary = rec.summary();
        let end = summary.last_arrival_us.max(first + 1);
        let complete_ms = end.saturating_sub(first) as f64 / 1e3;
        let stox_us = ticks0[0].zip(ticks1[0]).map(|(a, b)| {
            b.saturating_sub(a) as f64 / clock_ticks_per_second() * 1e6 / watchers.max(1) as f64
        });
        Ok(FanoutResult {
            round,
            users,
            show: show_name,
            watchers,
            wrong_show: fanout.wrong_show.load(Relaxed),
            first_ms: Some(fanout.first_arrival_us.load(Relaxed))
                .filter(|t| *t != u64::MAX)
                .map(|t| t.saturating_sub(first) as f64 / 1e3),
            notify_per_s: summary.delivered as f64 / (complete_ms / 1e3).max(1e-6),
            complete_ms,
            summary,
            cpu: self.cpu(first, end),
            stox_us_per_notify: stox_us,
            udp_drops: udp_rcvbuf_errors()
                .zip(drops0)
                .map(|(a, b)| a.saturating_sub(b)),
        })
    }

    /// Phases 2 and 3: `rounds` changes of `users` users, `gap` apart.
    pub async fn changes(&mut self, rounds: u32, users: usize) -> Result<Vec<FanoutResult>> {
        let mut out = Vec::new();
        for round in 0..rounds {
            tokio::time::sleep(self.gap()).await;
            let r = self.change(round, users).await?;
            eprintln!(
                "[bench-presence] {} user(s) changed: {}/{} watchers told in {:.0} ms (p50 {:.1} ms), stale {}, stox {:.0}%",
                r.users,
                r.summary.delivered,
                r.watchers,
                r.complete_ms,
                r.summary.p50_us as f64 / 1e3,
                r.summary.foreign,
                r.cpu.stox.unwrap_or(0.0)
            );
            out.push(r);
        }
        Ok(out)
    }

    /// Phase 4: `count` NOTIFYs at `rate` per second into the contacts' dialogs.
    pub async fn notify_in(&mut self, rate: u64, count: u32) -> Result<NotifyRun> {
        let run = self.run_id();
        let recorder = Arc::new(Recorder::new(run, count));
        self.board.slot.set(recorder.clone());
        self.contacts.slot.set(recorder.clone());
        let dialogs = self.contacts.len().max(1);
        let drops0 = udp_rcvbuf_errors();
        let ticks0 = self.ticks();
        let mut pacer = Pacer::new(rate, u64::from(count));
        while let Some(batch) = pacer.next_batch().await {
            for seq in batch {
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                let j = seq as usize % dialogs;
                if !self
                    .contacts
                    .notify(j, &recorder, seq, self.peers.stox_sip)
                    .await
                {
                    recorder.on_send_failed();
                }
            }
        }
        let used = (count as usize).min(dialogs);
        let expected = |j: usize| -> u64 {
            // The last sequence number sent to dialog j.
            let last = j + dialogs * ((count as usize - 1 - j) / dialogs);
            u64::from(run) << 32 | (last as u64 + 1)
        };
        let final_ok = || {
            (0..used)
                .filter(|&j| self.board.contacts[j].last.load(Relaxed) == expected(j))
                .count()
        };
        self.wait(
            || recorder.responses() + recorder.delivered(),
            || recorder.responses() >= recorder.sent() && final_ok() >= used,
        )
        .await;
        let ticks1 = self.ticks();
        let summary = recorder.summary();
        let sent = summary.sent;
        let per = |i: usize| {
            let (a, b) = (ticks0[i]?, ticks1[i]?);
            (sent > 0)
                .then(|| b.saturating_sub(a) as f64 / clock_ticks_per_second() * 1e6 / sent as f64)
        };
        let end = summary.last_arrival_us.max(summary.first_send_us + 1);
        let responses: u64 = summary.responses.values().sum();
        Ok(NotifyRun {
            offered_rate: rate,
            dialogs,
            unanswered: sent.saturating_sub(responses),
            final_state_ok: final_ok(),
            dialogs_used: used,
            cpu: self.cpu(summary.first_send_us, end),
            stox_us_per_notify: per(0),
            prosody_us_per_notify: per(1),
            udp_drops: udp_rcvbuf_errors()
                .zip(drops0)
                .map(|(a, b)| a.saturating_sub(b)),
            stox_rss_mb: self.rss_mb(self.peers.stox_pid),
            load: load_average(),
            summary,
        })
    }

    /// Runs every phase.
    pub async fn run_all(&mut self) -> Result<Results> {
        let mut memory = Vec::new();
        let t_start = now_us();
        let mut establish = Vec::new();
        eprintln!(
            "[bench-presence] establishing {} SIP watchers of {} XMPP users",
            self.watchers.len(),
            self.peers.watched.len()
        );
        let e = self.establish_sip_watchers().await?;
        eprintln!(
            "[bench-presence] SIP->XMPP: {}/{} active in {:.1} s, SUBSCRIBE responses {}",
            e.active,
            e.subscriptions,
            e.time_s,
            codes_text(&e.responses)
        );
        establish.push(e);
        eprintln!(
            "[bench-presence] establishing {} watches of SIP contacts by {} XMPP users",
            self.contacts.len(),
            self.peers.watching.len()
        );
        let e = self.establish_sip_contacts().await?;
        eprintln!(
            "[bench-presence] XMPP->SIP: {}/{} active in {:.1} s",
            e.active, e.subscriptions, e.time_s
        );
        establish.push(e);
        let t_established = now_us();
        memory.push(self.phase_memory("establish", t_start, t_established));
        let mut checks = vec![self.check("after establish").await];

        let t = now_us();
        let fanout = self.changes(self.opts.fanout_rounds, 1).await?;
        memory.push(self.phase_memory("fan-out", t, now_us()));

        let t = now_us();
        let all = self.watched.len();
        let burst = self.changes(self.opts.burst_rounds, all).await?;
        memory.push(self.phase_memory("burst", t, now_us()));

        let t = now_us();
        let mut notify_in = Vec::new();
        let rates = self.opts.notify_rates.clone();
        for rate in rates {
            for _ in 0..self.opts.notify_repeats {
                tokio::time::sleep(Duration::from_secs_f64(self.opts.settle_secs)).await;
                let r = self.notify_in(rate, self.opts.notify_count).await?;
                eprintln!(
                    "[bench-presence] NOTIFY in at {rate}/s: sent {}, answered {}, translated {}, final state {}/{}, stox {:.0}%",
                    r.summary.sent,
                    r.summary.sent - r.unanswered,
                    r.summary.delivered,
                    r.final_state_ok,
                    r.dialogs_used,
                    r.cpu.stox.unwrap_or(0.0)
                );
                notify_in.push(r);
            }
        }
        memory.push(self.phase_memory("NOTIFY in", t, now_us()));
        tokio::time::sleep(Duration::from_secs_f64(self.opts.settle_secs)).await;
        checks.push(self.check("at the end").await);
        memory.push(self.phase_memory("whole run", t_start, now_us()));
        Ok(Results {
            establish,
            checks,
            fanout,
            burst,
            notify_in,
            memory,
            incidents: self.incidents(),
        })
    }

    fn phase_memory(&self, phase: &str, from_us: u64, to_us: u64) -> PhaseMemory {
        PhaseMemory {
            phase: phase.to_string(),
            stox: self.mem.range(0, from_us, to_us),
            prosody: self.mem.range(1, from_us, to_us),
        }
    }

    fn incidents(&self) -> Incidents {
        let w = &self.watchers.counters;
        let c = &self.contacts.counters;
        let b = &self.board;
        Incidents {
            xmpp_disconnects: b.disconnects.load(Relaxed),
            xmpp_presence_errors: b.errors.load(Relaxed),
            xmpp_unsubscribed: b.unsubscribed.load(Relaxed),
            watchers_terminated: w.terminated.load(Relaxed),
            watcher_other: w.other.load(Relaxed),
            contact_other: c.other.load(Relaxed),
            contact_new_dialogs_again: c.new_dialogs_again.load(Relaxed),
            contact_refreshes: c.refreshes.load(Relaxed),
            contact_retransmissions: c.retransmissions.load(Relaxed),
            contact_dialogs_at_end: self.contacts.established(),
            contact_initial_notify_responses: c.initial_notify_responses.text(),
        }
    }

    /// Ends the XMPP streams and the SIP UAs.
    pub async fn close(self) {
        for client in self.watched.into_iter().chain(self.watching) {
            client.close().await;
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

/// `stox_presence_subscriptions{direction="D",state="S"} V` lines as `D S` → V.
pub fn subscription_gauges(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("stox_presence_subscriptions{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once('}')?;
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
                })
            };
            let key = format!("{} {}", label("direction")?, label("state")?);
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_users() {
        assert_eq!(split(10_000), (5_000, 5_000));
        assert_eq!(split(7), (3, 4));
        assert_eq!(users_for(5_000, 1_000), 5);
        assert_eq!(users_for(5_001, 1_000), 6);
        assert_eq!(users_for(0, 1_000), 0);
    }

    #[test]
    fn gauges_from_metrics_text() {
        let text = "# TYPE stox_presence_subscriptions gauge\n\
            stox_presence_subscriptions{direction=\"sip_to_xmpp\",state=\"active\"} 5000\n\
            stox_presence_subscriptions{direction=\"xmpp_to_sip\",state=\"pending\"} 2\n\
            stox_presence_notify_total{direction=\"in\"} 7\n";
        let g = subscription_gauges(text);
        assert_eq!(g.len(), 2);
        assert_eq!(g.get("sip_to_xmpp active"), Some(&5000.0));
        assert_eq!(g.get("xmpp_to_sip pending"), Some(&2.0));
    }
}
