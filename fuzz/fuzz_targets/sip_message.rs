//! Arbitrary bytes from a SIP socket: rsipstack's parser, then the core (a request) or badsip's 400 (RFC 3261 §21.4.1).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::sip_message(data));
