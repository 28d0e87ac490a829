//! f2b-mailguard as a library: the binary (src/main.rs) is a thin dispatcher, and the
//! fuzz targets (fuzz/) call the parsers of outside input directly.

// Input and I/O errors are returned with context, never unwrapped; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod actions;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod detect;
pub mod doctor;
pub mod error;
pub mod files;
pub mod model;
pub mod ownership;
pub mod passwd;
pub mod policy;
pub mod report;
pub mod spool;
pub mod store;
