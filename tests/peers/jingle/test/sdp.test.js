'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { restrictCodecs, audioCodecs, isLoopback, candidateAddress } = require('../sdp');

const OFFER = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 126', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=rtcp-mux',
  'a=rtpmap:111 opus/48000/2', 'a=rtcp-fb:111 transport-cc', 'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2', 'a=fmtp:63 111/111', 'a=rtpmap:9 G722/8000', 'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000', 'a=rtpmap:126 telephone-event/8000', 'a=ssrc:1 cname:x', '',
].join('\r\n');

test('Opus only keeps PT 111 and its fmtp and rtcp-fb', () => {
  const sdp = restrictCodecs(OFFER, ['opus']);
  assert.match(sdp, /\r\nm=audio 9 UDP\/TLS\/RTP\/SAVPF 111\r\n/);
  assert.match(sdp, /a=fmtp:111 minptime/);
  assert.match(sdp, /a=rtcp-fb:111 transport-cc/);
  assert.doesNotMatch(sdp, /PCMU|red\/|fmtp:63|telephone-event/);
  assert.match(sdp, /a=ssrc:1 cname:x/);
  assert.deepStrictEqual(audioCodecs(sdp), [{ pt: 111, name: 'opus', rate: 48000 }]);
});

test('PCMU plus telephone-event, case-insensitive', () => {
  const sdp = restrictCodecs(OFFER, ['pcmu', 'TELEPHONE-EVENT']);
  assert.deepStrictEqual(audioCodecs(sdp).map(c => c.pt), [0, 126]);
});

test('no restriction leaves the SDP untouched', () => {
  assert.strictEqual(restrictCodecs(OFFER, []), OFFER);
});

test('loopback addresses', () => {
  assert.ok(isLoopback('127.0.0.1'));
  assert.ok(isLoopback('127.1.2.3'));
  assert.ok(isLoopback('::1'));
  assert.ok(!isLoopback('192.0.2.2'));
  assert.ok(!isLoopback('fd00::2'));
  assert.ok(!isLoopback(undefined));
  assert.strictEqual(
    candidateAddress('candidate:1 1 udp 2122063615 127.0.0.1 58489 typ host generation 0'),
    '127.0.0.1');
});
