//! stox fuzz targets: the checks live in [`checks`], shared with
//! `gateway/tests/robustness.rs`; each `fuzz_targets/<name>.rs` only hands bytes to one.
pub mod checks;
pub mod pidf_checks;
