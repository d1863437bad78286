//! The benchmark's XMPP clients: tokio-xmpp c2s clients over plain TCP with SASL PLAIN
//! (RFC 6120 §6; the test Prosody allows it on loopback), one available presence each
//! (RFC 6121 §4.2, so Prosody routes messages for the bare JID to them).
//!
//! Each client runs in a task of its own that both receives (counting benchmark messages and
//! error bounces into the current [`Slot`]) and sends what the pacer asks it to
//! ([`Command::Send`]), stamping each message with the time it is handed to tokio-xmpp.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

use super::body::{now_us, Stamp};
use super::stats::{Recorder, Slot};

/// What the pacer asks a client to do.
#[derive(Debug)]
pub enum Command {
    /// Send benchmark message `seq` of `recorder`'s run to `to`.
    Send {
        /// The recipient.
        to: Jid,
        /// The run's counters (the send is counted there).
        recorder: Arc<Recorder>,
        /// Sequence number.
        seq: u32,
    },
}

/// Counters of one client that outlive runs.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Stream disconnections (tokio-xmpp reconnects by itself).
    pub disconnects: AtomicU64,
}

/// A connected client: its command queue and task.
#[derive(Debug)]
pub struct BenchClient {
    /// Queue of sends.
    pub commands: mpsc::Sender<Command>,
    /// Counters.
    pub counters: Arc<ClientCounters>,
    task: JoinHandle<()>,
}

/// The stanza id of message `seq` of run `run`; error bounces carry it back (RFC 6120 §8.3).
pub fn stanza_id(run: u32, seq: u32) -> String {
    format!("sb{run}-{seq}")
}

/// The run an id written by [`stanza_id`] belongs to.
pub fn run_of_stanza_id(id: &str) -> Option<u32> {
    id.strip_prefix("sb")?.split_once('-')?.0.parse().ok()
}

/// Logs `jid` in at `server` (c2s, plain TCP), sends available presence, and starts its task.
pub async fn connect(
    server: SocketAddr,
    jid: &str,
    password: &str,
    slot: Arc<Slot>,
) -> Result<BenchClient> {
    let bare: Jid = jid.parse().with_context(|| format!("bad JID {jid}"))?;
    let mut client = Client::new_plaintext(
        bare,
        password.to_string(),
        DnsConfig::addr(&server.to_string()),
        Timeouts::default(),
    );
    let online = async {
        while let Some(event) = client.next().await {
            match event {
                Event::Online { .. } => return Ok(()),
                Event::Disconnected(err) => bail!("{jid}: login failed: {err}"),
                Event::Stanza(_) => {}
            }
        }
        Err(anyhow!("{jid}: stream ended before login"))
    };
    tokio::time::timeout(Duration::from_secs(15), online)
        .await
        .map_err(|_| anyhow!("{jid}: no login after 15 s"))??;
    client
        .send_stanza(Presence::available().into())
        .await
        .with_context(|| format!("{jid}: sending presence"))?;
    let (commands, queue) = mpsc::channel(4096);
    let counters = Arc::new(ClientCounters::default());
    let task = tokio::spawn(run(client, queue, slot, counters.clone()));
    Ok(BenchClient {
        commands,
        counters,
        task,
    })
}

impl BenchClient {
    /// Closes the command queue and waits for the task to end its stream.
    pub async fn close(self) {
        drop(self.commands);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn run(
    mut client: Client,
    mut queue: mpsc::Receiver<Command>,
    slot: Arc<Slot>,
    counters: Arc<ClientCounters>,
) {
    loop {
        tokio::select! {
            event = client.next() => match event {
                Some(Event::Stanza(Stanza::Message(message))) => on_message(&slot, &message),
                Some(Event::Disconnected(_)) => {
                    counters.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
                None => return,
            },
            command = queue.recv() => match command {
                Some(Command::Send { to, recorder, seq }) => send(&mut client, to, &recorder, seq).await,
                None => break,
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.send_end()).await;
}

async fn send(client: &mut Client, to: Jid, recorder: &Recorder, seq: u32) {
    let at = now_us();
    let stamp = Stamp {
        run: recorder.run(),
        seq,
        sent_us: at,
    };
    let mut message = Message::new_with_type(MessageType::Chat, Some(to));
    message.id = Some(Id(stanza_id(recorder.run(), seq)));
    message.bodies.insert(Lang::new(), stamp.encode());
    match client.send_stanza(message.into()).await {
        Ok(_) => recorder.on_sent(at),
        Err(_) => recorder.on_send_failed(),
    }
}

fn on_message(slot: &Slot, message: &Message) {
    let at = now_us();
    let recorder = slot.get();
    if message.type_ == MessageType::Error {
        let run = message.id.as_ref().and_then(|id| run_of_stanza_id(&id.0));
        if run == Some(recorder.run()) {
            recorder.on_error();
        }
        return;
    }
    if let Some(stamp) = message.bodies.values().find_map(|b| Stamp::parse(b)) {
        recorder.on_arrival(stamp, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_ids_name_their_run() {
        assert_eq!(stanza_id(12, 345), "sb12-345");
        assert_eq!(run_of_stanza_id("sb12-345"), Some(12));
        assert_eq!(run_of_stanza_id("12-345"), None);
        assert_eq!(run_of_stanza_id("sbx-1"), None);
    }

    #[test]
    fn messages_count_into_the_current_run() {
        let slot = Slot::default();
        let rec = Arc::new(Recorder::new(4, 2));
        slot.set(rec.clone());
        let mut m = Message::new_with_type(MessageType::Chat, None);
        m.bodies.insert(
            Lang::new(),
            Stamp {
                run: 4,
                seq: 1,
                sent_us: 0,
            }
            .encode(),
        );
        on_message(&slot, &m);
        let mut bounce = Message::new_with_type(MessageType::Error, None);
        bounce.id = Some(Id(stanza_id(4, 0)));
        on_message(&slot, &bounce);
        bounce.id = Some(Id(stanza_id(3, 0)));
        on_message(&slot, &bounce);
        assert_eq!((rec.delivered(), rec.errors()), (1, 1));
    }
}
