//! Pure, table-driven STOX translations (RFC 7247, RFC 7572).
pub mod address;
pub mod call;
pub mod error;
pub mod im;
pub mod presence;
