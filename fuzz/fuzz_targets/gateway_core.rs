//! The sans-IO core over a byte-driven input sequence: one final reply per SIP request, nothing stuck in the outbox.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::gateway_core(data));
