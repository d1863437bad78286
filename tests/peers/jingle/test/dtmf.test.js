'use strict';
// node --test: the DTMF detector on synthetic PCM (dual tones, silence, a single tone).
const test = require('node:test');
const assert = require('node:assert');
const { DtmfDetector, DTMF_ROWS, DTMF_COLS, DTMF_KEYS } = require('../audio');

/** 16-bit mono PCM: `keys` each `onMs` long at amplitude `amp` per tone, `offMs` silence after. */
function dialled(keys, rate, onMs = 100, offMs = 100, amp = 0.2, extra = null) {
  const out = [];
  let n = 0;
  for (const key of keys) {
    const r = DTMF_KEYS.findIndex(row => row.includes(key));
    const c = DTMF_KEYS[r].indexOf(key);
    const on = Math.round((rate * onMs) / 1000);
    for (let i = 0; i < on; i++, n++) {
      let v = amp * Math.sin((2 * Math.PI * DTMF_ROWS[r] * n) / rate) +
        amp * Math.sin((2 * Math.PI * DTMF_COLS[c] * n) / rate);
      if (extra) {
        v += extra.amp * Math.sin((2 * Math.PI * extra.freq * n) / rate);
      }
      out.push(Math.round(v * 32767));
    }
    const off = Math.round((rate * offMs) / 1000);
    for (let i = 0; i < off; i++, n++) {
      out.push(extra ? Math.round(extra.amp * Math.sin((2 * Math.PI * extra.freq * n) / rate) * 32767) : 0);
    }
  }
  return Int16Array.from(out);
}

/** Feeds `pcm` in 10 ms chunks, as RTCAudioSink delivers it. */
function detect(pcm, rate, channels = 1) {
  const d = new DtmfDetector();
  const keys = [];
  const chunk = (rate / 100) * channels;
  for (let i = 0; i < pcm.length; i += chunk) {
    keys.push(...d.push(pcm.subarray(i, i + chunk), rate, channels));
  }
  return keys.join('');
}

for (const rate of [8000, 48000]) {
  test(`all sixteen keys are found once each at ${rate} Hz`, () => {
    assert.strictEqual(detect(dialled('123A456B789C*0#D', rate), rate), '123A456B789C*0#D');
  });
}

test('a key held for 300 ms counts once; the same key again after a gap counts again', () => {
  assert.strictEqual(detect(dialled('11', 8000, 300, 80), 8000), '11');
});

test('silence, a lone tone and a 440 Hz call tone give no key', () => {
  assert.strictEqual(detect(new Int16Array(8000), 8000), '');
  const lone = Int16Array.from({ length: 8000 }, (_, n) => Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 697 * n) / 8000)));
  assert.strictEqual(detect(lone, 8000), '');
  const call = Int16Array.from({ length: 48000 }, (_, n) => Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 440 * n) / 48000)));
  assert.strictEqual(detect(call, 48000), '');
});

test('stereo input: keys on the first channel are found', () => {
  const mono = dialled('5#', 48000);
  const stereo = new Int16Array(mono.length * 2);
  for (let i = 0; i < mono.length; i++) {
    stereo[2 * i] = mono[i];
    stereo[2 * i + 1] = mono[i];
  }
  assert.strictEqual(detect(stereo, 48000, 2), '5#');
});

test('a key cut in two by a 30 ms playout gap is one key; a repeated key after a real pause is two', () => {
  const rate = 48000;
  const tone = dialled(['7'], rate, 200, 0);
  const gapAt = Math.round(rate * 0.1);
  const gap = Math.round(rate * 0.03); // covers one whole 25.6 ms block here
  const cut = Int16Array.from([...tone.slice(0, gapAt), ...new Array(gap).fill(0), ...tone.slice(gapAt)]);
  const d = new DtmfDetector();
  const keys = [...d.push(cut, rate), ...d.push(new Int16Array(rate / 5), rate)];
  assert.deepStrictEqual(keys, ['7']);
  const again = new DtmfDetector();
  assert.deepStrictEqual(again.push(dialled(['7', '7', '#'], rate, 100, 80), rate), ['7', '7', '#']);
});
