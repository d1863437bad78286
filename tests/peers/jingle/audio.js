'use strict';
/**
 * Audio for the stox Jingle test peer: a sine tone generator (the peer's "microphone") and an
 * analyser for what it hears (dominant frequency and RMS over ~1 s windows).
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

module.exports = { ToneGenerator, Analyser, analyse, fft, FRAME_MS };
