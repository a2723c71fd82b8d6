//! The code progenitor generates from `openapi.json` at build time (see `build.rs`).
//! Private: the crate re-exports what users need under readable names from [`crate::types`].
#![allow(missing_docs, unreachable_pub, dead_code, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/codegen.rs"));
