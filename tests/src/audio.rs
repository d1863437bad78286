//! Test tones and what a peer heard: 16-bit PCM WAV files (the RIFF/WAVE `fmt ` and `data`
//! chunks of Microsoft's "Multimedia Programming Interface and Data Specifications 1.0",
//! `WAVE_FORMAT_PCM`) written as a peer's microphone and read back from its recording, with
//! the two measures the call tests assert: the dominant frequency (a Hann-windowed radix-2
//! FFT with parabolic peak interpolation) and the RMS level.
//!
//! ```
//! use stox_tests::audio::{analyse_samples, tone};
//!
//! let samples = tone(440.0, 8000, 8000, 8000);
//! let heard = analyse_samples(&samples, 8000, 0.0);
//! assert!((heard.dominant_hz - 440.0).abs() < 1.0);
//! assert!((heard.rms - 8000.0 / 2f64.sqrt()).abs() < 20.0);
//! ```

use std::f64::consts::PI;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Default tone amplitude: about -12 dBFS, loud enough to survive codecs, far from clipping.
pub const DEFAULT_AMPLITUDE: i16 = 8000;

/// `n` samples of a sine of `freq_hz` at `sample_rate`, peak `amplitude`.
pub fn tone(freq_hz: f64, sample_rate: u32, n: usize, amplitude: i16) -> Vec<i16> {
    let step = 2.0 * PI * freq_hz / f64::from(sample_rate);
    (0..n)
        .map(|i| {
            // |sin| <= 1, so the product stays within i16 range.
            (f64::from(amplitude) * (step * i as f64).sin()).round() as i16
        })
        .collect()
}

/// Writes a mono 16-bit WAV with a sine of `freq_hz`, `duration` long, peak `amplitude`.
pub fn write_tone(
    path: &Path,
    freq_hz: f64,
    sample_rate: u32,
    duration: Duration,
    amplitude: i16,
) -> Result<()> {
    let n = (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize;
    write_wav(
        path,
        sample_rate,
        1,
        &tone(freq_hz, sample_rate, n, amplitude),
    )
}

/// Writes interleaved 16-bit little-endian PCM as a canonical 44-byte-header WAV.
pub fn write_wav(path: &Path, sample_rate: u32, channels: u16, samples: &[i16]) -> Result<()> {
    let data_len = u32::try_from(samples.len() * 2).context("WAV data over 4 GiB")?;
    let block_align = channels * 2;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// A decoded 16-bit PCM WAV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels per frame.
    pub channels: u16,
    /// Interleaved samples.
    pub samples: Vec<i16>,
}

impl Wav {
    /// Reads a 16-bit PCM WAV. A `data` chunk whose length is 0 or runs past the end of the
    /// file (a writer killed before it fixed up the header) is taken to run to the end.
    pub fn read(path: &Path) -> Result<Wav> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Wav::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses the bytes of a 16-bit PCM WAV file.
    pub fn parse(bytes: &[u8]) -> Result<Wav> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            bail!("not a RIFF/WAVE file");
        }
        let mut format: Option<(u16, u16, u32, u16)> = None;
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let declared = le_u32(&bytes[pos + 4..pos + 8]) as usize;
            let body = pos + 8;
            let available = bytes.len() - body;
            if id == b"fmt " {
                if declared < 16 || available < 16 {
                    bail!("short fmt chunk");
                }
                let f = &bytes[body..body + 16];
                format = Some((
                    le_u16(&f[0..2]),
                    le_u16(&f[2..4]),
                    le_u32(&f[4..8]),
                    le_u16(&f[14..16]),
                ));
            } else if id == b"data" {
                let Some((tag, channels, sample_rate, bits)) = format else {
                    bail!("data chunk before fmt chunk");
                };
                // WAVE_FORMAT_PCM, or WAVE_FORMAT_EXTENSIBLE (libsndfile writes it for >2 ch).
                if !(tag == 1 || tag == 0xfffe) || bits != 16 || channels == 0 {
                    bail!("unsupported WAV format: tag {tag:#x}, {bits} bits, {channels} channels");
                }
                let len = if declared == 0 || declared > available {
                    available
                } else {
                    declared
                };
                let samples = bytes[body..body + len]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok(Wav {
                    sample_rate,
                    channels,
                    samples,
                });
            }
            // Chunks are padded to an even length.
            pos = body.saturating_add(declared).saturating_add(declared & 1);
        }
        bail!("no data chunk")
    }

    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Length in time.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.sample_rate.max(1)))
    }

    /// The first channel, as `f64`.
    pub fn first_channel(&self) -> Vec<f64> {
        self.samples
            .iter()
            .step_by(usize::from(self.channels.max(1)))
            .map(|&s| f64::from(s))
            .collect()
    }

    /// Analyses the first channel, skipping the first `skip` (call setup, jitter buffer fill).
    pub fn analyse(&self, skip: Duration) -> Analysis {
        let first: Vec<i16> = self
            .samples
            .iter()
            .step_by(usize::from(self.channels.max(1)))
            .copied()
            .collect();
        analyse_samples(&first, self.sample_rate, skip.as_secs_f64())
    }
}

/// Reads a WAV and analyses its first channel after `skip`.
pub fn analyse_file(path: &Path, skip: Duration) -> Result<Analysis> {
    Ok(Wav::read(path)?.analyse(skip))
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// What a recording contains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Analysis {
    /// The frequency with the most energy (Hz), 0 when there is nothing to analyse.
    pub dominant_hz: f64,
    /// RMS level of the analysed part, in 16-bit sample units (a full-scale sine is ≈ 23170).
    pub rms: f64,
    /// Length of the analysed part (after the skip).
    pub analysed: Duration,
}

impl Analysis {
    /// Whether the dominant frequency is within `tolerance_hz` of `hz`.
    pub fn is_tone(&self, hz: f64, tolerance_hz: f64) -> bool {
        (self.dominant_hz - hz).abs() <= tolerance_hz
    }
}

/// Analyses mono samples at `sample_rate`, skipping the first `skip_secs` seconds.
pub fn analyse_samples(samples: &[i16], sample_rate: u32, skip_secs: f64) -> Analysis {
    let skip = ((skip_secs * f64::from(sample_rate)) as usize).min(samples.len());
    let part: Vec<f64> = samples[skip..].iter().map(|&s| f64::from(s)).collect();
    Analysis {
        dominant_hz: dominant_frequency(&part, sample_rate),
        rms: rms(&part),
        analysed: Duration::from_secs_f64(part.len() as f64 / f64::from(sample_rate.max(1))),
    }
}

/// Root mean square of `samples` (0 for none).
pub fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt()
}

/// The dominant frequency of `samples` (Hz), ignoring DC and everything under 20 Hz: a
/// Hann-windowed FFT over the middle power-of-two block (up to 2^16 samples), refined by
/// parabolic interpolation of the log magnitudes around the peak bin. 0 for silence or
/// fewer than 64 samples.
pub fn dominant_frequency(samples: &[f64], sample_rate: u32) -> f64 {
    if samples.len() < 64 {
        return 0.0;
    }
    let mut n = 1usize << 16;
    while n > samples.len() {
        n >>= 1;
    }
    let start = (samples.len() - n) / 2;
    let mut re: Vec<f64> = samples[start..start + n]
        .iter()
        .enumerate()
        .map(|(i, &s)| s * (0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()))
        .collect();
    let mut im = vec![0.0; n];
    fft(&mut re, &mut im);
    let bin_hz = f64::from(sample_rate) / n as f64;
    let first = ((20.0 / bin_hz).ceil() as usize).max(1);
    let mags: Vec<f64> = (0..n / 2).map(|k| re[k].hypot(im[k])).collect();
    let Some(peak) = (first..n / 2 - 1).max_by(|&a, &b| mags[a].total_cmp(&mags[b])) else {
        return 0.0;
    };
    if mags[peak] <= f64::EPSILON {
        return 0.0;
    }
    let (a, b, c) = (
        mags[peak - 1].max(1e-12).ln(),
        mags[peak].ln(),
        mags[peak + 1].max(1e-12).ln(),
    );
    let denom = a - 2.0 * b + c;
    let offset = if denom.abs() > f64::EPSILON {
        (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    (peak as f64 + offset) * bin_hz
}

/// Goertzel magnitude of `freq_hz` in `samples`, normalised so that a sine of amplitude A
/// gives about A/2 (for a whole number of periods).
pub fn goertzel(samples: &[f64], sample_rate: u32, freq_hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * PI * freq_hz / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power.max(0.0).sqrt() / samples.len() as f64
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two (the caller picks `n`).
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * PI / len as f64;
        let (wr, wi) = (angle.cos(), angle.sin());
        for chunk in (0..n).step_by(len) {
            let (mut cr, mut ci) = (1.0, 0.0);
            for k in 0..len / 2 {
                let (a, b) = (chunk + k, chunk + k + len / 2);
                let tr = re[b] * cr - im[b] * ci;
                let ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
                let next = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = next;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_frequency_of_pure_tones_at_8k_and_48k() {
        for rate in [8000, 16000, 48000] {
            for hz in [300.0, 440.0, 660.0, 1000.0, 2750.5] {
                let s: Vec<f64> = tone(hz, rate, rate as usize, 8000)
                    .into_iter()
                    .map(f64::from)
                    .collect();
                let got = dominant_frequency(&s, rate);
                assert!((got - hz).abs() < 1.0, "{rate} Hz: {hz} → {got}");
            }
        }
    }

    #[test]
    fn dominant_frequency_survives_noise_and_a_weaker_second_tone() {
        let rate = 8000;
        let a = tone(440.0, rate, 8000, 6000);
        let b = tone(660.0, rate, 8000, 2000);
        let mut seed = 1u32;
        let mixed: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                f64::from(x) + f64::from(y) + f64::from((seed >> 16) as u16 as i16 / 16)
            })
            .collect();
        assert!((dominant_frequency(&mixed, rate) - 440.0).abs() < 1.0);
        assert!(goertzel(&mixed, rate, 440.0) > 2.0 * goertzel(&mixed, rate, 660.0));
    }

    #[test]
    fn silence_and_short_input_have_no_frequency() {
        assert_eq!(dominant_frequency(&[0.0; 4000], 8000), 0.0);
        assert_eq!(dominant_frequency(&[1.0; 10], 8000), 0.0);
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[3.0, -3.0]), 3.0);
    }

    #[test]
    fn wav_round_trip_and_stereo_first_channel() {
        let left = tone(440.0, 48000, 4800, 1000);
        let stereo: Vec<i16> = left.iter().flat_map(|&s| [s, -s / 2]).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        write_wav(&path, 48000, 2, &stereo).unwrap();
        let wav = Wav::read(&path).unwrap();
        assert_eq!(
            (wav.sample_rate, wav.channels, wav.frames()),
            (48000, 2, 4800)
        );
        assert_eq!(wav.samples, stereo);
        assert_eq!(wav.duration(), Duration::from_millis(100));
        assert_eq!(
            wav.first_channel()[..3],
            [0.0, f64::from(left[1]), f64::from(left[2])]
        );

        // A writer killed before fixing its header: data length 0 means "to the end".
        let mut bytes = fs::read(&path).unwrap();
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Wav::parse(&bytes).unwrap().samples, stereo);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Wav::parse(&bytes).unwrap().samples, stereo);
    }

    #[test]
    fn parse_skips_unknown_chunks_and_rejects_non_pcm16() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        write_wav(&path, 8000, 1, &[1, 2, 3]).unwrap();
        let plain = fs::read(&path).unwrap();
        let mut with_list = plain[..36].to_vec();
        with_list.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
        with_list.extend_from_slice(&plain[36..]);
        assert_eq!(Wav::parse(&with_list).unwrap().samples, [1, 2, 3]);

        let mut eight_bit = plain.clone();
        eight_bit[34..36].copy_from_slice(&8u16.to_le_bytes());
        assert!(Wav::parse(&eight_bit).is_err());
        assert!(Wav::parse(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(Wav::parse(b"nope").is_err());
    }

    #[test]
    fn analyse_skips_the_start() {
        let mut s = vec![0i16; 4000];
        s.extend(tone(660.0, 8000, 8000, 8000));
        let a = analyse_samples(&s, 8000, 0.5);
        assert!(a.is_tone(660.0, 1.0), "{a:?}");
        assert_eq!(a.analysed, Duration::from_secs(1));
        assert!((a.rms - 8000.0 / 2f64.sqrt()).abs() < 20.0);
    }
}
