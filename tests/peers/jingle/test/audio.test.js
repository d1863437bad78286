'use strict';
// node --test: the tone generator and the analyser on synthetic PCM.
const test = require('node:test');
const assert = require('node:assert');
const { ToneGenerator, Analyser, analyse } = require('../audio');

function tone(freq, rate, seconds, amplitude = 0.3) {
  const gen = new ToneGenerator(freq, rate, amplitude);
  const frames = Math.round((seconds * 1000) / 10);
  const out = new Int16Array(frames * gen.frameSamples);
  for (let i = 0; i < frames; i++) {
    out.set(gen.nextFrame(), i * gen.frameSamples);
  }
  return out;
}

test('frames are 10 ms at 48 kHz', () => {
  const gen = new ToneGenerator(440);
  assert.strictEqual(gen.nextFrame().length, 480);
});

for (const [freq, rate] of [[440, 48000], [660, 48000], [440, 8000], [1000, 16000]]) {
  test(`analyser finds ${freq} Hz at ${rate} Hz within 1 Hz, RMS of amplitude 0.3`, () => {
    const a = new Analyser();
    const pcm = tone(freq, rate, 1.0);
    let result = null;
    for (let i = 0; i < pcm.length; i += rate / 100) {
      result = a.push(pcm.subarray(i, i + rate / 100), rate, 1) || result;
    }
    assert.ok(result, 'one window completed');
    assert.ok(Math.abs(result.freq - freq) < 1, `freq ${result.freq}`);
    assert.ok(Math.abs(result.rms - 0.3 / Math.SQRT2) < 0.005, `rms ${result.rms}`);
  });
}

test('stereo input: the first channel is analysed', () => {
  const mono = tone(660, 48000, 1.0);
  const stereo = new Int16Array(mono.length * 2);
  for (let i = 0; i < mono.length; i++) {
    stereo[2 * i] = mono[i];
    stereo[2 * i + 1] = 0;
  }
  const r = new Analyser().push(stereo, 48000, 2);
  assert.ok(Math.abs(r.freq - 660) < 1);
});

test('silence has zero RMS', () => {
  const r = analyse(new Float32Array(48000), 48000);
  assert.strictEqual(r.rms, 0);
});
