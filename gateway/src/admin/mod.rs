//! The admin HTTP API (axum).
