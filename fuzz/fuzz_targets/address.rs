//! RFC 7247 §6 address translation, all four directions, from a SIP URI and from a JID.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stox_fuzz::checks::skip_open_bugs(std::env::var_os("STOX_FUZZ_SKIP_OPEN").is_some()),
    |data: &[u8]| stox_fuzz::checks::address(data)
);
