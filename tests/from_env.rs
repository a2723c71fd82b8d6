//! `Client::from_env`, alone in its binary: it changes process environment variables.

use phala_cloud::Client;

#[test]
fn from_env_reads_the_official_variables() {
    // SAFETY: the only test in this binary; no other thread reads the environment.
    unsafe {
        std::env::remove_var(phala_cloud::API_KEY_ENV);
        std::env::remove_var(phala_cloud::API_PREFIX_ENV);
    }
    assert_eq!(Client::from_env().unwrap_err(), phala_cloud::ConfigError::MissingApiKey);
    // SAFETY: as above.
    unsafe {
        std::env::set_var(phala_cloud::API_KEY_ENV, "k");
        std::env::set_var(phala_cloud::API_PREFIX_ENV, "https://example.test/api/v1");
    }
    let client = Client::from_env().unwrap();
    assert_eq!(client.base_url(), "https://example.test");
    // SAFETY: as above.
    unsafe {
        std::env::remove_var(phala_cloud::API_PREFIX_ENV);
    }
    assert_eq!(Client::from_env().unwrap().base_url(), phala_cloud::DEFAULT_BASE_URL);
}
