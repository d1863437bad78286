//! PIDF bodies (RFC 3863 / RFC 4480) and their RFC 8048 translation to XMPP presence.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::pidf_checks::pidf(data));
