//! Jingle and XEP-0353 elements (raw XML, or generated with fuzz attribute values) through the lenient parsers: no panic, to_element reparses equal; a relayable offer gives an SDP offer that reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::jingle(data));
