//! The code progenitor generates from `openapi.json` at build time (see `build.rs`).
//! Reached as [`crate::api`] (and [`Client::api`](crate::Client::api)); the types the crate uses are
//! also re-exported under readable names from [`crate::types`]. No `dead_code` allow: every
//! generated item is public API.
// The spec's descriptions become doc comments as written (bare URLs, stray brackets): not
// ours to lint.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/codegen.rs"));
