//! RFC 7247 §6: address translation.
