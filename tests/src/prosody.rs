//! A real Prosody (RFC 6120/6121 server, XEP-0114 component host) for one test.
//!
//! The config lives in a temp dir (never `/etc/prosody`) and names everything explicitly:
//! loopback ports, data dir, pidfile, log. A bare `prosody` without `--config` would start
//! the system instance on all interfaces (docs/TESTING.md), so every invocation here passes
//! `--config`.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ports::free_port;
use crate::process::{tail, temp_dir, wait_for_tcp, Process};
use crate::{DEFAULT_USERS, PASSWORD};

/// How to start a test Prosody.
#[derive(Clone, Debug)]
pub struct ProsodyOptions {
    /// The XMPP domain (`VirtualHost`).
    pub domain: String,
    /// The stox component domain (`Component`).
    pub component: String,
    /// The XEP-0114 shared secret.
    pub component_secret: String,
    /// Users registered before start: (localpart, password).
    pub users: Vec<(String, String)>,
    /// Load `mod_offline`. Without it, a message to an offline or unknown user bounces
    /// with an error instead of being stored, so loss is visible.
    pub offline: bool,
    /// Load `mod_websocket` (and `mod_http`) on the http port, for StanzaJS peers.
    pub websocket: bool,
    /// Lowest level written to `prosody.log` (`"debug"`; the benchmark uses `"warn"`:
    /// debug logging of every stanza costs Prosody more CPU than routing it).
    pub log_level: String,
    /// Lua's garbage collector mode (Prosody 0.12 `gc = { mode = ... }` on Lua 5.4):
    /// `None` leaves Prosody's default (incremental); the benchmark uses `generational`,
    /// which costs Prosody about a third less CPU per routed message here
    /// (docs/benchmarks.md).
    pub gc_mode: Option<String>,
    /// Lua lines added to the global section of the config, e.g.
    /// `storage = { roster = "sql" }` (empty by default).
    pub extra_config: String,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            domain: "localhost".into(),
            component: "sip.localhost".into(),
            component_secret: "componentsecret".into(),
            users: DEFAULT_USERS
                .iter()
                .map(|u| (u.to_string(), PASSWORD.to_string()))
                .collect(),
            offline: true,
            websocket: false,
            log_level: "debug".into(),
            gc_mode: None,
            extra_config: String::new(),
        }
    }
}

impl ProsodyOptions {
    /// Default options with `mod_offline` disabled.
    pub fn without_offline() -> Self {
        ProsodyOptions {
            offline: false,
            ..ProsodyOptions::default()
        }
    }
}

/// A running Prosody. `Drop` kills it by PID.
#[derive(Debug)]
pub struct Prosody {
    opts: ProsodyOptions,
    c2s_port: u16,
    component_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Process>,
    // Last field: dropped after the process is gone.
    dir: tempfile::TempDir,
}

impl Prosody {
    /// Writes the config, registers `opts.users` and starts Prosody; returns once the c2s and
    /// component ports accept connections.
    pub fn start(opts: ProsodyOptions) -> Result<Prosody> {
        let dir = temp_dir("prosody")?;
        let mut prosody = Prosody {
            c2s_port: free_port(),
            component_port: free_port(),
            http_port: free_port(),
            config: dir.path().join("prosody.cfg.lua"),
            log: dir.path().join("prosody.log"),
            process: None,
            opts,
            dir,
        };
        fs::create_dir_all(prosody.dir.path().join("data"))?;
        fs::create_dir_all(prosody.dir.path().join("certs"))?;
        fs::write(&prosody.config, prosody.config_text())?;
        for (user, password) in prosody.opts.users.clone() {
            prosody.register(&user, &password)?;
        }
        prosody.spawn()?;
        Ok(prosody)
    }

    fn config_text(&self) -> String {
        let d = self.dir.path().display();
        let mut modules = vec!["roster", "saslauth", "disco", "ping", "posix", "carbons"];
        if self.opts.offline {
            modules.push("offline");
        }
        if self.opts.websocket {
            modules.push("websocket");
        }
        let modules: Vec<String> = modules.iter().map(|m| format!("{m:?}")).collect();
        let disabled = if self.opts.offline {
            r#""s2s""#
        } else {
            r#""s2s"; "offline""#
        };
        format!(
            r#"-- stox-tests: generated, loopback only.
run_as_root = true
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ {level} = "{d}/prosody.log"; error = "{d}/prosody.err" }}
modules_enabled = {{ {modules} }}
modules_disabled = {{ {disabled} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{ {http} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
consider_websocket_secure = true
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
{gc}{extra}

VirtualHost "{domain}"

Component "{component_domain}"
    component_secret = "{secret}"
"#,
            modules = modules.join("; "),
            gc = self
                .opts
                .gc_mode
                .as_deref()
                .map(|m| format!("gc = {{ mode = {m:?} }}\n"))
                .unwrap_or_default(),
            level = self.opts.log_level,
            c2s = self.c2s_port,
            component = self.component_port,
            http = self.http_port,
            domain = self.opts.domain,
            component_domain = self.opts.component,
            secret = self.opts.component_secret,
            extra = self.opts.extra_config,
        )
    }

    fn prosodyctl(&self) -> Command {
        let mut cmd = Command::new("prosodyctl");
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Registers `user@domain` with `password` (`prosodyctl register`); works while running.
    pub fn register(&self, user: &str, password: &str) -> Result<()> {
        let out = self
            .prosodyctl()
            .args(["register", user, &self.opts.domain, password])
            .output()
            .context("running prosodyctl register (is the prosody package installed?)")?;
        if !out.status.success() {
            bail!(
                "prosodyctl register {user} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new("prosody");
        cmd.arg("--config").arg(&self.config);
        let stdout_log = self.dir.path().join("prosody.stdout");
        self.process = Some(Process::spawn_logged("prosody", cmd, &stdout_log)?);
        for addr in [self.c2s_addr(), self.component_addr()] {
            if let Err(err) = wait_for_tcp(addr, Duration::from_secs(15)) {
                let exited = self.process.as_mut().and_then(Process::try_status);
                bail!(
                    "prosody not ready ({err}); exit status {exited:?}\n--- prosody.log ---\n{}\n--- stdout ---\n{}",
                    tail(&self.log, 30),
                    tail(&stdout_log, 30)
                );
            }
        }
        Ok(())
    }

    /// Stops Prosody (SIGTERM by PID, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(10));
        }
    }

    /// Stops Prosody (if it runs) and starts it again on the same ports, config and data dir
    /// (registered users and `mod_offline` storage survive). After [`Prosody::stop`], this
    /// is how to start it again.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Whether Prosody is running (started and not stopped).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::is_running)
    }

    /// The PID of the running Prosody.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The XMPP domain, e.g. `localhost`.
    pub fn domain(&self) -> &str {
        &self.opts.domain
    }

    /// The component domain, e.g. `sip.localhost`.
    pub fn component(&self) -> &str {
        &self.opts.component
    }

    /// The XEP-0114 secret.
    pub fn component_secret(&self) -> &str {
        &self.opts.component_secret
    }

    /// Password registered for `user` (from the options).
    pub fn password(&self, user: &str) -> Option<&str> {
        self.opts
            .users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
    }

    /// The c2s listener.
    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.c2s_port))
    }

    /// The XEP-0114 component listener.
    pub fn component_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.component_port))
    }

    /// The HTTP port (`ws://127.0.0.1:PORT/xmpp-websocket` when `websocket` is on).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Prosody's debug log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of Prosody's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- prosody log tail ({}) ---\n{}",
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        // The Process field kills by PID in its own Drop.
        self.process.take();
    }
}
