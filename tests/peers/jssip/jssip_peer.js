// stox end-to-end tests: a JsSIP user agent (https://jssip.net) in Node.js, speaking SIP over
// WebSocket (RFC 7118) to stox, driven over JSON lines.
//
//   node jssip_peer.js --url ws://127.0.0.1:PORT --uri sip:dave@sip.localhost --password PW
//
// JsSIP is written for browsers: its WebSocketInterface opens `new WebSocket(url, 'sip')`.
// Node 20 has no WebSocket global, so the `ws` package provides it (with
// NODE_TLS_REJECT_UNAUTHORIZED=0 or NODE_EXTRA_CA_CERTS for a wss:// test certificate).
//
// stdout, one JSON object a line:
//   {"event":"connected"}                       the WebSocket is open (count them: a second
//                                                one means JsSIP reconnected)
//   {"event":"registered","contact":"...","response":"<the 200 OK as text>"}
//   {"event":"registration_failed","cause":"..."}
//   {"event":"sent","id":N,"status":200}       a MESSAGE we sent was answered 2xx
//   {"event":"send_failed","id":N,"cause":"...","status":N}
//   {"event":"message","from":"sip:...","to":"sip:...","body":"...","content_type":"...",
//    "via":"SIP/2.0/WS ..."}                    a MESSAGE came in (JsSIP answers it 200)
//   {"event":"subscription","state":"pending"|"active"|"accepted"}
//   {"event":"notify","final":false,"body":"...","content_type":"...","state":"...","via":"..."}
//   {"event":"subscription_terminated","code":N,"reason":"..."}
//   {"event":"disconnected"}
// stdin, one JSON object a line:
//   {"cmd":"message","id":N,"to":"sip:alice@localhost","body":"..."}
//   {"cmd":"subscribe","target":"sip:alice@localhost"}   RFC 6665 SUBSCRIBE, Event: presence
//   {"cmd":"keepalive","url":"ws://..."}         on a second, bare WebSocket (subprotocol sip):
//                                                a WebSocket ping and an RFC 5626 §4.4.1
//                                                double-CRLF ping (binary frame); reports
//   {"event":"keepalive","pong":true,"answer":"0d0a","binary":true} (answer in hex)
//   {"cmd":"quit"}                              unregister, stop, exit

'use strict';

const readline = require('readline');
const WebSocket = require('ws');
globalThis.WebSocket = WebSocket;
const JsSIP = require('jssip');

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (dflt !== undefined) return dflt;
  throw new Error('missing --' + name);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

if (process.argv.includes('--debug')) JsSIP.debug.enable('JsSIP:*');
else JsSIP.debug.disable('JsSIP:*');

const socket = new JsSIP.WebSocketInterface(arg('url'));
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: arg('uri'),
  password: arg('password'),
  register: true,
  register_expires: Number(arg('expires', '600')),
  connection_recovery_min_interval: 2,
  connection_recovery_max_interval: 30,
  session_timers: false,
  user_agent: 'JsSIP (stox tests)',
});

ua.on('connected', () => emit({ event: 'connected' }));
ua.on('disconnected', () => emit({ event: 'disconnected' }));
ua.on('registered', (e) => emit({
  event: 'registered',
  contact: ua.contact.toString(),
  response: e.response ? e.response.toString() : '',
}));
ua.on('registrationFailed', (e) => emit({
  event: 'registration_failed',
  cause: String(e.cause),
  status: e.response ? e.response.status_code : null,
}));
ua.on('newMessage', (e) => {
  if (e.originator !== 'remote') return;
  const r = e.request;
  emit({
    event: 'message',
    from: r.from.uri.toString(),
    to: r.to.uri.toString(),
    body: r.body,
    content_type: r.getHeader('Content-Type'),
    via: r.getHeader('Via'),
  });
});

function send(cmd) {
  ua.sendMessage(cmd.to, cmd.body, {
    contentType: cmd.content_type || 'text/plain',
    eventHandlers: {
      succeeded: (e) => emit({ event: 'sent', id: cmd.id, status: e.response.status_code }),
      failed: (e) => emit({
        event: 'send_failed',
        id: cmd.id,
        cause: String(e.cause),
        status: e.response ? e.response.status_code : null,
      }),
    },
  });
}

function subscribe(cmd) {
  const sub = ua.subscribe(cmd.target, 'presence', 'application/pidf+xml', {
    expires: cmd.expires || 600,
  });
  for (const state of ['pending', 'active', 'accepted']) {
    sub.on(state, () => emit({ event: 'subscription', state }));
  }
  sub.on('notify', (isFinal, request, body, contentType) => emit({
    event: 'notify',
    final: isFinal,
    body: body || '',
    content_type: contentType || null,
    state: request.getHeader('Subscription-State'),
    via: request.getHeader('Via'),
  }));
  sub.on('terminated', (code, reason) => emit({
    event: 'subscription_terminated',
    code,
    reason: reason === undefined ? null : String(reason),
  }));
  sub.subscribe();
}

function keepalive(cmd) {
  const ws = new WebSocket(cmd.url, 'sip');
  const result = { event: 'keepalive', pong: false, answer: null, binary: null };
  const done = () => { emit(result); try { ws.close(); } catch (e) { /* closed */ } };
  const timer = setTimeout(done, 5000);
  ws.on('pong', () => { result.pong = true; });
  ws.on('message', (data, isBinary) => {
    result.answer = Buffer.from(data).toString('hex');
    result.binary = isBinary;
    clearTimeout(timer);
    setTimeout(done, 200);
  });
  ws.on('open', () => {
    ws.ping();
    ws.send(Buffer.from('\r\n\r\n'), { binary: true });
  });
  ws.on('error', (e) => { result.error = String(e); clearTimeout(timer); done(); });
}

let quitting = false;
function quit() {
  if (quitting) return;
  quitting = true;
  try { ua.stop(); } catch (e) { /* already stopped */ }
  setTimeout(() => process.exit(0), 1000);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { emit({ event: 'bad_command', line }); return; }
  if (cmd.cmd === 'message') send(cmd);
  else if (cmd.cmd === 'keepalive') keepalive(cmd);
  else if (cmd.cmd === 'subscribe') subscribe(cmd);
  else if (cmd.cmd === 'quit') quit();
  else emit({ event: 'bad_command', line });
});
rl.on('close', quit);

ua.start();
