//! RFC 7572 §5: a SIP MESSAGE (any content type, body and headers) through im::sip_to_stanza.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stox_fuzz::checks::sip_to_xmpp(data));
