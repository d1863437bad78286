//! Child processes owned by one test: stopped by PID, always, also when the test panics.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A spawned peer process. `Drop` sends SIGKILL to its PID if it is still running.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Process {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `log`.
    pub fn spawn_logged(name: &str, mut cmd: Command, log: &Path) -> Result<Process> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        Process::spawn(name, cmd)
    }

    /// Spawns `cmd` as configured by the caller (stdio included).
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Process> {
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            status: None,
        })
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Mutable access to the child (to take its stdin/stdout pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.is_running() {
            // A PID fits in pid_t on Linux (PID_MAX_LIMIT is 2^22).
            let pid = self.pid() as libc::pid_t;
            // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet
            // (try_status returned None), so the PID still names our child.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(grace) {
            return Some(status);
        }
        eprintln!("[harness] {} did not exit on SIGTERM, killing", self.name);
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(10))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// Waits until a TCP connection to `addr` succeeds.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                bail!("{addr} does not accept connections after {timeout:?}: {err}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            all[from..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// Creates `dir/name` (and parents) and returns its path.
pub fn make_dir(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let path = dir.join(name);
    fs::create_dir_all(&path)?;
    Ok(path)
}

/// Whether the harness should keep temp dirs for inspection (`STOX_TEST_KEEP=1`).
pub fn keep_temp_dirs() -> bool {
    std::env::var_os("STOX_TEST_KEEP").is_some_and(|v| v != "0")
}

/// A temp dir named after `prefix`, kept on disk when `STOX_TEST_KEEP=1`.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("stox-{prefix}-"))
        .tempdir()
        .context("creating temp dir")?;
    if keep_temp_dirs() {
        dir.disable_cleanup(true);
        eprintln!("[harness] keeping {}", dir.path().display());
    }
    Ok(dir)
}

/// Runs `npm ci` (the lock file's exact versions) in a Node.js test peer's directory.
pub fn npm_ci(dir: &Path) -> Result<()> {
    eprintln!("[harness] npm ci in {}", dir.display());
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .context("running npm ci (are node and npm installed?)")?;
    if !out.status.success() {
        bail!(
            "npm ci in {} failed: {}\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
