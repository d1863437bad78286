//! A real DNS server on loopback for RFC 3263 tests: dnsmasq (Debian `dnsmasq-base`)
//! answering only the records a test gives it (NAPTR, SRV, A), nothing from upstream.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ports::free_port;
use crate::process::{tail, temp_dir, Process};

/// Records for [`Dnsmasq::start`], as dnsmasq options.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    options: Vec<String>,
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Zone {
        Zone::default()
    }

    /// A NAPTR record with flag `s` (RFC 3403): `name` → SRV name `replacement`.
    pub fn naptr(
        mut self,
        name: &str,
        order: u16,
        preference: u16,
        service: &str,
        replacement: &str,
    ) -> Zone {
        self.options.push(format!(
            "--naptr-record={name},{order},{preference},s,{service},,{replacement}"
        ));
        self
    }

    /// An SRV record (RFC 2782).
    pub fn srv(mut self, name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Zone {
        self.options.push(format!(
            "--srv-host={name},{target},{port},{priority},{weight}"
        ));
        self
    }

    /// An A record.
    pub fn a(mut self, name: &str, ip: &str) -> Zone {
        self.options.push(format!("--host-record={name},{ip}"));
        self
    }

    /// Every name under `domain` that has no record answers NXDOMAIN.
    pub fn nxdomain(mut self, domain: &str) -> Zone {
        self.options.push(format!("--address=/{domain}/"));
        self
    }
}

/// A running dnsmasq; `Drop` kills it by PID.
#[derive(Debug)]
pub struct Dnsmasq {
    addr: SocketAddr,
    log: PathBuf,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on a free loopback port serving `zone`, and waits until it answers.
    pub fn start(zone: &Zone) -> Result<Dnsmasq> {
        let dir = temp_dir("dnsmasq")?;
        let log = dir.path().join("dnsmasq.log");
        let port = free_port();
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file",
            // Names under .test are answered from the records below only: a name without
            // an AAAA record gets an empty answer, an unknown one NXDOMAIN (as an
            // authoritative server would), never REFUSED for want of an upstream.
            "--local=/test/",
        ]);
        cmd.arg(format!("--port={port}"));
        cmd.args(&zone.options);
        let process = Process::spawn_logged("dnsmasq", cmd, &log)
            .context("starting dnsmasq (Debian package dnsmasq-base)")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let d = Dnsmasq {
            addr,
            log,
            _process: process,
            _dir: dir,
        };
        d.wait_ready(Duration::from_secs(10))?;
        Ok(d)
    }

    /// `ADDR:PORT` it answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The queries it logged, one per line (`query[SRV] _sip._tcp.voip.test from ...`).
    pub fn queries(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("query["))
            .map(str::to_owned)
            .collect()
    }

    /// Sends an A query for `ready.invalid` until any answer comes back.
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        // id 0x5858, RD, one question: ready.invalid IN A
        let mut q = vec![0x58, 0x58, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["ready", "invalid"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            socket.send_to(&q, self.addr)?;
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                if n >= 2 && buf[..2] == [0x58, 0x58] {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "dnsmasq did not answer on {}: {}",
            self.addr,
            tail(&self.log, 20)
        )
    }
}
