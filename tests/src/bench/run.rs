//! The two benchmark directions against a running Prosody and stox:
//!
//! * SIP → XMPP: one UDP socket sends `MESSAGE sip:userK@DOMAIN` (K round-robin over the XMPP
//!   clients) at the offered rate and counts stox's final responses (after its bounce window);
//!   the XMPP clients record arrivals (RFC 7572 §5, RFC 7247 §6).
//! * XMPP → SIP: the XMPP clients send `<message type='chat'/>` to
//!   `sink\40127.0.0.1\3aP@COMPONENT` (XEP-0106), split round-robin, at the offered rate in
//!   total; the sink UAS on 127.0.0.1:P answers `200 OK` and records arrivals.
//!
//! Each run gets a fresh [`Recorder`]; after the last send it drains until everything arrived
//! or nothing moved for the idle period, then reads CPU (sampled), stox's memory and the
//! kernel's UDP receive-buffer drops.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_xmpp::jid::Jid;

use super::body::{now_us, Stamp};
use super::pace::Pacer;
use super::procstat::{
    clock_ticks_per_second, cpu_ticks, load_average, memory, udp_rcvbuf_errors, CpuSampler, Memory,
};
use super::sip::{bind, count_responses, run_sink, SinkCounters};
use super::sipwire::message_request;
use super::stats::{Recorder, Slot, Summary};
use super::xmpp::{connect, BenchClient, Command};

/// Which way messages flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// SIP MESSAGE in, XMPP message out.
    SipToXmpp,
    /// XMPP message in, SIP MESSAGE out.
    XmppToSip,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::SipToXmpp => "SIP->XMPP",
            Direction::XmppToSip => "XMPP->SIP",
        })
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Which way.
    pub direction: Direction,
    /// Offered rate, msg/s.
    pub offered_rate: u64,
    /// Messages in the run.
    pub messages: u32,
    /// Counts, rates and latencies.
    #[serde(flatten)]
    pub summary: Summary,
    /// CPU% (100 = one core) of stox between the first send and the last arrival.
    pub cpu_stox: Option<f64>,
    /// CPU% of Prosody over the same window.
    pub cpu_prosody: Option<f64>,
    /// CPU% of the benchmark process itself over the same window.
    pub cpu_bench: Option<f64>,
    /// CPU% of stox's busiest thread (100: that thread is saturated).
    pub cpu_stox_thread: Option<f64>,
    /// CPU% of everything else on the machine (other users' builds, the kernel's softirqs
    /// outside these processes): machine busy minus stox, Prosody and the bench.
    pub cpu_others: Option<f64>,
    /// stox's CPU time (user + system) over the whole run, drain included, per message
    /// sent, µs: less sensitive to the machine's other load than the rates.
    pub stox_us_per_msg: Option<f64>,
    /// Prosody's CPU time over the whole run per message sent, µs.
    pub prosody_us_per_msg: Option<f64>,
    /// The 1-minute load average at the end of the run.
    pub load_average: Option<f64>,
    /// stox's memory at the end of the run (VmRSS) and its peak so far (VmHWM).
    pub stox_memory: Option<Memory>,
    /// UDP datagrams the kernel dropped for a full socket buffer during the run.
    pub udp_drops: Option<u64>,
    /// Wall time of the run including the drain, s.
    pub wall_s: f64,
}

/// Where the peers are.
#[derive(Clone, Debug)]
pub struct Peers {
    /// Prosody's c2s listener.
    pub c2s: SocketAddr,
    /// stox's SIP UDP listener.
    pub stox_sip: SocketAddr,
    /// The XMPP domain of the users.
    pub domain: String,
    /// stox's component domain.
    pub component: String,
    /// The XMPP users (`user1`..), all with `password`.
    pub users: Vec<String>,
    /// Their password.
    pub password: String,
    /// stox's PID.
    pub stox_pid: u32,
    /// Prosody's PID.
    pub prosody_pid: u32,
    /// The sink's UDP port.
    pub sink_port: u16,
}

/// A connected benchmark: XMPP clients, the SIP sink, the CPU sampler.
#[derive(Debug)]
pub struct Bench {
    peers: Peers,
    slot: Arc<Slot>,
    clients: Vec<BenchClient>,
    sink: JoinHandle<()>,
    sink_counters: Arc<SinkCounters>,
    sampler: CpuSampler,
    next_run: u32,
    drain_idle: Duration,
}

impl Bench {
    /// Logs the XMPP clients in, starts the sink and the CPU sampler.
    pub async fn connect(peers: Peers, drain_idle: Duration) -> Result<Bench> {
        let slot = Arc::new(Slot::default());
        let mut clients = Vec::new();
        for user in &peers.users {
            let jid = format!("{user}@{}", peers.domain);
            clients.push(connect(peers.c2s, &jid, &peers.password, slot.clone()).await?);
        }
        let sink_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, peers.sink_port));
        let socket = bind(sink_addr)
            .await
            .with_context(|| format!("binding the SIP sink on {sink_addr}"))?;
        let sink_counters = Arc::new(SinkCounters::default());
        let sink = tokio::spawn(run_sink(
            Arc::new(socket),
            slot.clone(),
            sink_counters.clone(),
        ));
        let sampler = CpuSampler::start(
            vec![peers.stox_pid, peers.prosody_pid, std::process::id()],
            Duration::from_millis(50),
        );
        Ok(Bench {
            peers,
            slot,
            clients,
            sink,
            sink_counters,
            sampler,
            next_run: 1,
            drain_idle,
        })
    }

    /// Runs `messages` messages at `rate` msg/s in `direction`.
    pub async fn run(
        &mut self,
        direction: Direction,
        rate: u64,
        messages: u32,
    ) -> Result<RunResult> {
        let run = self.next_run;
        self.next_run += 1;
        let recorder = Arc::new(Recorder::new(run, messages));
        self.slot.set(recorder.clone());
        let drops_before = udp_rcvbuf_errors();
        let ticks_before = [
            cpu_ticks(self.peers.stox_pid),
            cpu_ticks(self.peers.prosody_pid),
        ];
        let started = Instant::now();
        match direction {
            Direction::SipToXmpp => self.sip_to_xmpp(&recorder, rate, messages).await?,
            Direction::XmppToSip => self.xmpp_to_sip(&recorder, rate, messages).await?,
        }
        let ticks_after = [
            cpu_ticks(self.peers.stox_pid),
            cpu_ticks(self.peers.prosody_pid),
        ];
        let summary = recorder.summary();
        let sent = summary.sent;
        let per_msg = |i: usize| {
            let (Some(a), Some(b)) = (ticks_before[i], ticks_after[i]) else {
                return None;
            };
            let secs = b.saturating_sub(a) as f64 / clock_ticks_per_second();
            (sent > 0).then(|| secs * 1e6 / sent as f64)
        };
        let until = summary.last_arrival_us.max(summary.first_send_us + 1);
        let cpu = self.sampler.window(summary.first_send_us, until);
        let cpu_of = |i: usize| cpu.process.get(i).copied().flatten();
        let ours: Option<f64> = (0..3).map(cpu_of).sum();
        Ok(RunResult {
            direction,
            offered_rate: rate,
            messages,
            summary,
            cpu_stox: cpu_of(0),
            cpu_prosody: cpu_of(1),
            cpu_bench: cpu_of(2),
            cpu_stox_thread: cpu.busiest_thread.first().copied().flatten(),
            cpu_others: cpu.machine.zip(ours).map(|(m, o)| (m - o).max(0.0)),
            stox_us_per_msg: per_msg(0),
            prosody_us_per_msg: per_msg(1),
            load_average: load_average(),
            stox_memory: memory(self.peers.stox_pid),
            udp_drops: udp_rcvbuf_errors()
                .zip(drops_before)
                .map(|(after, before)| after.saturating_sub(before)),
            wall_s: started.elapsed().as_secs_f64(),
        })
    }

    async fn sip_to_xmpp(&self, recorder: &Arc<Recorder>, rate: u64, messages: u32) -> Result<()> {
        let socket = Arc::new(bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?);
        let local = socket.local_addr()?;
        let reader = tokio::spawn(count_responses(socket.clone(), recorder.clone()));
        let users = &self.peers.users;
        let run = recorder.run();
        let mut pacer = Pacer::new(rate, u64::from(messages));
        while let Some(batch) = pacer.next_batch().await {
            for seq in batch {
                // `seq < messages`, a u32.
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                let user = &users[seq as usize % users.len()];
                let at = now_us();
                let body = Stamp {
                    run,
                    seq,
                    sent_us: at,
                }
                .encode();
                let tx = format!("{run}-{seq}");
                let request = message_request(local, "carol", user, &self.peers.domain, &tx, &body);
                match socket
                    .send_to(request.as_bytes(), self.peers.stox_sip)
                    .await
                {
                    Ok(_) => recorder.on_sent(at),
                    Err(_) => recorder.on_send_failed(),
                }
            }
        }
        self.drain(recorder, messages, |r| {
            r.delivered() >= r.sent() && r.responses() >= r.sent()
        })
        .await;
        reader.abort();
        Ok(())
    }

    async fn xmpp_to_sip(&self, recorder: &Arc<Recorder>, rate: u64, messages: u32) -> Result<()> {
        let to: Jid = stox_tests::sip_contact_jid(
            "sink",
            "127.0.0.1",
            self.peers.sink_port,
            &self.peers.component,
        )
        .parse()
        .context("sink JID")?;
        let mut pacer = Pacer::new(rate, u64::from(messages));
        while let Some(batch) = pacer.next_batch().await {
            for seq in batch {
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                let client = &self.clients[seq as usize % self.clients.len()];
                let command = Command::Send {
                    to: to.clone(),
                    recorder: recorder.clone(),
                    seq,
                };
                if client.commands.send(command).await.is_err() {
                    recorder.on_send_failed();
                }
            }
        }
        self.drain(recorder, messages, |r| {
            r.delivered() + r.errors() >= r.sent()
        })
        .await;
        Ok(())
    }

    /// Waits until every message was sent and `done`, or nothing moved for the idle period.
    async fn drain(&self, recorder: &Recorder, messages: u32, done: impl Fn(&Recorder) -> bool) {
        let progress = |r: &Recorder| r.attempted() + r.delivered() + r.responses() + r.errors();
        let mut last = progress(recorder);
        let mut moved = Instant::now();
        loop {
            if recorder.attempted() >= u64::from(messages) && done(recorder) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = progress(recorder);
            if now != last {
                last = now;
                moved = Instant::now();
            } else if moved.elapsed() >= self.drain_idle {
                return;
            }
        }
    }

    /// Stream disconnections of the XMPP clients and requests the sink did not count.
    pub fn incidents(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let disconnects = self
            .clients
            .iter()
            .map(|c| c.counters.disconnects.load(Relaxed))
            .sum();
        let c = &self.sink_counters;
        (
            disconnects,
            c.other.load(Relaxed) + c.unparsed.load(Relaxed),
        )
    }

    /// Ends the XMPP streams and the sink.
    pub async fn close(self) {
        for client in self.clients {
            client.close().await;
        }
        self.sink.abort();
    }
}
