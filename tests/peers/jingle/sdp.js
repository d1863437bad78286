'use strict';
/**
 * SDP helpers for the stox Jingle test peer.
 *
 * - restrictCodecs: keep only the named codecs in every m=audio section (RFC 4566 §5.14 format
 *   list, with their a=rtpmap / a=fmtp / a=rtcp-fb lines), the classic "SDP munging" that
 *   libwebrtc accepts for a local offer or answer (a subset of what it generated).
 * - isLoopback: whether an ICE candidate address is on loopback (127.0.0.0/8 or ::1); the peer
 *   drops every other candidate, gathered or received (docs/TESTING.md).
 */

/** Codec names (encoding names of a=rtpmap, case-insensitive) kept in m=audio sections. */
function restrictCodecs(sdp, codecs) {
  if (!codecs || codecs.length === 0) {
    return sdp;
  }
  const wanted = new Set(codecs.map(c => c.toLowerCase()));
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(/\r?\n/);
  // Split into the session part and media sections.
  const sections = [[]];
  for (const line of lines) {
    if (line.startsWith('m=')) {
      sections.push([]);
    }
    sections[sections.length - 1].push(line);
  }
  const out = [...sections[0]];
  for (const section of sections.slice(1)) {
    const mline = section[0].split(' ');
    if (!section[0].startsWith('m=audio')) {
      out.push(...section);
      continue;
    }
    const names = new Map();
    for (const line of section) {
      const m = /^a=rtpmap:(\d+) ([^/]+)/.exec(line);
      if (m) {
        names.set(m[1], m[2].toLowerCase());
      }
    }
    const keep = new Set(mline.slice(3).filter(pt => wanted.has(names.get(pt) || '')));
    out.push([...mline.slice(0, 3), ...mline.slice(3).filter(pt => keep.has(pt))].join(' '));
    for (const line of section.slice(1)) {
      const m = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+|\*)[ ]/.exec(line);
      if (m && m[1] !== '*' && !keep.has(m[1])) {
        continue;
      }
      out.push(line);
    }
  }
  return out.join(eol);
}

/** The payload types and codec names of the first m=audio section: [{pt, name, rate}]. */
function audioCodecs(sdp) {
  const lines = sdp.split(/\r?\n/);
  const start = lines.findIndex(l => l.startsWith('m=audio'));
  if (start < 0) {
    return [];
  }
  const pts = lines[start].split(' ').slice(3);
  const out = [];
  for (const pt of pts) {
    const line = lines.find(l => l.startsWith(`a=rtpmap:${pt} `));
    const m = line && /^a=rtpmap:\d+ ([^/]+)\/(\d+)/.exec(line);
    out.push({ pt: Number(pt), name: m ? m[1] : '', rate: m ? Number(m[2]) : 0 });
  }
  return out;
}

/** Whether an ICE candidate address is loopback (127.0.0.0/8 or ::1). */
function isLoopback(address) {
  if (!address) {
    return false;
  }
  const a = String(address).replace(/^\[|\]$/g, '').toLowerCase();
  return a.startsWith('127.') || a === '::1' || a === '0:0:0:0:0:0:0:1';
}

/** The connection address of an a=candidate / candidate: line (RFC 8839 §5.1), or ''. */
function candidateAddress(line) {
  const parts = String(line).replace(/^a=/, '').split(' ');
  return parts.length > 4 ? parts[4] : '';
}

module.exports = { restrictCodecs, audioCodecs, isLoopback, candidateAddress };
