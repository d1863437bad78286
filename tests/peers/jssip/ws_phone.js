// stox end-to-end tests: a scripted SIP user agent over WebSocket (RFC 7118), written on the
// `ws` package, for calls. JsSIP itself needs WebRTC (RTCPeerConnection) to place or answer a
// call, which Node.js lacks; this UA speaks the same SIP over the same kind of socket as a
// browser phone (a `.invalid` Contact host, `Via: SIP/2.0/WS` or `WSS`, outbound registration) but
// answers an INVITE with a plain RTP/AVP (PCMU) SDP, the media stox's SIP legs use.
//
//   node ws_phone.js --url ws://127.0.0.1:PORT --uri sip:dave@sip.localhost --password PW
//
// It registers at once (Digest MD5, qop=auth, answering one 401), then answers every INVITE
// with 180 and 200 (its SDP), every BYE, OPTIONS or INFO with 200, and an ACK with nothing.
// On command it calls: INVITE with the same kind of offer, one 407 answered with Digest
// (RFC 3261 §22.3; the 407 is ACKed first), the 2xx ACKed to the Contact it names.
//
// stdout, one JSON object a line:
//   {"event":"connected"}
//   {"event":"registered","response":"<the 200 as text>","contact":"<sip:...>"}
//   {"event":"registration_failed","status":N}
//   {"event":"request","method":"INVITE","text":"<the request as received>"}  every request
//   {"event":"call_response","status":N,"text":"<the response>"}  to our INVITE
//   {"event":"disconnected"}
// stdin: {"cmd":"call","to":"sip:alice@localhost"}  an INVITE from our AOR
//        {"cmd":"quit"} (closes the socket without unregistering, exits)

'use strict';

const crypto = require('crypto');
const readline = require('readline');
const WebSocket = require('ws');

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (dflt !== undefined) return dflt;
  throw new Error('missing --' + name);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const url = arg('url');
const aor = arg('uri');
const password = arg('password');
const user = aor.replace(/^sip:/, '').split('@')[0];
const domain = aor.split('@')[1];
const rand = (n) => crypto.randomBytes(n).toString('hex');
const host = rand(4) + '.invalid';
// RFC 7118 §5.1/§5.2 (as JsSIP does): the URI transport parameter is `ws` over both kinds of
// socket; the Via transport is `WSS` over a secure WebSocket.
const contactUri = `sip:${rand(4)}@${host};transport=ws`;
const viaTransport = url.startsWith('wss:') ? 'WSS' : 'WS';
const instance = `<urn:uuid:${crypto.randomUUID()}>`;
const callId = rand(8);
const fromTag = rand(4);
let cseq = 0;

function md5(s) {
  return crypto.createHash('md5').update(s).digest('hex');
}

function parse(text) {
  const cut = text.indexOf('\r\n\r\n');
  const head = cut >= 0 ? text.slice(0, cut) : text;
  const body = cut >= 0 ? text.slice(cut + 4) : '';
  const lines = head.split('\r\n');
  const start = lines.shift();
  const headers = [];
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
  }
  const get = (name) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase())
    .map(([, v]) => v);
  const m = /^SIP\/2\.0 (\d{3})/.exec(start);
  return {
    start, headers, body, get,
    status: m ? Number(m[1]) : null,
    method: m ? null : start.split(' ')[0],
  };
}

function digest(challenge, method, ruri, header) {
  const p = {};
  for (const m of challenge.matchAll(/(\w+)="?([^",]*)"?/g)) p[m[1]] = m[2];
  const nc = '00000001';
  const cnonce = rand(4);
  const ha1 = md5(`${user}:${p.realm}:${password}`);
  const ha2 = md5(`${method}:${ruri}`);
  const response = md5(`${ha1}:${p.nonce}:${nc}:${cnonce}:auth:${ha2}`);
  return `${header}: Digest username="${user}", realm="${p.realm}", ` +
    `nonce="${p.nonce}", uri="${ruri}", response="${response}", algorithm=MD5, ` +
    `qop=auth, nc=${nc}, cnonce="${cnonce}"` + (p.opaque ? `, opaque="${p.opaque}"` : '');
}

// Our one outgoing call: its target, Call-ID, From tag, CSeq, branch, offer.
const call = { to: null, callId: rand(8), tag: rand(4), cseq: 0, branch: null, offer: null };

function invite(ws, auth) {
  call.cseq += 1;
  call.branch = `z9hG4bK${rand(6)}`;
  const lines = [
    `INVITE ${call.to} SIP/2.0`,
    `Via: SIP/2.0/${viaTransport} ${host};branch=${call.branch}`,
    'Max-Forwards: 70',
    `From: <${aor}>;tag=${call.tag}`,
    `To: <${call.to}>`,
    `Call-ID: ${call.callId}`,
    `CSeq: ${call.cseq} INVITE`,
    `Contact: <${contactUri};ob>`,
    'Content-Type: application/sdp',
  ];
  if (auth) lines.push(auth);
  lines.push(`Content-Length: ${Buffer.byteLength(call.offer)}`, '', call.offer);
  ws.send(lines.join('\r\n'));
}

function ack(ws, resp, twoHundred) {
  // RFC 3261 §17.1.1.3: the ACK of a non-2xx is the INVITE's hop (same branch, To of the
  // response); §13.2.2.4: the ACK of a 2xx is a new request to the Contact.
  const contact = /<([^>]+)>/.exec(resp.get('Contact')[0] || '');
  const ruri = twoHundred && contact ? contact[1] : call.to;
  const branch = twoHundred ? `z9hG4bK${rand(6)}` : call.branch;
  ws.send([
    `ACK ${ruri} SIP/2.0`,
    `Via: SIP/2.0/${viaTransport} ${host};branch=${branch}`,
    'Max-Forwards: 70',
    `From: <${aor}>;tag=${call.tag}`,
    `To: ${resp.get('To')[0]}`,
    `Call-ID: ${call.callId}`,
    `CSeq: ${call.cseq} ACK`,
    'Content-Length: 0', '', ''].join('\r\n'));
}

function register(ws, challenge) {
  cseq += 1;
  const ruri = `sip:${domain}`;
  const lines = [
    `REGISTER ${ruri} SIP/2.0`,
    `Via: SIP/2.0/${viaTransport} ${host};branch=z9hG4bK${rand(6)}`,
    'Max-Forwards: 70',
    `From: <${aor}>;tag=${fromTag}`,
    `To: <${aor}>`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} REGISTER`,
    `Contact: <${contactUri}>;reg-id=1;+sip.instance="${instance}";expires=600`,
    'Supported: path, outbound',
    'Expires: 600',
  ];
  if (challenge) lines.push(digest(challenge, 'REGISTER', ruri, 'Authorization'));
  lines.push('Content-Length: 0', '', '');
  ws.send(lines.join('\r\n'));
}

function respond(ws, req, code, reason, extra, body) {
  const lines = [`SIP/2.0 ${code} ${reason}`];
  for (const v of req.get('Via')) lines.push(`Via: ${v}`);
  lines.push(`From: ${req.get('From')[0]}`);
  let to = req.get('To')[0];
  if (code > 100 && !/;\s*tag=/.test(to)) to += `;tag=${toTag(req)}`;
  lines.push(`To: ${to}`);
  lines.push(`Call-ID: ${req.get('Call-ID')[0]}`);
  lines.push(`CSeq: ${req.get('CSeq')[0]}`);
  for (const h of extra || []) lines.push(h);
  const b = body || '';
  lines.push(`Content-Length: ${Buffer.byteLength(b)}`, '', b);
  ws.send(lines.join('\r\n'));
}

const tags = new Map();
function toTag(req) {
  const id = req.get('Call-ID')[0];
  if (!tags.has(id)) tags.set(id, rand(4));
  return tags.get(id);
}

function sdp() {
  const port = 20000 + Math.floor(Math.random() * 20000) * 2 % 20000;
  return ['v=0', `o=- ${Date.now()} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
    `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
}

const ws = new WebSocket(url, 'sip');
ws.on('open', () => {
  emit({ event: 'connected' });
  register(ws, null);
});
ws.on('close', () => {
  emit({ event: 'disconnected' });
  process.exit(0);
});
ws.on('error', (e) => emit({ event: 'error', error: String(e) }));
let answered401 = false;
ws.on('message', (data) => {
  const text = Buffer.from(data).toString('utf8');
  if (text.trim() === '') return;
  const m = parse(text);
  if (m.status !== null) {
    if (/INVITE/.test(m.get('CSeq')[0] || '')) {
      emit({ event: 'call_response', status: m.status, text });
      if (m.status === 407 && !call.authorized) {
        call.authorized = true;
        ack(ws, m, false);
        invite(ws, digest(m.get('Proxy-Authenticate')[0], 'INVITE', call.to,
          'Proxy-Authorization'));
      } else if (m.status >= 200 && m.status < 300) {
        ack(ws, m, true);
      } else if (m.status >= 300) {
        ack(ws, m, false);
      }
      return;
    }
    if (!/REGISTER/.test(m.get('CSeq')[0] || '')) return;
    if (m.status === 401 && !answered401) {
      answered401 = true;
      register(ws, m.get('WWW-Authenticate')[0]);
    } else if (m.status === 200) {
      emit({ event: 'registered', response: text, contact: `<${contactUri}>` });
    } else if (m.status >= 300) {
      emit({ event: 'registration_failed', status: m.status });
    }
    return;
  }
  emit({ event: 'request', method: m.method, text });
  const contact = [`Contact: <${contactUri}>`];
  switch (m.method) {
    case 'INVITE': {
      respond(ws, m, 180, 'Ringing', contact);
      setTimeout(() => respond(ws, m, 200, 'OK',
        contact.concat(['Content-Type: application/sdp']), sdp()), 200);
      break;
    }
    case 'ACK':
      break;
    case 'BYE':
    case 'OPTIONS':
    case 'INFO':
    case 'MESSAGE':
    case 'NOTIFY':
      respond(ws, m, 200, 'OK', []);
      break;
    default:
      respond(ws, m, 405, 'Method Not Allowed', ['Allow: INVITE, ACK, BYE, OPTIONS, INFO']);
  }
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return; }
  if (cmd.cmd === 'call') {
    call.to = cmd.to;
    call.offer = sdp();
    invite(ws, null);
  }
  if (cmd.cmd === 'quit') {
    ws.close();
    setTimeout(() => process.exit(0), 500);
  }
});
