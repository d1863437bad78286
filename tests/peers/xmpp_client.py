#!/usr/bin/python3
"""A scripted XMPP client (RFC 6120/6121) for the stox end-to-end tests.

Runs one slixmpp c2s session (plain TCP, no TLS: loopback tests only) and speaks
JSON lines with the Rust harness (tests/src/xmpp.rs):

  stdin  (commands):  {"cmd": "send", "xml": "<message .../>"}   send a raw stanza
                      {"cmd": "quit"}                           disconnect and exit
  stdout (events):    {"event": "online"}                       session started,
                                                                initial presence sent
                      {"event": "stanza", "xml": "<message xmlns='jabber:client' ...>"}
                      {"event": "error", "text": "..."}         auth failure etc.
                      {"event": "offline"}                      stream closed

With --reconnect the helper does not exit when the stream closes (e.g. the server
restarts): it reports "offline", connects again every 0.2 s until the server is
back, and reports "online" again once the new session has started. Stanzas asked
for while offline are sent after the new session starts.

Every received <message/>, <presence/> and <iq/> is reported, including the
ones slixmpp answers itself (disco, ping), so a test sees exactly what arrived.

By default slixmpp answers a subscription request (RFC 6121 §3.1) by itself: it
approves it (roster auto_authorize) and subscribes back (auto_subscribe). With
--manual-subscriptions it does neither, so the test decides: it sends
<presence type='subscribed'/> or 'unsubscribed' itself.

Usage: xmpp_client.py --jid alice@localhost/res --password pw --host 127.0.0.1 --port 5222
                     [--priority N] [--reconnect] [--manual-subscriptions] [--debug]
"""

import argparse
import asyncio
import json
import logging
import sys
import threading

import slixmpp
from slixmpp.xmlstream import tostring

STANZA_NAMES = {"message", "presence", "iq"}
RECONNECT_DELAY = 0.2  # seconds between connection attempts with --reconnect


def emit(obj):
    """Write one JSON event line (ASCII-escaped, so the pipe encoding never matters)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=True) + "\n")
    sys.stdout.flush()


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, priority, reconnect, manual_subscriptions):
        super().__init__(jid, password)
        if manual_subscriptions:
            # None (not False, which would refuse every request): leave subscription
            # requests to the test; and never subscribe back on our own.
            self.auto_authorize = None
            self.auto_subscribe = False
        self.priority = priority
        self.reconnect_on_loss = reconnect
        self.quitting = False
        self.server_address = None  # (host, port), set before the first connect
        self.online = False
        self.pending = []  # raw stanzas asked for before the session started
        self.register_plugin("xep_0030")  # disco, so disco#info queries get answers
        self.register_plugin("xep_0199")  # ping
        # Loopback tests run without TLS: allow SASL PLAIN over the clear stream.
        self["feature_mechanisms"].unencrypted_plain = True
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_filter("in", self.on_incoming)

    async def on_session_start(self, _event):
        # Initial presence (RFC 6121 §4.2) so messages to the bare JID reach us.
        self.send_presence(ppriority=self.priority)
        # Prosody handles a session's stanzas in order: once it answers this
        # ping it has processed the presence, so a message sent to us after
        # "online" is not bounced as if we were offline.
        try:
            await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=10)
        except Exception as e:  # noqa: BLE001 - a failed ping only loses the guarantee
            print("ping after presence failed: %s" % e, file=sys.stderr)
        self.online = True
        for xml in self.pending:
            self.send_raw(xml)
        self.pending.clear()
        emit({"event": "online", "jid": str(self.boundjid)})

    def send_when_online(self, xml):
        if self.online:
            self.send_raw(xml)
        else:
            self.pending.append(xml)

    def on_failed_auth(self, _event):
        emit({"event": "error", "text": "authentication failed"})
        self.disconnect()

    def on_connection_failed(self, event):
        if self.reconnect_on_loss and not self.quitting:
            # slixmpp would retry after 1, 3, 7... s; a restarting test server is back
            # within a second, so retry at a steady short interval instead.
            self.loop.call_later(RECONNECT_DELAY, self.reconnect_now)
            return
        emit({"event": "error", "text": "connection failed: %s" % event})

    def on_disconnected(self, _event):
        self.online = False
        emit({"event": "offline"})
        if self.reconnect_on_loss and not self.quitting:
            self.loop.call_later(RECONNECT_DELAY, self.reconnect_now)
        else:
            self.loop.call_soon(self.loop.stop)

    def connect_plain(self):
        """Connect over plain TCP (no TLS) to self.server_address."""
        self.connect(
            address=self.server_address,
            use_ssl=False,
            force_starttls=False,
            disable_starttls=True,
        )

    def reconnect_now(self):
        if not self.quitting and self.transport is None:
            # connect() cancels slixmpp's own pending (backed-off) attempt.
            self.connect_plain()

    def quit(self):
        self.quitting = True
        self.disconnect()

    def on_incoming(self, stanza):
        name = stanza.xml.tag.split("}")[-1]
        if name in STANZA_NAMES:
            # Without a stream, tostring() keeps xmlns='jabber:client' on the
            # top element, so the harness gets self-contained XML.
            emit({"event": "stanza", "xml": tostring(stanza.xml, top_level=True)})
        return stanza


def read_commands(client):
    """Blocking stdin reader on its own thread; hands commands to the event loop."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as err:
            emit({"event": "error", "text": "bad command: %s" % err})
            continue
        if cmd.get("cmd") == "send":
            client.loop.call_soon_threadsafe(client.send_when_online, cmd["xml"])
        elif cmd.get("cmd") == "quit":
            break
    # stdin closed or quit: the harness is done with us.
    client.loop.call_soon_threadsafe(client.quit)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--reconnect", action="store_true")
    parser.add_argument("--manual-subscriptions", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    client = Client(
        args.jid, args.password, args.priority, args.reconnect, args.manual_subscriptions
    )
    client.server_address = (args.host, args.port)
    client.connect_plain()
    threading.Thread(target=read_commands, args=(client,), daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
