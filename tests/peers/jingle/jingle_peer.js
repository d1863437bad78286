#!/usr/bin/env node
'use strict';
/**
 * A real XMPP call client for the stox end-to-end tests: StanzaJS 12 (Jingle, XEP-0166/0167/
 * 0176/0320, SDP <-> Jingle) on libwebrtc (@roamhq/wrtc, the media engine of Conversations and
 * Monal), with a small XEP-0353 (Jingle Message Initiation) layer of its own, since StanzaJS
 * has none. Driven by the Rust harness (tests/src/jingle_peer.rs) over JSON lines.
 *
 * See README.md for the full command/event protocol. In short:
 *
 *   stdin  {"cmd":"call","to":"bob@localhost","jmi":true,"codecs":["opus"]}
 *          {"cmd":"proceed","sid":S} {"cmd":"reject","sid":S,"reason":"busy"}
 *          {"cmd":"accept","sid":S} {"cmd":"retract","sid":S} {"cmd":"hangup","sid":S}
 *          {"cmd":"set","answer":"auto"|"manual","codecs":[...]} {"cmd":"stats"}
 *          {"cmd":"send","xml":"<message .../>"} {"cmd":"quit"}
 *   stdout {"event":"online"} {"event":"propose",...} {"event":"ringing",...}
 *          {"event":"proceed",...} {"event":"accepted",...} {"event":"ice",...}
 *          {"event":"connection",...} {"event":"audio",...} {"event":"terminated",...} ...
 *
 * Loopback only: every non-loopback ICE candidate, gathered or received, is dropped
 * (docs/TESTING.md).
 */

const fs = require('fs');
const crypto = require('crypto');
const readline = require('readline');

const wrtc = require('@roamhq/wrtc');
const XMPP = require('stanza');
const ICESession = require('stanza/jingle/ICESession').default;
const SessionManager = require('stanza/jingle/SessionManager').default;

const { ToneGenerator, Analyser, DtmfDetector, FRAME_MS } = require('./audio');
const { restrictCodecs, audioCodecs, isLoopback, candidateAddress } = require('./sdp');

const NS_JMI = 'urn:xmpp:jingle-message:0';
const NS_JINGLE = 'urn:xmpp:jingle:1';
const NS_RTP = 'urn:xmpp:jingle:apps:rtp:1';
const NS_HINTS = 'urn:xmpp:hints';

// ---------------------------------------------------------------------------------------------
// Command line

function parseArgs(argv) {
  const args = {
    jid: '',
    password: '',
    url: '',
    tone: 440,
    amplitude: 0.3,
    log: '',
    answer: 'auto',
    codecs: [],
    reportMs: 1000,
    debug: false,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--jid': args.jid = next(); break;
      case '--password': args.password = next(); break;
      case '--url': args.url = next(); break;
      case '--tone': args.tone = Number(next()); break;
      case '--amplitude': args.amplitude = Number(next()); break;
      case '--log': args.log = next(); break;
      case '--answer': args.answer = next(); break;
      case '--codecs': args.codecs = next().split(',').filter(Boolean); break;
      case '--report-ms': args.reportMs = Number(next()); break;
      case '--debug': args.debug = true; break;
      default:
        process.stderr.write(`unknown argument ${a}\n`);
        process.exit(2);
    }
  }
  if (!args.jid || !args.url) {
    process.stderr.write('usage: jingle_peer.js --jid user@domain/res --password PW --url ws://... ' +
      '[--tone HZ] [--log FILE] [--answer auto|manual] [--codecs opus,pcmu] [--report-ms MS]\n');
    process.exit(2);
  }
  return args;
}

const args = parseArgs(process.argv);
const t0 = Date.now();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function debug(...parts) {
  if (args.debug) {
    process.stderr.write(`[${Date.now() - t0}ms] ${parts.join(' ')}\n`);
  }
}

// The capture log: one JSON object per line, {"t","dir":"in"|"out","xml"} for every Jingle /
// JMI stanza and {"t","dir":"local"|"remote","sid","type","sdp"} for every SDP libwebrtc made
// or was given.
// Written synchronously, so an entry is in the file before the event that follows it is
// reported on stdout: the harness may read the log as soon as it sees the event.
const logFd = args.log ? fs.openSync(args.log, 'a') : null;
function logEntry(entry) {
  if (logFd !== null) {
    fs.writeSync(logFd, JSON.stringify({ t: Date.now() - t0, ...entry }) + '\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Settings that commands may change

const settings = {
  answer: args.answer, // 'auto': ringing + proceed / accept at once; 'manual': wait for commands
  codecs: args.codecs, // restriction for our offers and answers ([] = all of libwebrtc's)
  // false: the session-initiate that follows our <proceed/> is not accepted at once but rings
  // (session-info <ringing/>) until the `accept` command, like a direct one in manual mode.
  // Lets a test act between session-initiate and session-accept (e.g. a SIP CANCEL there).
  acceptProceeded: true,
};

// ---------------------------------------------------------------------------------------------
// The microphone: one tone source, one track per session

const audioSource = new wrtc.nonstandard.RTCAudioSource();
const tone = new ToneGenerator(args.tone, 48000, args.amplitude);
let framesSent = 0;
const toneStart = process.hrtime.bigint();
setInterval(() => {
  // Catch up on frames a busy event loop delayed, so the tone keeps real time.
  const elapsedMs = Number((process.hrtime.bigint() - toneStart) / 1000000n);
  let budget = 20;
  while (framesSent * FRAME_MS <= elapsedMs && budget-- > 0) {
    audioSource.onData({
      samples: tone.nextFrame(),
      sampleRate: 48000,
      bitsPerSample: 16,
      channelCount: 1,
      numberOfFrames: tone.frameSamples,
    });
    framesSent++;
  }
  if (framesSent * FRAME_MS < elapsedMs - 200) {
    framesSent = Math.floor(elapsedMs / FRAME_MS); // too far behind: skip ahead
  }
}, FRAME_MS);

// ---------------------------------------------------------------------------------------------
// Per-call state

/**
 * Calls by sid (the JMI id and the Jingle sid are the same, XEP-0353 §3.2):
 * {sid, peer, jmi, direction, state, session, codecs, analyser, sink, track, ice, connection,
 *  terminated, localHangup}
 */
const calls = new Map();

function callFor(sid) {
  let call = calls.get(sid);
  if (!call) {
    call = { sid, peer: '', jmi: false, direction: '', state: 'new', codecs: null };
    calls.set(sid, call);
  }
  return call;
}

function bare(jid) {
  return String(jid || '').split('/')[0];
}

// ---------------------------------------------------------------------------------------------
// libwebrtc peer connections: codec restriction, state events, loopback-only candidates

function createPeerConnection(session, opts) {
  const pc = new wrtc.RTCPeerConnection({ ...opts, iceServers: [] });
  const call = callFor(session.sid);
  const restrict = () => (call.codecs && call.codecs.length ? call.codecs : settings.codecs);
  for (const kind of ['createOffer', 'createAnswer']) {
    const original = pc[kind].bind(pc);
    pc[kind] = async (...a) => {
      const desc = await original(...a);
      const sdp = restrictCodecs(desc.sdp, restrict());
      const type = desc.type;
      logEntry({ dir: 'local', sid: session.sid, type, sdp });
      emit({ event: 'sdp', sid: session.sid, dir: 'local', type, codecs: audioCodecs(sdp) });
      return { type, sdp };
    };
  }
  const setRemote = pc.setRemoteDescription.bind(pc);
  pc.setRemoteDescription = async desc => {
    logEntry({ dir: 'remote', sid: session.sid, type: desc.type, sdp: desc.sdp });
    emit({ event: 'sdp', sid: session.sid, dir: 'remote', type: desc.type, codecs: audioCodecs(desc.sdp) });
    return setRemote(desc);
  };
  // libwebrtc may repeat a state change event: report changes only.
  pc.addEventListener('iceconnectionstatechange', () => {
    if (call.ice !== pc.iceConnectionState) {
      call.ice = pc.iceConnectionState;
      emit({ event: 'ice', sid: session.sid, state: call.ice });
    }
  });
  pc.addEventListener('connectionstatechange', () => {
    if (call.connection !== pc.connectionState) {
      call.connection = pc.connectionState;
      emit({ event: 'connection', sid: session.sid, state: call.connection });
    }
  });
  return pc;
}

// Gathered candidates: only loopback ones go out in transport-info.
const originalOnIceCandidate = ICESession.prototype.onIceCandidate;
ICESession.prototype.onIceCandidate = function onIceCandidate(e) {
  const line = e && e.candidate && e.candidate.candidate;
  if (line && !isLoopback(candidateAddress(line))) {
    debug('dropping gathered candidate', line);
    return;
  }
  return originalOnIceCandidate.call(this, e);
};

// Received candidates (in session-initiate, session-accept or transport-info): only loopback
// ones reach libwebrtc.
const originalProcess = SessionManager.prototype.process;
SessionManager.prototype.process = function process_(req) {
  if (req && req.jingle && Array.isArray(req.jingle.contents)) {
    for (const content of req.jingle.contents) {
      const transport = content && content.transport;
      if (transport && Array.isArray(transport.candidates)) {
        const kept = transport.candidates.filter(c => isLoopback(c.ip));
        if (kept.length !== transport.candidates.length) {
          debug('dropping', transport.candidates.length - kept.length, 'received candidates');
        }
        transport.candidates = kept;
      }
    }
  }
  return originalProcess.call(this, req);
};

// ---------------------------------------------------------------------------------------------
// XMPP client

const [jidNoRes, resource] = args.jid.includes('/') ? args.jid.split(/\/(.*)/s) : [args.jid, ''];
const client = XMPP.createClient({
  jid: jidNoRes,
  password: args.password,
  resource: resource || undefined,
  server: jidNoRes.split('@')[1],
  transports: { websocket: args.url, bosh: false },
  useStreamManagement: false,
  jingle: {
    hasRTCPeerConnection: true,
    advertiseAudio: true,
    advertiseVideo: false,
    advertiseFileTransfer: false,
    iceServers: [],
    trickleIce: true,
    createPeerConnection,
  },
});
client.disco.addFeature(NS_JMI);

/** Sends one stanza as raw XML on the stream. */
function sendRaw(xml) {
  return new Promise((resolve, reject) => {
    if (!client.transport) {
      reject(new Error('not connected'));
      return;
    }
    client.transport.write(xml, 'utf8', err => (err ? reject(err) : resolve()));
  });
}

function esc(s) {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/'/g, '&apos;')
    .replace(/"/g, '&quot;');
}

/** A XEP-0353 message: type chat, UUIDv4 id, <store/> hint (XEP-0334). */
function jmiMessage(to, inner) {
  const id = crypto.randomUUID();
  return sendRaw(
    `<message xmlns='jabber:client' to='${esc(to)}' type='chat' id='${id}'>${inner}` +
      `<store xmlns='${NS_HINTS}'/></message>`,
  );
}

function reasonXml(condition, text) {
  return `<reason xmlns='${NS_JINGLE}'><${condition}/>${text ? `<text>${esc(text)}</text>` : ''}</reason>`;
}

// Every Jingle / JMI stanza in both directions goes to the capture log, as sent on the wire.
function isCapturable(xml) {
  return xml.includes(NS_JINGLE) || xml.includes(NS_JMI) || xml.includes('urn:xmpp:jingle:');
}
client.on('raw:outgoing', data => {
  if (typeof data === 'string' && isCapturable(data)) {
    logEntry({ dir: 'out', xml: data });
    const m = /action="session-terminate"[^>]*sid="([^"]+)"|sid="([^"]+)"[^>]*action="session-terminate"/.exec(data);
    const call = m && calls.get(m[1] || m[2]);
    if (call && call.sendFinish) {
      setImmediate(call.sendFinish);
    }
  }
});
client.on('raw:incoming', data => {
  if (typeof data !== 'string') {
    return;
  }
  if (isCapturable(data)) {
    logEntry({ dir: 'in', xml: data });
  }
  if (data.includes(NS_JMI)) {
    try {
      onJmi(XMPP.JXT.parse(data));
    } catch (err) {
      emit({ event: 'error', text: `bad JMI stanza: ${err}` });
    }
  }
});

// Commands wait for the session: a stanza written before it would break the stream.
let markOnline;
const online = new Promise(resolve => {
  markOnline = resolve;
});

client.on('session:started', async () => {
  client.sendPresence();
  // Once the server answers this ping it has processed the initial presence (stanzas of one
  // session are handled in order), so a <propose/> to our bare JID reaches us.
  try {
    await client.ping(jidNoRes.split('@')[1]);
  } catch (err) {
    debug('ping failed', JSON.stringify(err));
  }
  emit({ event: 'online', jid: client.jid });
  markOnline();
});
client.on('auth:failed', () => {
  emit({ event: 'error', text: 'authentication failed' });
  shutdown(1);
});
client.on('disconnected', () => {
  emit({ event: 'offline' });
});
client.on('stream:error', err => {
  emit({ event: 'error', text: `stream error: ${JSON.stringify(err)}` });
});
client.jingle.on('log', (level, message, ...rest) => {
  if (level === 'error') {
    emit({ event: 'log', level, text: message });
  }
  debug('jingle', level, message, rest.length ? JSON.stringify(rest[0]).slice(0, 300) : '');
});

// ---------------------------------------------------------------------------------------------
// XEP-0353 Jingle Message Initiation

function childText(el, name) {
  const c = el.getChild(name);
  return c ? c.getText() : undefined;
}

function reasonOf(el) {
  const reason = el.getChild('reason');
  if (!reason) {
    return { reason: null, text: null };
  }
  const cond = reason.children.find(c => typeof c !== 'string' && c.getName() !== 'text');
  return { reason: cond ? cond.getName() : null, text: childText(reason, 'text') || null };
}

function onJmi(msg) {
  if (msg.getName() !== 'message') {
    return;
  }
  const from = msg.getAttribute('from') || '';
  if (msg.getAttribute('type') === 'error') {
    const el = msg.children.find(c => typeof c !== 'string' && c.getNamespace() === NS_JMI);
    const err = msg.getChild('error');
    const cond = err && err.children.find(c => typeof c !== 'string' && c.getName() !== 'text');
    emit({
      event: 'jmi_error',
      sid: el ? el.getAttribute('id') : null,
      from,
      condition: cond ? cond.getName() : null,
    });
    return;
  }
  for (const el of msg.children) {
    if (typeof el === 'string' || el.getNamespace() !== NS_JMI) {
      continue;
    }
    const sid = el.getAttribute('id');
    if (!sid) {
      continue;
    }
    const kind = el.getName();
    const call = callFor(sid);
    switch (kind) {
      case 'propose': {
        const media = el
          .getChildren('description')
          .map(d => d.getAttribute('media'))
          .filter(Boolean);
        call.peer = from;
        call.jmi = true;
        call.direction = 'in';
        call.state = 'proposed';
        emit({ event: 'propose', sid, from, media });
        jmiMessage(from, `<ringing xmlns='${NS_JMI}' id='${esc(sid)}'/>`).then(() => {
          call.state = 'ringing';
          if (settings.answer === 'auto') {
            proceed(sid);
          }
        });
        break;
      }
      case 'ringing':
        emit({ event: 'ringing', sid, from });
        break;
      case 'proceed':
        emit({ event: 'proceed', sid, from });
        if (call.direction === 'out' && call.state === 'proposed') {
          // XEP-0353 §3.2: the session goes to the full JID that proceeded, with the same id.
          call.state = 'initiating';
          call.peer = from;
          startSession(call);
        }
        break;
      case 'reject': {
        const r = reasonOf(el);
        emit({ event: 'reject', sid, from, ...r });
        if (call.direction === 'out') {
          call.state = 'rejected';
        }
        break;
      }
      case 'retract': {
        const r = reasonOf(el);
        emit({ event: 'retract', sid, from, ...r });
        if (call.direction === 'in') {
          call.state = 'retracted';
        }
        break;
      }
      case 'finish': {
        const r = reasonOf(el);
        emit({ event: 'finish', sid, from, ...r });
        break;
      }
      default:
        emit({ event: 'jmi', kind, sid, from });
    }
  }
}

function proceed(sid) {
  const call = calls.get(sid);
  if (!call || call.direction !== 'in') {
    emit({ event: 'error', text: `no incoming proposal ${sid}` });
    return;
  }
  call.state = 'proceeded';
  jmiMessage(call.peer, `<proceed xmlns='${NS_JMI}' id='${esc(sid)}'/>`);
}

// ---------------------------------------------------------------------------------------------
// Jingle sessions (StanzaJS MediaSession on libwebrtc)

function newTrackStream() {
  const track = audioSource.createTrack();
  return { track, stream: new wrtc.MediaStream([track]) };
}

function startSession(call) {
  const { track, stream } = newTrackStream();
  call.track = track;
  const session = client.jingle.createMediaSession(call.peer, call.sid, stream);
  call.session = session;
  emit({ event: 'outgoing', sid: call.sid, to: call.peer, jmi: call.jmi });
  session.start({ offerToReceiveAudio: true });
}

function acceptSession(call) {
  const session = call.session;
  if (!session) {
    emit({ event: 'error', text: `no session ${call.sid} to accept` });
    return;
  }
  const { track, stream } = newTrackStream();
  call.track = track;
  session.addTrack(track, stream);
  session.accept();
  call.state = 'active';
  emit({ event: 'accepted', sid: call.sid, by: 'local' });
}

client.on('jingle:incoming', session => {
  const call = callFor(session.sid);
  call.session = session;
  call.peer = session.peerID;
  if (!call.direction) {
    call.direction = 'in';
  }
  const viaJmi = call.jmi && call.state === 'proceeded';
  emit({ event: 'incoming', sid: session.sid, from: session.peerID, jmi: viaJmi });
  if (viaJmi && settings.acceptProceeded) {
    // We proceeded: this is the session we agreed to (XEP-0353 §3.2).
    acceptSession(call);
  } else if (settings.answer === 'auto') {
    acceptSession(call);
  } else {
    session.ring();
    call.state = 'ringing';
  }
});

client.on('jingle:ringing', session => {
  emit({ event: 'session_ringing', sid: session.sid });
});

client.on('jingle:accepted', session => {
  const call = callFor(session.sid);
  call.state = 'active';
  emit({ event: 'accepted', sid: session.sid, by: 'remote' });
});

client.jingle.on('peerTrackAdded', (session, track) => {
  const call = callFor(session.sid);
  if (track.kind !== 'audio' || call.sink) {
    return;
  }
  call.analyser = new Analyser();
  call.dtmfDetector = new DtmfDetector();
  call.dtmf = '';
  call.sink = new wrtc.nonstandard.RTCAudioSink(track);
  let lastReport = 0;
  call.sink.ondata = data => {
    // DTMF keys heard: libwebrtc (NetEq) plays received RFC 4733 telephone-events out as
    // the key's dual tone, so they show up in the decoded audio.
    for (const digit of call.dtmfDetector.push(data.samples, data.sampleRate, data.channelCount || 1)) {
      call.dtmf += digit;
      emit({ event: 'dtmf', sid: session.sid, digit, rate: data.sampleRate });
    }
    const result = call.analyser.push(data.samples, data.sampleRate, data.channelCount || 1);
    if (result && Date.now() - lastReport >= args.reportMs) {
      lastReport = Date.now();
      emit({ event: 'audio', sid: session.sid, ...result });
    }
  };
  emit({ event: 'track', sid: session.sid, kind: track.kind });
});

client.on('jingle:terminated', (session, reason) => {
  const call = callFor(session.sid);
  if (call.terminated) {
    return; // StanzaJS may end a session twice (pc close after session-terminate).
  }
  call.terminated = true;
  call.state = 'ended';
  const r = reason || {};
  emit({
    event: 'terminated',
    sid: session.sid,
    reason: r.condition || null,
    text: r.text || null,
    by: call.localHangup ? 'local' : 'remote',
  });
  if (call.sink) {
    call.sink.stop();
    call.sink = null;
  }
  if (call.track) {
    call.track.stop();
    call.track = null;
  }
  if (call.jmi) {
    // XEP-0353 (v0.7+) <finish/>: tell the other party's clients the call is over. StanzaJS
    // queues its session-terminate behind this event, so send the finish once that went out
    // (as Conversations does: terminate first, then finish), or after 300 ms when we only
    // received the terminate.
    call.sendFinish = () => {
      if (call.finishTimer) {
        clearTimeout(call.finishTimer);
        call.finishTimer = null;
        jmiMessage(
          bare(call.peer),
          `<finish xmlns='${NS_JMI}' id='${esc(session.sid)}'>${reasonXml(r.condition || 'success')}</finish>`,
        ).catch(() => undefined);
      }
    };
    call.finishTimer = setTimeout(call.sendFinish, 300);
  }
});

// ---------------------------------------------------------------------------------------------
// Commands

async function stats() {
  const out = [];
  for (const call of calls.values()) {
    const entry = {
      sid: call.sid,
      peer: call.peer,
      direction: call.direction,
      jmi: call.jmi,
      state: call.state,
      ice: call.ice || null,
      connection: call.connection || null,
      audio: call.analyser ? call.analyser.last : null,
      dtmf: call.dtmf || '',
      codec: null,
      packets_received: 0,
      packets_sent: 0,
    };
    const pc = call.session && call.session.pc;
    if (pc && pc.signalingState !== 'closed') {
      try {
        const report = await pc.getStats();
        report.forEach(s => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            entry.packets_received = s.packetsReceived || 0;
            const codec = s.codecId && report.get(s.codecId);
            if (codec) {
              entry.codec = codec.mimeType || null;
            }
          }
          if (s.type === 'outbound-rtp' && s.kind === 'audio') {
            entry.packets_sent = s.packetsSent || 0;
          }
        });
      } catch (err) {
        debug('getStats failed', err);
      }
    }
    out.push(entry);
  }
  emit({ event: 'stats', calls: out });
}

function requireCall(cmd) {
  const sid = cmd.sid || [...calls.keys()].pop();
  const call = sid && calls.get(sid);
  if (!call) {
    emit({ event: 'error', text: `${cmd.cmd}: no call ${cmd.sid || ''}` });
  }
  return call;
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'call': {
      const sid = cmd.sid || crypto.randomUUID();
      const call = callFor(sid);
      call.direction = 'out';
      call.codecs = Array.isArray(cmd.codecs) ? cmd.codecs : null;
      call.jmi = cmd.jmi !== false;
      // Tells the harness which sid this command got (`tag` is its own request number).
      emit({ event: 'calling', sid, to: cmd.to, jmi: call.jmi, tag: cmd.tag === undefined ? null : cmd.tag });
      if (call.jmi) {
        call.state = 'proposed';
        call.peer = cmd.to;
        await jmiMessage(
          cmd.to,
          `<propose xmlns='${NS_JMI}' id='${esc(sid)}'>` +
            `<description xmlns='${NS_RTP}' media='audio'/></propose>`,
        );
        emit({ event: 'proposed', sid, to: cmd.to });
      } else {
        call.state = 'initiating';
        call.peer = cmd.to;
        startSession(call);
      }
      break;
    }
    case 'proceed': {
      const call = requireCall(cmd);
      if (call) {
        proceed(call.sid);
      }
      break;
    }
    case 'reject': {
      const call = requireCall(cmd);
      if (call) {
        const reason = cmd.reason || 'decline';
        call.state = 'rejected';
        if (call.session && !call.terminated) {
          // A session-initiate without JMI: decline it in Jingle (XEP-0166 §6.7).
          call.localHangup = true;
          call.session.end(reason);
        } else {
          await jmiMessage(
            call.peer,
            `<reject xmlns='${NS_JMI}' id='${esc(call.sid)}'>${reasonXml(reason, cmd.text)}</reject>`,
          );
        }
        emit({ event: 'rejected', sid: call.sid, reason });
      }
      break;
    }
    case 'retract': {
      const call = requireCall(cmd);
      if (call) {
        call.state = 'retracted';
        await jmiMessage(
          bare(call.peer),
          `<retract xmlns='${NS_JMI}' id='${esc(call.sid)}'>` +
            `${reasonXml(cmd.reason || 'cancel', cmd.text || 'Retracted')}</retract>`,
        );
        emit({ event: 'retracted', sid: call.sid });
      }
      break;
    }
    case 'accept': {
      const call = requireCall(cmd);
      if (call) {
        acceptSession(call);
      }
      break;
    }
    case 'hangup': {
      const call = requireCall(cmd);
      if (call && call.session && !call.terminated) {
        call.localHangup = true;
        call.session.end(cmd.reason || 'success');
      } else if (call) {
        emit({ event: 'error', text: `hangup: call ${call.sid} has no live session` });
      }
      break;
    }
    case 'set':
      if (cmd.answer) {
        settings.answer = cmd.answer;
      }
      if (Array.isArray(cmd.codecs)) {
        settings.codecs = cmd.codecs;
      }
      if (typeof cmd.accept_proceeded === 'boolean') {
        settings.acceptProceeded = cmd.accept_proceeded;
      }
      emit({
        event: 'set',
        answer: settings.answer,
        codecs: settings.codecs,
        accept_proceeded: settings.acceptProceeded,
      });
      break;
    case 'stats':
      await stats();
      break;
    case 'send':
      await sendRaw(cmd.xml);
      break;
    case 'quit':
      shutdown(0);
      break;
    default:
      emit({ event: 'error', text: `unknown command ${cmd.cmd}` });
  }
}

let quitting = false;
function shutdown(code) {
  if (quitting) {
    return;
  }
  quitting = true;
  try {
    client.jingle.endAllSessions('success');
  } catch (err) {
    debug('endAllSessions', err);
  }
  setTimeout(() => {
    client.disconnect();
    setTimeout(() => {
      if (logFd !== null) {
        fs.closeSync(logFd);
      }
      process.exit(code);
    }, 200);
  }, 200);
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', line => {
  line = line.trim();
  if (!line) {
    return;
  }
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ event: 'error', text: `bad command: ${err}` });
    return;
  }
  // One command at a time, in order.
  chain = chain
    .then(() => (cmd.cmd === 'quit' ? undefined : online))
    .then(() => handle(cmd))
    .catch(err => {
      emit({ event: 'error', text: `${cmd.cmd}: ${err && err.message ? err.message : err}` });
    });
});
rl.on('close', () => shutdown(0));

process.on('unhandledRejection', err => {
  emit({ event: 'error', text: `unhandled: ${err && err.stack ? err.stack : JSON.stringify(err)}` });
});

client.connect();
