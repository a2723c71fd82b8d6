//! `Client::from_env`: each case runs in a child process of this test binary with the
//! environment it needs, so no test here changes the environment of the process the other
//! tests share.

use crate::support::alone;
use phala_cloud::Client;

/// Set in the child's environment: which case [`child`] checks.
const CASE: &str = "PHALA_CLOUD_TEST_FROM_ENV_CASE";

/// Runs [`child`] in a child process with `vars` (and no other PHALA_CLOUD_ variables).
fn run_child(case: &str, vars: &[(&str, &str)]) {
    alone::run_child(module_path!(), |command| {
        command.env_remove(phala_cloud::API_KEY_ENV).env_remove(phala_cloud::API_PREFIX_ENV).env(CASE, case);
        command.envs(vars.iter().copied());
    });
}

#[test]
fn from_env_reads_the_official_variables() {
    run_child("no-key", &[]);
    run_child(
        "key-and-prefix",
        &[(phala_cloud::API_KEY_ENV, "k"), (phala_cloud::API_PREFIX_ENV, "https://example.test/api/v1")],
    );
    run_child("key-only", &[(phala_cloud::API_KEY_ENV, "k")]);
}

#[test]
#[ignore = "run by from_env_reads_the_official_variables, in a child process with its environment"]
fn child() {
    alone::assert_child(module_path!());
    match std::env::var(CASE).expect("run by from_env_reads_the_official_variables").as_str() {
        "no-key" => assert!(matches!(Client::from_env().unwrap_err(), phala_cloud::ConfigError::MissingApiKey)),
        "key-and-prefix" => assert_eq!(Client::from_env().unwrap().base_url(), "https://example.test"),
        "key-only" => assert_eq!(Client::from_env().unwrap().base_url(), phala_cloud::DEFAULT_BASE_URL),
        other => panic!("unknown case {other}"),
    }
}
