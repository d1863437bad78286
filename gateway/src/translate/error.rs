//! RFC 7247 §7: error mapping tables.
