'use strict';
/**
 * Audio for the stox Jingle test peer: a sine tone generator (the peer's "microphone"), an
 * analyser for what it hears (dominant frequency and RMS over ~1 s windows) and a DTMF
 * detector (Goertzel) for the keys it hears.
 *
 * Pure functions and small classes with no libwebrtc dependency, so `node --test` can check
 * them on synthetic PCM (test/audio.test.js).
 */

/** Frames of 10 ms, as libwebrtc's RTCAudioSource expects them. */
const FRAME_MS = 10;

/**
 * A continuous sine tone cut into 10 ms frames of 16-bit mono PCM.
 * `frequency` 0 gives silence.
 */
class ToneGenerator {
  constructor(frequency, sampleRate = 48000, amplitude = 0.3) {
    this.frequency = frequency;
    this.sampleRate = sampleRate;
    this.amplitude = amplitude;
    this.frameSamples = Math.round((sampleRate * FRAME_MS) / 1000);
    this.sampleIndex = 0;
  }

  /** The next 10 ms frame (phase-continuous with the previous one). */
  nextFrame() {
    const samples = new Int16Array(this.frameSamples);
    const step = (2 * Math.PI * this.frequency) / this.sampleRate;
    for (let i = 0; i < samples.length; i++) {
      const v = this.amplitude * Math.sin(step * (this.sampleIndex + i));
      samples[i] = Math.round(v * 32767);
    }
    // Keep the index bounded so the phase stays exact over long runs: sin(step * n) repeats
    // after sampleRate samples when the frequency is a whole number of Hz.
    this.sampleIndex = (this.sampleIndex + samples.length) % (this.sampleRate * 1000);
    return samples;
  }
}

/** In-place iterative radix-2 FFT of (re, im); the length must be a power of two. */
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) {
      j ^= bit;
    }
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wRe = Math.cos(ang);
    const wIm = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let curRe = 1;
      let curIm = 0;
      for (let k = 0; k < len / 2; k++) {
        const aRe = re[i + k];
        const aIm = im[i + k];
        const bRe = re[i + k + len / 2] * curRe - im[i + k + len / 2] * curIm;
        const bIm = re[i + k + len / 2] * curIm + im[i + k + len / 2] * curRe;
        re[i + k] = aRe + bRe;
        im[i + k] = aIm + bIm;
        re[i + k + len / 2] = aRe - bRe;
        im[i + k + len / 2] = aIm - bIm;
        const nextRe = curRe * wRe - curIm * wIm;
        curIm = curRe * wIm + curIm * wRe;
        curRe = nextRe;
      }
    }
  }
}

/** The largest power of two not above `n`. */
function floorPow2(n) {
  let p = 1;
  while (p * 2 <= n) {
    p *= 2;
  }
  return p;
}

/**
 * Dominant frequency (Hz) and RMS (full scale = 1.0) of mono samples in [-1, 1].
 * Hann window, FFT over the largest power-of-two prefix, parabolic interpolation of the peak
 * (for a 48 kHz window of 32768 samples the bins are 1.46 Hz apart; the interpolated peak of
 * a clean tone is within a fraction of a bin).
 */
function analyse(samples, sampleRate) {
  let sumSq = 0;
  for (let i = 0; i < samples.length; i++) {
    sumSq += samples[i] * samples[i];
  }
  const rms = samples.length ? Math.sqrt(sumSq / samples.length) : 0;
  const n = floorPow2(samples.length);
  if (n < 64) {
    return { freq: 0, rms };
  }
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  const offset = samples.length - n;
  for (let i = 0; i < n; i++) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    re[i] = samples[offset + i] * w;
  }
  fft(re, im);
  // Skip DC and the lowest bins (< 20 Hz).
  const minBin = Math.max(1, Math.ceil((20 * n) / sampleRate));
  let best = minBin;
  let bestMag = -1;
  const mags = new Float64Array(n / 2);
  for (let k = 0; k < n / 2; k++) {
    mags[k] = Math.hypot(re[k], im[k]);
    if (k >= minBin && mags[k] > bestMag) {
      bestMag = mags[k];
      best = k;
    }
  }
  let delta = 0;
  if (best > 0 && best < n / 2 - 1) {
    // Parabolic interpolation on log magnitudes (Gaussian-like peak of a Hann window).
    const a = Math.log(mags[best - 1] + 1e-12);
    const b = Math.log(mags[best] + 1e-12);
    const c = Math.log(mags[best + 1] + 1e-12);
    const denom = a - 2 * b + c;
    if (denom !== 0) {
      delta = (0.5 * (a - c)) / denom;
    }
  }
  const freq = ((best + delta) * sampleRate) / n;
  return { freq, rms };
}

/**
 * Collects received PCM (any rate, any channel count: the first channel is analysed) and
 * yields one analysis per ~1 s window.
 */
class Analyser {
  constructor() {
    this.sampleRate = 0;
    this.buffer = [];
    this.buffered = 0;
    this.totalSamples = 0;
    this.last = null;
  }

  /**
   * Adds one chunk of interleaved 16-bit PCM. Returns an analysis when a window is complete,
   * else null.
   */
  push(samples, sampleRate, channelCount = 1) {
    if (sampleRate !== this.sampleRate) {
      this.sampleRate = sampleRate;
      this.buffer = [];
      this.buffered = 0;
    }
    const frames = Math.floor(samples.length / channelCount);
    const mono = new Float32Array(frames);
    for (let i = 0; i < frames; i++) {
      mono[i] = samples[i * channelCount] / 32768;
    }
    this.buffer.push(mono);
    this.buffered += frames;
    this.totalSamples += frames;
    if (this.buffered < sampleRate) {
      return null;
    }
    const all = new Float32Array(this.buffered);
    let at = 0;
    for (const chunk of this.buffer) {
      all.set(chunk, at);
      at += chunk.length;
    }
    this.buffer = [];
    this.buffered = 0;
    const result = analyse(all, sampleRate);
    this.last = {
      freq: Math.round(result.freq * 10) / 10,
      rms: Math.round(result.rms * 10000) / 10000,
      rate: sampleRate,
      channels: channelCount,
      samples: this.totalSamples,
    };
    return this.last;
  }
}

/** DTMF row (low group) and column (high group) frequencies (ITU-T Q.23). */
const DTMF_ROWS = [697, 770, 852, 941];
const DTMF_COLS = [1209, 1336, 1477, 1633];
const DTMF_KEYS = ['123A', '456B', '789C', '*0#D'];

/**
 * Goertzel power of `freq` in samples[from, from + n), normalised so that a pure sine at
 * `freq` gives its share of the block energy: 1.0 for a lone tone, ~0.5 for each tone of a
 * DTMF pair of equal level.
 */
function goertzelShare(samples, from, n, sampleRate, freq, energy) {
  const coeff = 2 * Math.cos((2 * Math.PI * freq) / sampleRate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const s0 = samples[from + i] + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  return energy > 0 ? (2 * power) / (n * energy) : 0;
}

/**
 * The DTMF key in one block of mono samples in [-1, 1], or null: the strongest row and the
 * strongest column tone must together carry most of the block's energy, each a fair part of
 * it (twist), and clearly dominate the other tones of their group.
 */
function detectDtmfBlock(samples, from, n, sampleRate, minRms = 0.003) {
  let energy = 0;
  for (let i = 0; i < n; i++) {
    energy += samples[from + i] * samples[from + i];
  }
  if (Math.sqrt(energy / n) < minRms) {
    return null;
  }
  energy /= n;
  const rows = DTMF_ROWS.map(f => goertzelShare(samples, from, n, sampleRate, f, energy));
  const cols = DTMF_COLS.map(f => goertzelShare(samples, from, n, sampleRate, f, energy));
  const best = xs => xs.reduce((b, v, i) => (v > xs[b] ? i : b), 0);
  const r = best(rows);
  const c = best(cols);
  if (rows[r] + cols[c] < 0.6 || rows[r] < 0.12 || cols[c] < 0.12) {
    return null;
  }
  if (rows.some((v, i) => i !== r && v > rows[r] / 4) || cols.some((v, i) => i !== c && v > cols[c] / 4)) {
    return null;
  }
  return DTMF_KEYS[r][c];
}

/**
 * Finds DTMF keys in received audio, e.g. what libwebrtc's NetEq plays out for RFC 4733
 * telephone-events. Blocks of ~25 ms (205 samples at 8 kHz, as in the classic Goertzel
 * detector); a key counts once it is seen in two blocks in a row, and again only after a
 * block without it.
 */
class DtmfDetector {
  constructor() {
    this.sampleRate = 0;
    this.pending = [];
    this.candidate = null;
    this.count = 0;
    this.reported = null;
    // Blocks without a key since the last one: a key is reported again only after two
    // (51 ms: more than one lost 20 ms packet or a playout glitch makes), so a tone
    // cut in two under load is still one key. A different key needs no gap.
    this.silent = 0;
  }

  /** Adds interleaved 16-bit PCM; returns the keys that started in it (possibly none). */
  push(samples, sampleRate, channelCount = 1) {
    if (sampleRate !== this.sampleRate) {
      this.sampleRate = sampleRate;
      this.pending = [];
    }
    const frames = Math.floor(samples.length / channelCount);
    for (let i = 0; i < frames; i++) {
      this.pending.push(samples[i * channelCount] / 32768);
    }
    const block = Math.round(sampleRate * 0.0256);
    const keys = [];
    let at = 0;
    while (this.pending.length - at >= block) {
      const key = detectDtmfBlock(this.pending, at, block, sampleRate);
      at += block;
      if (key !== null && key === this.candidate) {
        this.count++;
      } else {
        this.candidate = key;
        this.count = key === null ? 0 : 1;
      }
      if (key === null) {
        this.silent++;
        if (this.silent >= 2) this.reported = null;
      } else {
        this.silent = 0;
      }
      if (key !== null && this.count >= 2 && this.reported !== key) {
        this.reported = key;
        keys.push(key);
      }
    }
    this.pending = this.pending.slice(at);
    return keys;
  }
}

module.exports = {
  ToneGenerator,
  Analyser,
  DtmfDetector,
  detectDtmfBlock,
  analyse,
  fft,
  FRAME_MS,
  DTMF_ROWS,
  DTMF_COLS,
  DTMF_KEYS,
};
