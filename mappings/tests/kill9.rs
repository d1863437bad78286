//! Durability of `Outbox::flush` under `kill -9`: a child process (this test binary, re-run
//! with an environment variable) pushes items, flushes, says "flushed", keeps writing without
//! flushing, and is killed with SIGKILL; the parent reopens the store and finds every flushed
//! item, in order.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use stox_mappings::{Store, Table};

const CHILD_DIR: &str = "STOX_MAPPINGS_KILL9_CHILD_DIR";
const TEST_NAME: &str = "flushed_outbox_items_survive_sigkill";
const FLUSHED: usize = 500;
const PRESENCE: usize = 50;

fn item(i: usize) -> Vec<u8> {
    format!("item-{i}").into_bytes()
}

/// What the child does: never returns.
fn child(dir: &str) -> ! {
    let store = Store::open_sled(std::path::Path::new(dir)).unwrap();
    for i in 0..FLUSHED {
        store.outbox.push(&item(i)).unwrap();
    }
    store.outbox.flush().unwrap();
    // Records are durable once `flush` returns.
    for i in 0..PRESENCE {
        store
            .tables
            .put(Table::Watchers, &format!("w{i:03}"), &item(i))
            .unwrap();
    }
    store.tables.flush().unwrap();
    // On a line of its own: libtest has already written "test <name> ... " without a newline.
    println!("\nflushed");
    // Keep the store busy (unflushed writes) until the parent kills us.
    for i in 0.. {
        store.outbox.push(format!("extra-{i}").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    unreachable!("the loop above only ends by SIGKILL");
}

/// Kills the child when dropped, so a failing assertion does not leave it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn flushed_outbox_items_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut proc = KillOnDrop(
        Command::new(exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = proc.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let said_flushed = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "flushed");
        let _ = tx.send(said_flushed);
    });
    let said_flushed = rx.recv_timeout(Duration::from_secs(60));
    assert_eq!(said_flushed, Ok(true), "the child did not say \"flushed\"");
    // Let it write some unflushed items, then kill -9 (std's Child::kill sends SIGKILL on Unix).
    std::thread::sleep(Duration::from_millis(50));
    proc.0.kill().unwrap();
    let status = proc.0.wait().unwrap();
    assert!(!status.success(), "the child must have died by the signal");

    let store = Store::open_sled(dir.path()).unwrap();
    let pending = store.outbox.pending().unwrap();
    assert!(
        pending.len() >= FLUSHED,
        "only {} items survived",
        pending.len()
    );
    for (i, (_, bytes)) in pending.iter().take(FLUSHED).enumerate() {
        assert_eq!(bytes, &item(i), "item {i}");
    }
    // Whatever unflushed items made it are whole and in order too.
    for (k, (_, bytes)) in pending.iter().skip(FLUSHED).enumerate() {
        assert_eq!(bytes, format!("extra-{k}").as_bytes());
    }
    assert!(pending.windows(2).all(|w| w[0].0 < w[1].0));
    let watchers = store.tables.list(Table::Watchers).unwrap();
    assert_eq!(watchers.len(), PRESENCE, "every presence record survived");
    for (i, (key, value)) in watchers.iter().enumerate() {
        assert_eq!(
            (key.as_str(), value),
            (format!("w{i:03}").as_str(), &item(i))
        );
    }
    // And the counter resumes past everything that survived.
    let last = pending.last().map(|p| p.0).unwrap();
    assert!(store.outbox.push(b"after").unwrap() > last);
}
