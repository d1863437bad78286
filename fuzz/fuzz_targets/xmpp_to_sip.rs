//! RFC 7572 §4: any element (raw XML or a generated <message/>) through im::stanza_to_sip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::xmpp_to_sip(data));
