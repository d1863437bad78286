//! Self-tests of the baresip peer alone (no stox): two real SIP phones call each other over
//! loopback (RFC 3261 INVITE/200/ACK/BYE, RFC 3264 offer/answer, RTP with RFC 4733 DTMF) and
//! each checks the tone the other one plays. If these fail, baresip or the harness is broken,
//! not the gateway.
//!
//! ```text
//! A (440 Hz) dials sip:b@127.0.0.1:PB; B (660 Hz) gets CALL_INCOMING and accepts
//! both CALL_ESTABLISHED; A sends DTMF "1#"; B sees CALL_DTMF_START 1, #
//! ~2 s of audio; A hangs up; both CALL_CLOSED
//! A's recording ≈ 660 Hz, B's ≈ 440 Hz (±10 Hz), RMS above a floor
//!
//! SIPp INVITEs an auto-answering B (PCMU + telephone-event 101), replays the RFC 4733
//! pcaps of "1" and "#" (needs root), sends BYE → B reports CALL_DTMF_START 1, #
//! ```

use std::process::Command;
use std::time::Duration;

use stox_tests::audio::{self, Analysis};
use stox_tests::baresip::{Baresip, BaresipOptions, Codecs};
use stox_tests::crate_path;
use stox_tests::ports::free_port;
use stox_tests::process::{tail, temp_dir, Process};

const T: Duration = Duration::from_secs(10);
const SKIP: Duration = Duration::from_millis(500);
/// The tones are written at amplitude 8000 (RMS ≈ 5657); codecs lose a little, silence is ~0.
const RMS_FLOOR: f64 = 1000.0;

fn assert_heard(who: &Baresip, heard: &Analysis, hz: f64) {
    assert!(
        heard.is_tone(hz, 10.0)
            && heard.rms > RMS_FLOOR
            && heard.analysed >= Duration::from_secs(1),
        "{} should hear {hz} Hz, heard {heard:?}\n{}",
        who.uri(),
        who.context()
    );
}

/// A dials B, B accepts, they talk for ~2 s, A hangs up. Returns what (A, B) heard and
/// the codec B's recording was decoded at (its sample rate).
fn call(codecs_a: Codecs, codecs_b: Codecs, dtmf: bool) -> (Analysis, Analysis, u32) {
    let mut a = Baresip::start(BaresipOptions::new("a", 440.0).codecs(codecs_a)).unwrap();
    let mut b = Baresip::start(BaresipOptions::new("b", 660.0).codecs(codecs_b)).unwrap();

    a.dial(&b.uri()).unwrap();
    let incoming = b.expect_event("CALL_INCOMING", T).unwrap();
    assert_eq!(incoming.peer_uri.as_deref(), Some(a.uri().as_str()));
    assert_eq!(incoming.direction.as_deref(), Some("incoming"));
    a.expect_event("CALL_RINGING", T).unwrap();
    b.accept().unwrap();
    let established = a.expect_event("CALL_ESTABLISHED", T).unwrap();
    assert_eq!(established.peer_uri.as_deref(), Some(b.uri().as_str()));
    b.expect_event("CALL_ESTABLISHED", T).unwrap();

    if dtmf {
        std::thread::sleep(Duration::from_millis(300));
        a.send_dtmf("1#").unwrap();
        assert_eq!(b.expect_dtmf(2, T).unwrap(), "1#");
    }
    std::thread::sleep(Duration::from_millis(2200));
    a.hangup().unwrap();
    a.expect_event("CALL_CLOSED", T).unwrap();
    let closed = b.expect_event("CALL_CLOSED", T).unwrap();
    assert!(closed.param.is_some(), "{closed:?}");

    let heard_a = a.heard(SKIP).unwrap();
    let heard_b = b.heard(SKIP).unwrap();
    assert_heard(&a, &heard_a, 660.0);
    assert_heard(&b, &heard_b, 440.0);
    let rate = b.last_recording().unwrap().sample_rate;
    (heard_a, heard_b, rate)
}

#[test]
fn two_baresips_call_each_other_and_hear_each_others_tone_over_opus() {
    let (_, _, rate) = call(Codecs::OpusAndPcmu, Codecs::OpusAndPcmu, true);
    assert_eq!(rate, 48000, "Opus is preferred when both offer it");
}

#[test]
fn pcmu_only_call_carries_both_tones() {
    let (_, _, rate) = call(Codecs::PcmuOnly, Codecs::OpusAndPcmu, false);
    assert_eq!(rate, 8000, "a PCMU-only offer is answered with PCMU");
}

#[test]
fn opus_only_offer_to_pcmu_only_phone_is_rejected() {
    let mut a = Baresip::start(BaresipOptions::new("a", 440.0).codecs(Codecs::OpusOnly)).unwrap();
    let b = Baresip::start(
        BaresipOptions::new("b", 660.0)
            .codecs(Codecs::PcmuOnly)
            .auto_answer(true),
    )
    .unwrap();
    a.dial(&b.uri()).unwrap();
    let closed = a.expect_event("CALL_CLOSED", T).unwrap();
    assert!(
        closed.param.as_deref().is_some_and(|p| p.contains("488")),
        "expected 488 Not Acceptable Here, got {closed:?}\n{}",
        a.context()
    );
}

#[test]
fn auto_answer_phone_picks_up_by_itself() {
    let mut a = Baresip::start(BaresipOptions::new("a", 440.0)).unwrap();
    let mut b = Baresip::start(BaresipOptions::new("b", 660.0).auto_answer(true)).unwrap();
    a.dial(&b.uri()).unwrap();
    a.expect_event("CALL_ESTABLISHED", T).unwrap();
    b.expect_event("CALL_ESTABLISHED", T).unwrap();
    b.hangup().unwrap();
    a.expect_event("CALL_CLOSED", T).unwrap();
}

#[test]
fn audio_tone_written_to_wav_reads_back_at_its_frequency() {
    let dir = tempfile::tempdir().unwrap();
    for (rate, hz) in [(8000, 440.0), (48000, 660.0), (48000, 1234.0)] {
        let path = dir.path().join(format!("tone-{rate}-{hz}.wav"));
        audio::write_tone(&path, hz, rate, Duration::from_secs(2), 8000).unwrap();
        let wav = audio::Wav::read(&path).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (rate, 1));
        assert_eq!(wav.duration(), Duration::from_secs(2));
        let heard = audio::analyse_file(&path, SKIP).unwrap();
        assert!(heard.is_tone(hz, 1.0), "{rate}/{hz}: {heard:?}");
        assert!((heard.rms - 8000.0 / 2f64.sqrt()).abs() < 20.0, "{heard:?}");
        assert_eq!(heard.analysed, Duration::from_millis(1500));
    }
}

#[test]
fn sipp_invite_replaying_rfc4733_pcaps_reaches_baresip_as_dtmf() {
    let mut b = Baresip::start(BaresipOptions::new("b", 660.0).auto_answer(true)).unwrap();
    let dir = temp_dir("sipp-dtmf").unwrap();
    let screen = dir.path().join("screen.log");
    let errors = dir.path().join("errors.log");
    let mut cmd = Command::new("sipp");
    cmd.arg(b.sip_addr().to_string())
        .arg("-sf")
        .arg(crate_path("peers/baresip/uac_invite_dtmf.xml"))
        .args(["-s", "b", "-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &free_port().to_string()])
        .args([
            "-m",
            "1",
            "-t",
            "u1",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&errors)
        .current_dir(dir.path());
    let mut sipp = Process::spawn_logged("sipp", cmd, &screen).unwrap();

    let established = b.expect_event("CALL_ESTABLISHED", T).unwrap();
    assert!(
        established
            .peer_uri
            .as_deref()
            .is_some_and(|u| u.starts_with("sip:sipp@127.0.0.1")),
        "{established:?}"
    );
    assert_eq!(b.expect_dtmf(2, T).unwrap(), "1#", "{}", tail(&screen, 20));
    b.expect_event("CALL_CLOSED", T).unwrap();
    let status = sipp.wait_timeout(T);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "sipp failed\n{}\n{}",
        tail(&screen, 30),
        tail(&errors, 30)
    );
}
