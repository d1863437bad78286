//! SDP bodies (raw, or real peers' SDP with lines inserted, cut, removed) through the SDP ⇄ Jingle converter and negotiate: no panic, what stox writes back reads back with the same contents and payload type ids.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::sdp(data));
