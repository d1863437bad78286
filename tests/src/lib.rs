//! stox-tests: end-to-end harness.
