//! One test of this binary alone in a process of its own, for a test that sets what is
//! process-wide: the environment, the `log` logger, or `tracing`'s callsite interest (a
//! callsite first reached on another test's thread while a subscriber is being installed can
//! stay "never" and hide an event from a capture: a hygiene test would then pass without having
//! looked).
//!
//! A module holds the test twice: a plain `#[test]` that calls [`run_child`] with the module's
//! `module_path!()`, and an `#[ignore]`d `child` test holding the body, which begins with
//! [`assert_child`] so that it does not run beside other tests (`cargo test -- --ignored`).

use std::process::Command;

/// Set in the child's environment: the path of the test it runs.
const CHILD: &str = "PHALA_CLOUD_TEST_CHILD";

/// The test path of `module`'s `child` (a `module_path!()` less the crate's name).
fn child_path(module: &str) -> String {
    let (_crate, path) = module.split_once("::").expect("a module of the test crate");
    format!("{path}::child")
}

/// Runs `module`'s `child` test alone in a child process of this test binary, with the
/// environment `configure` sets, and checks that it ran and passed.
pub fn run_child(module: &str, configure: impl FnOnce(&mut Command)) {
    let path = child_path(module);
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args([path.as_str(), "--exact", "--ignored", "--test-threads=1", "--nocapture"]).env(CHILD, &path);
    configure(&mut command);
    let out = command.output().expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{path}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "{path} did not run: {stdout}");
}

/// The first line of a `child` test: it runs only as [`run_child`] starts it.
pub fn assert_child(module: &str) {
    let path = child_path(module);
    assert_eq!(
        std::env::var(CHILD).ok().as_deref(),
        Some(path.as_str()),
        "{path} runs alone in a process of its own, started by its parent test; not with --ignored"
    );
}
