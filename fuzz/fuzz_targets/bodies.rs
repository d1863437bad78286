//! SIP body parsers: Content-Type, charsets, HTML, CPIM (RFC 3862), isComposing (RFC 3994), IMDN (RFC 5438).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::bodies(data));
