//! The sans-IO core's call bridge over a byte-driven sequence of INVITEs, JMI messages, Jingle iqs, dialog and relay events: one final response per INVITE, one reply per Jingle iq set, no leaked media.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::calls(data));
