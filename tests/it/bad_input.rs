//! Bad input at every entry point gives a clear error before any network call: a recording
//! server in front proves that nothing was sent, and no error echoes a secret.
#![cfg(feature = "onchain")]

use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};

use phala_cloud::onchain::OnchainRegistrar;
use phala_cloud::{AppId, Client, ComposeHash, Phase1Data, TransactionHash, UpdateCvmEnvsBody};
use phala_cloud::{ComposeHashRegistrar, EnvUpdateRequest, Progress};
use phala_cloud::{EnvError, EnvVars, RecipientPublicKey, SignedEnvPubkey, encrypt};
use support::{Reply, ScriptedServer};

const SECRET: &str = "SECRET-VALUE-3b7e";

fn good_body() -> UpdateCvmEnvsBody {
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    encrypt(&EnvVars::from_pairs([("A", SECRET)]).unwrap(), key).unwrap().into_body()
}

/// A registrar that must never be reached.
struct Unreachable(AtomicU32);

impl ComposeHashRegistrar for Unreachable {
    type Error = std::convert::Infallible;
    async fn register(&self, _: &Phase1Data, _: &Progress<'_>) -> Result<TransactionHash, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        unreachable!("no registration for bad input")
    }
}

#[tokio::test]
async fn requests_are_refused_before_sending() {
    let server = ScriptedServer::start(vec![Reply::json(202, "{}")]).await;
    let client = Client::builder().base_url(server.base_url.clone()).api_key("k").build().unwrap();
    let cases: Vec<(&str, &str, UpdateCvmEnvsBody)> = vec![
        ("cvm_id", "", good_body()),
        ("cvm_id", "..", good_body()),
        ("cvm_id", "a b", good_body()),
        ("cvm_id", "a\nb", good_body()),
        ("cvm_id", "../x", good_body()),
        ("cvm_id", "a/b", good_body()),
        ("encrypted_env", "cvm", UpdateCvmEnvsBody { encrypted_env: format!("{SECRET}00"), ..good_body() }),
        ("encrypted_env", "cvm", UpdateCvmEnvsBody { encrypted_env: "0xabcd".into(), ..good_body() }),
        ("encrypted_env", "cvm", UpdateCvmEnvsBody { encrypted_env: "abc".into(), ..good_body() }),
        ("encrypted_env", "cvm", UpdateCvmEnvsBody { encrypted_env: "ab".repeat(59), ..good_body() }),
        ("env_keys[0]", "cvm", UpdateCvmEnvsBody { env_keys: Some(vec!["1A".into()]), ..good_body() }),
        ("env_keys[1]", "cvm", UpdateCvmEnvsBody { env_keys: Some(vec!["A".into(), "A".into()]), ..good_body() }),
        ("env_keys[0]", "cvm", UpdateCvmEnvsBody { env_keys: Some(vec!["A-B".into()]), ..good_body() }),
        ("transaction_hash", "cvm", UpdateCvmEnvsBody { compose_hash: Some("ab".repeat(32)), ..good_body() }),
        ("compose_hash", "cvm", UpdateCvmEnvsBody { transaction_hash: Some("ab".repeat(32)), ..good_body() }),
        (
            "compose_hash",
            "cvm",
            UpdateCvmEnvsBody {
                compose_hash: Some("ab".repeat(31)),
                transaction_hash: Some("ab".repeat(32)),
                ..good_body()
            },
        ),
        (
            "transaction_hash",
            "cvm",
            UpdateCvmEnvsBody {
                compose_hash: Some("ab".repeat(32)),
                transaction_hash: Some("zz".repeat(32)),
                ..good_body()
            },
        ),
    ];
    for (field, cvm_id, body) in cases {
        let e = client.update_cvm_envs(cvm_id, &body).await.unwrap_err();
        assert!(e.is_invalid_input(), "{field}: {e}");
        let text = e.to_string();
        assert!(text.contains(field), "names the field {field}: {text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    // The one-call flow: nothing to send, a bad id, env_keys that miss an encrypted name.
    let unreachable = Unreachable(AtomicU32::new(0));
    let key = phala_cloud::simulator::RecipientSecretKey::generate().unwrap().public_key();
    let env = EnvVars::from_pairs([("A", SECRET), ("B", "2")]).unwrap();
    let flows = [
        client.env_update("cvm").run(&unreachable).await.unwrap_err(),
        client.env_update("../x").env(env.clone(), key).run(&unreachable).await.unwrap_err(),
        client.env_update("cvm").env(env.clone(), key).env_keys(["A"]).run(&unreachable).await.unwrap_err(),
        client.env_update("cvm").body(good_body()).env_keys(["A", "bad name"]).run(&unreachable).await.unwrap_err(),
    ];
    for e in &flows {
        assert!(e.is_input(), "{e:?}");
        assert!(!format!("{e:?}").contains(SECRET));
    }
    assert!(EnvUpdateRequest::new("cvm", encrypt(&env, key).unwrap(), Some(vec!["B".into()])).is_err());
    assert_eq!(unreachable.0.load(Ordering::SeqCst), 0);
    assert!(server.recorded().is_empty(), "nothing was sent: {:?}", server.recorded());
}

#[test]
fn constructors_refuse_bad_values_with_clear_errors() {
    // Env names and limits.
    assert!(matches!(EnvVars::from_pairs([("1A", SECRET)]), Err(EnvError::Input(_))));
    assert!(matches!(EnvVars::from_pairs([("A", SECRET), ("A", "x")]), Err(EnvError::DuplicateKey { .. })));
    let big = "x".repeat(phala_cloud::MAX_ENV_VALUE_BYTES + 1);
    assert!(matches!(EnvVars::from_pairs([("A", big.as_str())]), Err(EnvError::ValueTooLarge { .. })));
    let many: Vec<(String, String)> =
        (0..=phala_cloud::MAX_ENV_ENTRIES).map(|i| (format!("K{i}"), String::new())).collect();
    assert!(matches!(EnvVars::from_pairs(many), Err(EnvError::TooManyEntries { .. })));
    let e = EnvVars::from_assignments([format!("no-equals-{SECRET}")]).unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    let e = EnvVars::from_dotenv_str(&format!("A=\"{SECRET}")).unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");

    // Hex values: keys, hashes, addresses.
    for bad in ["", "0x", "zz", &"ab".repeat(31), &"ab".repeat(33)] {
        assert!(bad.parse::<RecipientPublicKey>().is_err(), "{bad:?}");
        assert!(bad.parse::<ComposeHash>().is_err(), "{bad:?}");
        assert!(bad.parse::<TransactionHash>().is_err(), "{bad:?}");
        assert!(bad.parse::<AppId>().is_err(), "{bad:?}");
    }
    // An all-zero recipient key gives an all-zero shared secret: refused.
    let zero = RecipientPublicKey::from([0u8; 32]);
    assert!(encrypt(&EnvVars::from_pairs([("A", "1")]).unwrap(), zero).is_err());
    assert!(SignedEnvPubkey::from_hex(&"ab".repeat(32), "abcd", None).is_err());

    // Client configuration.
    for url in ["ftp://x", "/relative", "http://", "https://h/?q=1", "https://user:pw@h"] {
        let e = Client::builder().base_url(url).api_key("k").build().unwrap_err();
        assert!(e.to_string().contains("base URL"), "{url}: {e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
    let e = Client::builder().api_key(format!("{SECRET}\nX")).build().unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    assert!(Client::builder().api_key("k").api_version("bad\nversion").build().is_err());

    // Private keys: wrong length, not hex, zero, above the curve order. Never echoed.
    let url: url::Url = "http://127.0.0.1:9".parse().unwrap();
    let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    for key in [SECRET, "0x1234", &"00".repeat(32), order, &format!("{}zz", &"ab".repeat(31))] {
        let e = OnchainRegistrar::from_private_key(key, url.clone()).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        assert!(!e.to_string().contains(key) || key.len() < 8, "the key is not echoed: {e}");
    }
}
