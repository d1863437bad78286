//! The `stox` binary under test, configured against a test [`Prosody`].
//!
//! The binary is not built by this crate: `scripts/test` runs `cargo build --workspace --bins`
//! first. It is found through `STOX_BIN`, or next to the test executable
//! (`target/debug/deps/..` → `target/debug/stox`, which follows `CARGO_TARGET_DIR`), or in
//! `target/debug/` of the workspace.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::ports::free_port;
use crate::process::{tail, temp_dir, Process};
use crate::{workspace_root, Prosody};

/// The admin API token written into every test config.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// When a start of stox counts as done.
#[derive(Clone, Copy, Debug)]
enum Ready {
    /// `GET /health` answers 200: the component link is up.
    Healthy,
    /// The admin API answers at all.
    Admin,
}

/// A running (or stopped, restartable) stox. `Drop` kills it by PID.
#[derive(Debug)]
pub struct Stox {
    config: PathBuf,
    log: PathBuf,
    store: PathBuf,
    sip_port: u16,
    admin_port: u16,
    bin: PathBuf,
    process: Option<Process>,
    // Last field: dropped after the process is gone.
    dir: tempfile::TempDir,
}

/// Where the `stox` binary is (see the module doc).
pub fn binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("STOX_BIN") {
        return PathBuf::from(bin);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/messaging-HASH → target/debug/stox
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("stox"));
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join("debug").join("stox"));
    }
    candidates.push(workspace_root().join("target").join("debug").join("stox"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[candidates.len() - 1].clone())
}

/// Runs `stox check-config --config FILE` and returns its output (status, stdout, stderr).
pub fn check_config(config: &Path) -> Result<std::process::Output> {
    let bin = binary_path();
    Command::new(&bin)
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .output()
        .with_context(|| format!("running {} check-config", bin.display()))
}

/// Deep-merges `overrides` into `base`: tables merge key by key, other values replace.
pub fn merge_toml(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An HTTP/1.1 response from the admin API.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body (decoded from chunked transfer coding if needed).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

fn decode_chunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return out;
        };
        if size == 0 || body.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
}

/// One HTTP/1.1 request with `Connection: close` (no client library needed).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let payload = &raw[split + 4..];
    let body = if chunked {
        decode_chunked(payload)
    } else {
        payload.to_vec()
    };
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

impl Stox {
    /// Writes a config for `prosody` (free SIP udp+tcp and admin ports, a temp store) with
    /// `overrides` (a TOML snippet, deep-merged, e.g. `"[sip]\noutbound_proxy = \"sip:...\""`)
    /// and starts stox; returns once `GET /health` answers 200 (component link up).
    pub fn start(prosody: &Prosody, overrides: &str) -> Result<Stox> {
        Stox::start_binary(&binary_path(), prosody, overrides)
    }

    /// [`Stox::start`], but returns as soon as the admin API answers, whatever `/health`
    /// says: for a stox whose component link cannot come up (Prosody stopped, a
    /// `<conflict/>`).
    pub fn start_without_link(prosody: &Prosody, overrides: &str) -> Result<Stox> {
        Stox::configure(&binary_path(), prosody, overrides)?.spawn(Ready::Admin)
    }

    /// [`Stox::start`] with another binary (the harness self-tests use a stand-in).
    pub fn start_binary(bin: &Path, prosody: &Prosody, overrides: &str) -> Result<Stox> {
        Stox::configure(bin, prosody, overrides)?.spawn(Ready::Healthy)
    }

    /// Writes the config and prepares a stopped `Stox`.
    fn configure(bin: &Path, prosody: &Prosody, overrides: &str) -> Result<Stox> {
        let dir = temp_dir("stox")?;
        let sip_port = free_port();
        let admin_port = free_port();
        let store = dir.path().join("store");
        let mut config: toml::Table = format!(
            r#"
[xmpp]
component = "{component}"
server = "127.0.0.1:{component_port}"
secret = "{secret}"
home_domain = "{domain}"

[sip]
listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]

[admin]
listen = "127.0.0.1:{admin_port}"
token = "{ADMIN_TOKEN}"

[store]
path = "{store}"
"#,
            component = prosody.component(),
            component_port = prosody.component_addr().port(),
            secret = prosody.component_secret(),
            domain = prosody.domain(),
            store = store.display(),
        )
        .parse()
        .context("base stox config")?;
        let overrides: toml::Table = overrides.parse().context("parsing stox config overrides")?;
        merge_toml(&mut config, overrides);
        let config_path = dir.path().join("stox.toml");
        fs::write(&config_path, toml::to_string(&config)?)?;
        Ok(Stox {
            config: config_path,
            log: dir.path().join("stox.log"),
            store,
            sip_port,
            admin_port,
            process: None,
            bin: bin.to_path_buf(),
            dir,
        })
    }

    fn spawn(mut self, ready: Ready) -> Result<Stox> {
        self.spawn_process(ready)?;
        Ok(self)
    }

    fn spawn_process(&mut self, ready: Ready) -> Result<()> {
        let bin = self.bin.clone();
        if !bin.is_file() {
            bail!(
                "stox binary not found at {} (run `cargo build --workspace --bins` first, or set STOX_BIN)",
                bin.display()
            );
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env(
                "RUST_LOG",
                "info,stox_gateway=debug,stox_xmpp=debug,stox_sip=debug,stox_mappings=debug",
            );
        }
        // The log is appended to across restarts; mark where each run starts.
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "=== stox-tests: starting {} ===", bin.display())?;
        self.process = Some(Process::spawn_logged("stox", cmd, &self.log)?);
        match ready {
            Ready::Healthy => self.wait_healthy(Duration::from_secs(20)),
            Ready::Admin => self.wait_admin(Duration::from_secs(20)),
        }
    }

    /// Waits until `GET /health` answers 200.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        self.wait_health(timeout, |status| status == 200)
    }

    /// Waits until `GET /health` answers 503 (component link down).
    pub fn wait_unhealthy(&mut self, timeout: Duration) -> Result<()> {
        self.wait_health(timeout, |status| status == 503)
    }

    /// Waits until the admin API answers `GET /health` at all (any status).
    pub fn wait_admin(&mut self, timeout: Duration) -> Result<()> {
        self.wait_health(timeout, |_| true)
    }

    fn wait_health(&mut self, timeout: Duration, done: impl Fn(u16) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.as_mut().and_then(Process::try_status) {
                bail!(
                    "stox exited with {status} before becoming healthy\n--- stox log ---\n{}",
                    self.log_tail(40)
                );
            }
            let last = match self.admin_get("/health") {
                Ok(resp) if done(resp.status) => return Ok(()),
                Ok(resp) => format!("{} {}", resp.status, resp.body),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "stox /health not as awaited after {timeout:?} (last: {last})\n--- stox log ---\n{}",
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL (crash test); the store stays for [`Stox::restart`].
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.process.take().and_then(|mut p| p.kill())
    }

    /// SIGTERM and wait (SIGKILL after 10 s); returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.process
            .take()
            .and_then(|mut p| p.terminate(Duration::from_secs(10)))
    }

    /// Stops stox if it runs, then starts it again with the same config, ports and store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn_process(Ready::Healthy)
    }

    /// [`Stox::restart`] (also after [`Stox::kill`]), but returns as soon as the admin API
    /// answers, whatever `/health` says (e.g. while Prosody is stopped).
    pub fn restart_without_link(&mut self) -> Result<()> {
        self.stop();
        self.spawn_process(Ready::Admin)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// The PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// SIP port (UDP and TCP) on 127.0.0.1.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// SIP listen address (same port for UDP and TCP).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    /// Admin API address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port))
    }

    /// `GET path` on the admin API with the bearer token.
    pub fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        http_request(self.admin_addr(), "GET", path, Some(ADMIN_TOKEN), None)
    }

    /// A request on the admin API with the bearer token.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<HttpResponse> {
        http_request(self.admin_addr(), method, path, Some(ADMIN_TOKEN), body)
    }

    /// The store directory (kept across restarts).
    pub fn store_path(&self) -> &Path {
        &self.store
    }

    /// The generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// stox's stdout+stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of stox's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Stox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- stox log tail ({}) ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.process.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_into_tables_and_replace_values() {
        let mut base: toml::Table = "[sip]\nlisten = [\"udp:a\"]\n[admin]\ntoken = \"x\"\n"
            .parse()
            .unwrap();
        let over: toml::Table =
            "[sip]\noutbound_proxy = \"sip:127.0.0.1:5080\"\n[admin]\ntoken = \"y\"\n"
                .parse()
                .unwrap();
        merge_toml(&mut base, over);
        assert_eq!(base["sip"]["listen"][0].as_str(), Some("udp:a"));
        assert_eq!(
            base["sip"]["outbound_proxy"].as_str(),
            Some("sip:127.0.0.1:5080")
        );
        assert_eq!(base["admin"]["token"].as_str(), Some("y"));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            decode_chunked(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
    }
}
