//! Digest credentials (RFC 3261 §22, RFC 7616) as SIP UAs send them, and the checks on them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::digest(data));
