//! The main job end to end as a library example: the same code as `phala-cloud demo`
//! (`src/bin/phala-cloud/demo.rs`, which uses only this crate's public API), run from here.
//!
//! ```text
//! cargo run --features cli -- demo                       # the README's command
//! cargo run --example quickstart --features simulator    # the same, as an example
//! ```
//!
//! The README runs the `demo` command: it builds faster on a fresh clone, as an example is
//! built with the dev-dependencies and a binary is not.

#[path = "../src/bin/phala-cloud/demo.rs"]
mod demo;

#[tokio::main]
async fn main() -> Result<(), demo::Error> {
    demo::run().await
}
