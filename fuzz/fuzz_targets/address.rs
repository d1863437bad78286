//! RFC 7247 §6 address translation, all four directions, from a SIP URI and from a JID.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::address(data));
