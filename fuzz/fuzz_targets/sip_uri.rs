//! Arbitrary text as a SIP URI (RFC 3261 §19.1): no panic, Display then parse is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::sip_uri(data));
