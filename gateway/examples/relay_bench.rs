//! Relay benchmark (issue 3): N concurrent audio calls through the media relay on loopback,
//! 50 packets/s each way, DTLS-SRTP on the XMPP leg (a str0m client per call) and plain RTP on
//! the SIP leg (a "phone" per call).
//!
//! ```text
//! cargo run --release -p stox-gateway --example relay_bench -- [--calls N] [--secs S] [--warmup W]
//! ```
//!
//! Two processes. This one plays stox: it runs only the [`Relay`] (on a tokio multi-thread
//! runtime, as `stox` does) and measures its own CPU and memory. It re-executes itself with
//! `--peers` to run the simulated XMPP clients and phones, so their CPU (SRTP, str0m) is not
//! billed to the relay; the two exchange ICE/DTLS parameters over the child's stdin/stdout.
//!
//! What is measured, and how:
//! - **Added latency**: per packet, the sending peer reads `CLOCK_REALTIME` immediately before
//!   its `sendto` of the wire datagram (for the SRTP client: after str0m encrypted it, keyed by
//!   RTP sequence number), and the receiving peer takes the kernel's receive timestamp
//!   (`SO_TIMESTAMPNS`) of the datagram the relay sent. The difference is the relay's queueing
//!   and processing plus two loopback hops, without the peers' own encryption or scheduling.
//!   A control pair of sockets in the peer process measures the loopback hop alone.
//! - **Loss**: per direction, datagrams the peers put on the wire against datagrams that came
//!   back, over the whole media phase plus a drain (until nothing arrived for 1 s, at most
//!   30 s: late packets are not lost); the relay's own counters and the
//!   kernel's per-socket drop counters (`/proc/net/udp`) say where a loss happened.
//! - **CPU**: utime + stime of each process (`/proc/self/stat`) over the measurement window
//!   (media phase minus the warm-up), per 1,000 packets the relay sent (both legs), and the
//!   whole machine's busy time (`/proc/stat`) to show what the other engineers' jobs took.
//! - **Memory**: the relay process's VmRSS before the calls, after they are created, after
//!   DTLS, and at the end of the media phase; per call = delta / N.
//!
//! The last line, `RESULT key=value ...`, is what `scripts/bench-relay` collects.

use std::collections::HashSet;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use stox_gateway::media::relay::{
    AudioCodec, CallCounters, CallMedia, PtMap, PtPair, Relay, RelayConfig, RelayEventKind,
    RemoteCandidate, Setup, SipLegParams, XmppLegParams, XmppRemote,
};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;

type Res<T> = Result<T, Box<dyn Error>>;

/// RTP audio at 20 ms packetisation: 50 packets/s.
const PTIME: Duration = Duration::from_millis(20);
/// Receivers stop once nothing has arrived for this long after the senders stopped...
const DRAIN: Duration = Duration::from_secs(1);
/// ...or this long after the senders stopped: what is still queued then counts as lost.
const MAX_DRAIN: Duration = Duration::from_secs(30);
/// The client's SSRC on the XMPP leg, and the phone's on the SIP leg.
const CLIENT_SSRC: u32 = 7;
const PHONE_SSRC: u32 = 9;
/// PCMU at 8 kHz, 20 ms.
const PAYLOAD: usize = 160;

#[derive(Debug, Clone, Copy)]
struct Opts {
    calls: usize,
    secs: u64,
    warmup: u64,
    port_min: u16,
}

const USAGE: &str = "\
relay_bench: N concurrent audio calls through the stox media relay (issue 3)

usage: relay_bench [--calls N] [--secs S] [--warmup W] [--port-min P]
       relay_bench N [S]            (the same, positionally)

  --calls N     concurrent calls (default 100)
  --secs S      media phase per run, seconds (default 20)
  --warmup W    seconds at the start of the media phase left out of latency and CPU (default 2)
  --port-min P  first port of the relay's range (default 20000; 4 ports per call)

Each call: 50 packets/s each way, PCMU 160-byte payloads, DTLS-SRTP on the XMPP leg, plain RTP
on the SIP leg. The relay runs in this process; the simulated peers in a child process.";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        calls: 100,
        secs: 20,
        warmup: 2,
        port_min: 20_000,
    };
    let mut positional = 0;
    let mut it = args.iter();
    let num = |v: Option<&String>, what: &str| -> Result<u64, String> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} wants a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--calls" => o.calls = num(it.next(), "--calls")? as usize,
            "--secs" => o.secs = num(it.next(), "--secs")?,
            "--warmup" => o.warmup = num(it.next(), "--warmup")?,
            "--port-min" => {
                o.port_min = u16::try_from(num(it.next(), "--port-min")?)
                    .map_err(|_| "--port-min is a port".to_string())?
            }
            s if !s.starts_with('-') && positional < 2 => {
                let v = num(Some(a), "a positional argument")?;
                if positional == 0 {
                    o.calls = v as usize;
                } else {
                    o.secs = v;
                }
                positional += 1;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.calls == 0 || o.warmup >= o.secs {
        return Err("need at least one call and --warmup < --secs".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let peers = args.first().is_some_and(|a| a == "--peers");
    let opts = match parse_opts(if peers { &args[1..] } else { &args }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("relay_bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay_bench: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = if peers {
        runtime.block_on(peers_main(opts))
    } else {
        runtime.block_on(relay_main(opts))
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_bench{}: {e}", if peers { " (peers)" } else { "" });
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readers

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of this process, in milliseconds.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 * 1000.0 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, first line).
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The kernel's receive-buffer drops summed over the given loopback ports (`/proc/net/udp`).
fn udp_drops(ports: &HashSet<u16>) -> u64 {
    let s = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            (ip == "0100007F" && ports.contains(&port)).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sorted-sample percentile, in microseconds from nanoseconds.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn kv(line: &str) -> std::collections::HashMap<String, f64> {
    line.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The relay process (stox's side)

fn sum_counters(relay: &Relay) -> CallCounters {
    let mut t = CallCounters::default();
    for c in relay.calls() {
        let (x, s) = (c.counters.xmpp, c.counters.sip);
        t.xmpp.packets_in += x.packets_in;
        t.xmpp.packets_out += x.packets_out;
        t.xmpp.dropped += x.dropped;
        t.sip.packets_in += s.packets_in;
        t.sip.packets_out += s.packets_out;
        t.sip.dropped += s.dropped;
    }
    t
}

async fn relay_main(o: Opts) -> Res<()> {
    let load_start = loadavg();
    let rss0 = status_kib("VmRSS:");
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--peers",
            "--calls",
            &o.calls.to_string(),
            "--secs",
            &o.secs.to_string(),
            "--warmup",
            &o.warmup.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let peer_pid = child.id();
    let mut to_peers = child.stdin.take().ok_or("no stdin to the peers")?;
    let mut from_peers = BufReader::new(child.stdout.take().ok_or("no stdout from the peers")?);
    let mut line = String::new();
    let mut next_line = |line: &mut String| -> Res<()> {
        line.clear();
        if from_peers.read_line(line)? == 0 {
            return Err("the peer process exited".into());
        }
        Ok(())
    };

    let (relay, mut events) = Relay::new(RelayConfig {
        address: "127.0.0.1".parse()?,
        port_min: o.port_min,
        port_max: o
            .port_min
            .saturating_add(u16::try_from(o.calls * 4 + 64).unwrap_or(u16::MAX)),
    })?;
    let pt_map = PtMap::new(vec![PtPair::new(AudioCodec::Pcmu, 0, 0)])?;
    let mut relay_ports = HashSet::new();
    let t_create = Instant::now();
    // Lock-step with the peer process: it describes a client and a phone, the relay answers.
    for _ in 0..o.calls {
        next_line(&mut line)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let [tag, ufrag, pwd, hash, fp, client, phone] = f[..] else {
            return Err(format!("bad peer line {line:?}").into());
        };
        if tag != "P" {
            return Err(format!("bad peer line {line:?}").into());
        }
        let client: SocketAddr = client.parse()?;
        let phone: SocketAddr = phone.parse()?;
        let started = relay.spawn_call(CallMedia {
            xmpp: XmppLegParams {
                we_offer: false,
                content_name: "audio".into(),
                remote: Some(XmppRemote {
                    ufrag: ufrag.into(),
                    pwd: pwd.into(),
                    fingerprint_hash: hash.into(),
                    fingerprint: fp.into(),
                    setup: Setup::Actpass,
                    ssrcs: vec![CLIENT_SSRC],
                    candidates: vec![RemoteCandidate {
                        foundation: "1".into(),
                        component: 1,
                        protocol: "udp".into(),
                        priority: 2_130_706_431,
                        addr: client,
                        kind: "host".into(),
                        related: None,
                    }],
                }),
                extensions: vec![],
            },
            sip: SipLegParams {
                remote: Some(phone),
                // The phone reads RTCP on its RTP socket and ignores it.
                remote_rtcp: Some(phone),
                rtcp_mux: false,
            },
            pt_map: pt_map.clone(),
            no_media_timeout: Duration::from_secs(60),
        })?;
        let x = &started.xmpp;
        let cand = x.candidates.first().ok_or("no relay candidate")?.addr;
        relay_ports.extend([cand.port(), started.sip.rtp.port(), started.sip.rtcp.port()]);
        writeln!(
            to_peers,
            "C {} {} {} {} {} {} {}",
            x.ufrag, x.pwd, x.fingerprint_hash, x.fingerprint, x.ssrc, cand, started.sip.rtp
        )?;
        to_peers.flush()?;
    }
    let rss_created = status_kib("VmRSS:");
    let created_in = t_create.elapsed();

    // Wait for every call's ICE + DTLS.
    let (mut up, mut failed) = (0usize, 0usize);
    let t_setup = Instant::now();
    while up + failed < o.calls {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(e)) => match e.kind {
                RelayEventKind::DtlsConnected => up += 1,
                RelayEventKind::Failed { why } => {
                    eprintln!("relay_bench: call {} failed: {why}", e.call);
                    failed += 1;
                }
                _ => {}
            },
            _ => break,
        }
    }
    let setup_in = t_setup.elapsed();
    let rss_connected = status_kib("VmRSS:");
    println!(
        "{} calls: created in {:.2?}, {up} connected (ICE + DTLS) in {:.2?}, {failed} failed; \
         load average {load_start}",
        o.calls, created_in, setup_in
    );

    // Media: the peers start on this line; the window is [warm-up, secs].
    writeln!(to_peers, "START")?;
    to_peers.flush()?;
    let t0 = Instant::now();
    let drops0 = udp_drops(&relay_ports);
    tokio::time::sleep_until((t0 + Duration::from_secs(o.warmup)).into()).await;
    let (cpu_a, mach_a, ctr_a, wall_a) = (
        cpu_ms(),
        machine_jiffies(),
        sum_counters(&relay),
        Instant::now(),
    );
    let load_media = loadavg();
    tokio::time::sleep_until((t0 + Duration::from_secs(o.secs)).into()).await;
    let (cpu_b, mach_b, ctr_b, wall_b) = (
        cpu_ms(),
        machine_jiffies(),
        sum_counters(&relay),
        Instant::now(),
    );
    let rss_media = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");

    // The peers report after their drain.
    next_line(&mut line)?;
    let peers = kv(&line);
    if !line.starts_with("R ") {
        return Err(format!("bad result line from the peers: {line:?}").into());
    }
    let end = sum_counters(&relay);
    let relay_drops = udp_drops(&relay_ports).saturating_sub(drops0);
    for c in relay.calls() {
        relay.hangup(c.id);
    }
    let _ = child.wait();

    let p = |k: &str| peers.get(k).copied().unwrap_or(f64::NAN);
    let window = (wall_b - wall_a).as_secs_f64();
    let relay_cpu = cpu_b - cpu_a;
    let relayed = (ctr_b.xmpp.packets_out + ctr_b.sip.packets_out)
        .saturating_sub(ctr_a.xmpp.packets_out + ctr_a.sip.packets_out);
    let per_1k = relay_cpu * 1000.0 / relayed.max(1) as f64;
    let (busy, total) = (mach_b.0 - mach_a.0, (mach_b.1 - mach_a.1).max(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let machine_pct = busy as f64 / total as f64 * 100.0 * cores;
    let relay_pct = relay_cpu / 10.0 / window;
    let peers_pct = p("cpu_ms") / 10.0 / window;
    let other_pct = (machine_pct - relay_pct - peers_pct).max(0.0);
    let n = o.calls as f64;
    let kib = |r: u64| r.saturating_sub(rss0) as f64 / n;

    let (sx, rx, ss, rs) = (p("sent_x2s"), p("recv_x2s"), p("sent_s2x"), p("recv_s2x"));
    let lost = (sx - rx) + (ss - rs);
    let loss_pct = 100.0 * lost / (sx + ss).max(1.0);
    println!(
        "XMPP→SIP: client sent {sx}, relay decrypted {}, relay sent {}, phone got {rx} (relay dropped {})",
        end.xmpp.packets_in, end.sip.packets_out, end.xmpp.dropped
    );
    println!(
        "SIP→XMPP: phone sent {ss}, relay read {}, relay sent {}, client got {rs} (relay dropped {})",
        end.sip.packets_in, end.xmpp.packets_out, end.sip.dropped
    );
    println!(
        "loss {lost} of {} ({loss_pct:.4} %); kernel drops on relay sockets {relay_drops}, on peer \
         sockets {}; peer send errors {}",
        sx + ss,
        p("udp_drops"),
        p("send_err")
    );
    println!(
        "added latency (peer sendto → peer kernel rx, via the relay), ms: XMPP→SIP p50 {:.3} p99 \
         {:.3} p99.9 {:.3} max {:.3}; SIP→XMPP p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        p("x2s_p50") / 1000.0,
        p("x2s_p99") / 1000.0,
        p("x2s_p999") / 1000.0,
        p("x2s_max") / 1000.0,
        p("s2x_p50") / 1000.0,
        p("s2x_p99") / 1000.0,
        p("s2x_p999") / 1000.0,
        p("s2x_max") / 1000.0,
    );
    println!(
        "loopback alone (control pair), ms: p50 {:.3} p99 {:.3}; peer send-tick lag p99 {:.3} ms",
        p("base_p50") / 1000.0,
        p("base_p99") / 1000.0,
        p("lag_p99") / 1000.0
    );
    println!(
        "relay CPU {relay_cpu:.0} ms over {window:.1} s ({relay_pct:.1} % of a core) for {relayed} \
         packets sent: {per_1k:.3} ms per 1,000; peers {peers_pct:.1} %, rest of the machine \
         {other_pct:.1} % (load average {load_media} during media; pid {peer_pid} = peers)"
    );
    println!(
        "relay RSS per call: {:.1} KiB created, {:.1} KiB connected, {:.1} KiB after media \
         (process {:.1} MiB, peak {:.1} MiB)",
        kib(rss_created),
        kib(rss_connected),
        kib(rss_media),
        rss_media as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "RESULT calls={} connected={up} failed={failed} secs={} sent={} lost={lost} loss_pct={loss_pct:.4} \
         relay_drops={relay_drops} peer_drops={} x2s_p50={:.3} x2s_p99={:.3} s2x_p50={:.3} \
         s2x_p99={:.3} p99={:.3} base_p99={:.3} relay_cpu_pct={relay_pct:.1} cpu_per_1k_ms={per_1k:.3} \
         peers_cpu_pct={peers_pct:.1} other_cpu_pct={other_pct:.1} load={load_media} \
         rss_kib_per_call={:.1} rss_mib={:.1} setup_s={:.2} offered={} lag_p99={:.3}",
        o.calls,
        o.secs,
        sx + ss,
        p("udp_drops"),
        p("x2s_p50") / 1000.0,
        p("x2s_p99") / 1000.0,
        p("s2x_p50") / 1000.0,
        p("s2x_p99") / 1000.0,
        p("x2s_p99").max(p("s2x_p99")) / 1000.0,
        p("base_p99") / 1000.0,
        kib(rss_media),
        rss_media as f64 / 1024.0,
        setup_in.as_secs_f64(),
        o.calls as u64 * 2 * o.secs * 1000 / PTIME.as_millis() as u64,
        p("lag_p99") / 1000.0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The peer process: one str0m client and one plain-RTP phone per call.

/// A loopback UDP socket with kernel receive timestamps (`SO_TIMESTAMPNS`).
fn bind_timestamped() -> Res<UdpSocket> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s)?)
}

/// One datagram with its source and its kernel receive time (ns since the epoch).
fn recv_timestamped(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, u64)> {
    // SAFETY: every pointer in `msg` points at a live local of the length given, and the cmsg
    // walk uses the libc macros over the control buffer the kernel filled.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ts = 0u64;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let src = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        );
        Ok((n as usize, SocketAddr::V4(src), ts))
    }
}

/// Reads one datagram if one is queued.
fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, u64)> {
    let fd = sock.as_raw_fd();
    sock.try_io(Interest::READABLE, || recv_timestamped(fd, buf))
        .ok()
}

/// Whether a datagram is waiting on the socket (`FIONREAD`).
fn queued(sock: &UdpSocket) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: a valid socket descriptor and a c_int out-parameter, as FIONREAD wants.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
    r == 0 && n > 0
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A plain RTP packet (RFC 3550 §5.1, no CSRC, no extension) whose payload starts with `stamp`.
fn plain_rtp(seq: u16, stamp: u64) -> [u8; 12 + PAYLOAD] {
    let mut p = [0xd5u8; 12 + PAYLOAD];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * PAYLOAD as u32).to_be_bytes());
    p[8..12].copy_from_slice(&PHONE_SSRC.to_be_bytes());
    p[12..20].copy_from_slice(&stamp.to_be_bytes());
    p
}

/// RTP rather than RTCP (RFC 5761 §4: RTCP packet types 192–223 in the second byte).
fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1])
}

#[derive(Default)]
struct PeerStats {
    connected: u64,
    sent_x2s: u64,
    recv_x2s: u64,
    sent_s2x: u64,
    recv_s2x: u64,
    send_err: u64,
    lat_x2s: Vec<u64>,
    lat_s2x: Vec<u64>,
    lag: Vec<u64>,
}

impl PeerStats {
    fn merge(&mut self, o: PeerStats) {
        self.connected += o.connected;
        self.sent_x2s += o.sent_x2s;
        self.recv_x2s += o.recv_x2s;
        self.sent_s2x += o.sent_s2x;
        self.recv_s2x += o.recv_s2x;
        self.send_err += o.send_err;
        self.lat_x2s.extend(o.lat_x2s);
        self.lat_s2x.extend(o.lat_s2x);
        self.lag.extend(o.lag);
    }
}

/// When media starts, when the warm-up ends, when sending stops, and when receiving must stop.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    warm_ns: u64,
    stop: Instant,
    exit: Instant,
}

fn window(t0: Instant, o: Opts) -> Window {
    Window {
        start: t0,
        warm_ns: realtime_ns() + o.warmup * 1_000_000_000,
        stop: t0 + Duration::from_secs(o.secs),
        exit: t0 + Duration::from_secs(o.secs) + MAX_DRAIN,
    }
}

async fn peers_main(o: Opts) -> Res<()> {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout();
    let mut line = String::new();
    let (start_tx, start_rx) = watch::channel(None::<Window>);
    let mut ports = HashSet::new();
    let mut tasks = Vec::with_capacity(o.calls);
    for i in 0..o.calls {
        let client = bind_timestamped()?;
        let phone = bind_timestamped()?;
        let local = client.local_addr()?;
        ports.extend([local.port(), phone.local_addr()?.port()]);
        let mut cfg = Rtc::builder().set_rtp_mode(true).clear_codecs();
        cfg.codec_config().add_config(
            Pt::from(0),
            None,
            Codec::PCMU,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = cfg.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mid = Mid::from("audio");
        let (creds, fp) = {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(true);
            api.declare_media(mid, MediaKind::Audio);
            api.declare_stream_tx(Ssrc::from(CLIENT_SSRC), None, mid, None);
            (
                api.local_ice_credentials(),
                api.local_dtls_fingerprint().to_string(),
            )
        };
        let (hash, hex) = fp.trim().split_once(' ').ok_or("fingerprint")?;
        writeln!(
            stdout,
            "P {} {} {hash} {hex} {local} {}",
            creds.ufrag,
            creds.pass,
            phone.local_addr()?
        )?;
        stdout.flush()?;
        line.clear();
        stdin.read_line(&mut line)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let ["C", ufrag, pwd, hash, fp, ssrc, relay_xmpp, relay_sip] = f[..] else {
            return Err(format!("bad relay line {line:?}").into());
        };
        {
            let mut api = rtc.direct_api();
            api.set_remote_ice_credentials(IceCreds {
                ufrag: ufrag.into(),
                pass: pwd.into(),
            });
            api.set_remote_fingerprint(format!("{hash} {fp}").parse()?);
            api.expect_stream_rx(Ssrc::from(ssrc.parse::<u32>()?), None, mid, None);
            api.start_dtls(false)?;
        }
        rtc.add_remote_candidate(Candidate::host(relay_xmpp.parse()?, "udp")?);
        let phase = PTIME * i as u32 / o.calls as u32;
        let (relay_sip, start) = (relay_sip.parse()?, start_rx.clone());
        // The sockets outlive the call's task, so that their kernel drop counters can be read.
        tasks.push(tokio::spawn(async move {
            let st = peer_call(rtc, &client, &phone, relay_sip, phase, start).await;
            (st, client, phone)
        }));
    }
    let (a, b) = (bind_timestamped()?, bind_timestamped()?);
    let control = tokio::spawn(loopback_control(a, b, start_rx.clone()));

    line.clear();
    stdin.read_line(&mut line)?;
    if line.trim() != "START" {
        return Err(format!("expected START, got {line:?}").into());
    }
    let t0 = Instant::now();
    let w = window(t0, o);
    let drops0 = udp_drops(&ports);
    start_tx.send_replace(Some(w));
    tokio::time::sleep_until((t0 + Duration::from_secs(o.warmup)).into()).await;
    let cpu_a = cpu_ms();
    tokio::time::sleep_until(w.stop.into()).await;
    let cpu_b = cpu_ms();
    let mut all = PeerStats::default();
    let mut sockets = Vec::with_capacity(o.calls);
    for t in tasks {
        let (st, client, phone) = t.await?;
        all.merge(st);
        sockets.push((client, phone));
    }
    let mut base = control.await?;
    let drops = udp_drops(&ports).saturating_sub(drops0);
    drop(sockets);
    for v in [&mut all.lat_x2s, &mut all.lat_s2x, &mut all.lag, &mut base] {
        v.sort_unstable();
    }
    let l = |v: &[u64], name: &str| {
        format!(
            "{name}_p50={:.1} {name}_p99={:.1} {name}_p999={:.1} {name}_max={:.1}",
            pct_us(v, 0.5),
            pct_us(v, 0.99),
            pct_us(v, 0.999),
            pct_us(v, 1.0)
        )
    };
    writeln!(
        stdout,
        "R connected={} sent_x2s={} recv_x2s={} sent_s2x={} recv_s2x={} send_err={} udp_drops={drops} \
         cpu_ms={:.0} {} {} {} {}",
        all.connected,
        all.sent_x2s,
        all.recv_x2s,
        all.sent_s2x,
        all.recv_s2x,
        all.send_err,
        cpu_b - cpu_a,
        l(&all.lat_x2s, "x2s"),
        l(&all.lat_s2x, "s2x"),
        l(&base, "base"),
        l(&all.lag, "lag"),
    )?;
    stdout.flush()?;
    Ok(())
}

/// One call's peers: the str0m client on the XMPP leg and the phone on the SIP leg.
async fn peer_call(
    mut rtc: Rtc,
    client: &UdpSocket,
    phone: &UdpSocket,
    relay_sip: SocketAddr,
    phase: Duration,
    mut start: watch::Receiver<Option<Window>>,
) -> PeerStats {
    let mut st = PeerStats::default();
    let Ok(local) = client.local_addr() else {
        return st;
    };
    // Wire send time of the client's packets, by RTP sequence number.
    let mut sent_at = vec![0u64; 1024];
    let mut buf = vec![0u8; 2048];
    let mut pbuf = vec![0u8; 2048];
    let mut win: Option<Window> = None;
    let mut tick: Option<tokio::time::Interval> = None;
    let (mut seq_c, mut seq_p) = (1u64, 0u16);
    let mut rx_ts = 0u64;
    let mut last_rx = Instant::now();
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let rtp = is_rtp(&t.contents);
                    let now = realtime_ns();
                    match client.try_send_to(&t.contents, t.destination) {
                        Ok(_) if rtp => {
                            let seq = u16::from_be_bytes([t.contents[2], t.contents[3]]);
                            sent_at[usize::from(seq) & 1023] = now;
                            st.sent_x2s += 1;
                        }
                        Ok(_) => {}
                        Err(_) => st.send_err += 1,
                    }
                }
                Ok(Output::Event(Event::Connected)) => st.connected = 1,
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    if let Some(sent) = u64_at(&p.payload, 0) {
                        st.recv_s2x += 1;
                        if win.is_some_and(|w| sent >= w.warm_ns) {
                            st.lat_s2x.push(rx_ts.saturating_sub(sent));
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => return st,
            }
        };
        // Late packets are not lost: keep reading while they come, up to MAX_DRAIN.
        let exit = win.map(|w| (w.stop.max(last_rx) + DRAIN).min(w.exit));
        let deadline = exit.map_or(timeout, |e| timeout.min(e));
        // A starved task must not mistake its own lateness for silence: leave only with both
        // sockets empty.
        if exit.is_some_and(|e| Instant::now() >= e) && !queued(client) && !queued(phone) {
            return st;
        }
        let next_tick = async {
            match tick.as_mut() {
                Some(t) => t.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = client.readable() => {
                if r.is_ok() {
                    if let Some((n, src, ts)) = try_recv(client, &mut buf) {
                        rx_ts = ts;
                        last_rx = Instant::now();
                        if let Ok(contents) = buf[..n].try_into() {
                            let _ = rtc.handle_input(Input::Receive(Instant::now(), Receive {
                                proto: Protocol::Udp, source: src, destination: local, contents,
                            }));
                        }
                    }
                }
            }
            r = phone.readable() => {
                if r.is_ok() {
                    if let Some((n, _, ts)) = try_recv(phone, &mut pbuf) {
                        last_rx = Instant::now();
                        let d = &pbuf[..n];
                        if is_rtp(d) {
                            if let Ok(p) = rtp_types::RtpPacket::parse(d) {
                                st.recv_x2s += 1;
                                if let Some(seq) = u64_at(p.payload(), 0) {
                                    let sent = sent_at[seq as usize & 1023];
                                    if win.is_some_and(|w| sent >= w.warm_ns) {
                                        st.lat_x2s.push(ts.saturating_sub(sent));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            at = next_tick => {
                let now = Instant::now();
                if win.is_some_and(|w| now >= w.stop) {
                    tick = None;
                } else {
                    st.lag.push(now.saturating_duration_since(at.into_std()).as_nanos() as u64);
                    let pkt = plain_rtp(seq_p, realtime_ns());
                    match phone.try_send_to(&pkt, relay_sip) {
                        Ok(_) => st.sent_s2x += 1,
                        Err(_) => st.send_err += 1,
                    }
                    seq_p = seq_p.wrapping_add(1);
                    if st.connected == 1 {
                        let mut payload = vec![0xd5u8; PAYLOAD];
                        payload[..8].copy_from_slice(&seq_c.to_be_bytes());
                        if let Some(s) = rtc.direct_api().stream_tx(&Ssrc::from(CLIENT_SSRC)) {
                            s.write_rtp(RtpWrite::new(
                                Pt::from(0),
                                SeqNo::from(seq_c),
                                seq_c as u32 * PAYLOAD as u32,
                                now,
                                payload,
                            ));
                            seq_c += 1;
                        }
                    }
                }
            }
            r = start.changed(), if win.is_none() => {
                if r.is_err() {
                    return st;
                }
                if let Some(w) = *start.borrow_and_update() {
                    win = Some(w);
                    tick = Some(tokio::time::interval_at((w.start + phase).into(), PTIME));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// Two sockets sending to each other at 50 packets/s during the window: the loopback hop's own
/// latency under the same load, without the relay.
async fn loopback_control(
    a: UdpSocket,
    b: UdpSocket,
    mut start: watch::Receiver<Option<Window>>,
) -> Vec<u64> {
    let mut lat = Vec::new();
    let Ok(dst) = b.local_addr() else {
        return lat;
    };
    let w = loop {
        if start.changed().await.is_err() {
            return lat;
        }
        if let Some(w) = *start.borrow_and_update() {
            break w;
        }
    };
    let mut tick = tokio::time::interval_at(w.start.into(), PTIME);
    let mut buf = vec![0u8; 2048];
    let mut seq = 0u16;
    loop {
        tokio::select! {
            at = tick.tick() => {
                if at.into_std() >= w.stop {
                    return lat;
                }
                let _ = a.try_send_to(&plain_rtp(seq, realtime_ns()), dst);
                seq = seq.wrapping_add(1);
            }
            r = b.readable() => {
                if r.is_ok() {
                    if let Some((n, _, ts)) = try_recv(&b, &mut buf) {
                        if let Some(sent) = u64_at(&buf[..n], 12) {
                            if sent >= w.warm_ns {
                                lat.push(ts.saturating_sub(sent));
                            }
                        }
                    }
                }
            }
        }
    }
}
