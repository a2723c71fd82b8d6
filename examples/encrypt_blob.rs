//! Encrypts random envs to random recipient keys and prints one JSON object per line, for
//! `scripts/interop_decrypt.py` to decrypt with an implementation this crate did not write.
//!
//! ```text
//! cargo run --example encrypt_blob -- [CASES]    # default 50
//! ```
//!
//! Each line: `{"case", "recipient_secret_key", "recipient_public_key", "encrypted_env",
//! "env_keys", "env": [{"key", "value"}, …]}`. The secrets are random test data made here, printed
//! on purpose; never feed this real secrets.

use phala_cloud::{EnvVars, MAX_ENV_ENTRIES, MAX_ENV_VALUE_BYTES, RecipientPublicKey, encrypt};
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::json;

/// Characters values are drawn from: plain text, everything JSON must escape, multi-byte UTF-8.
const POOL: &[char] = &[
    'a', 'b', 'c', 'x', 'Y', 'Z', '0', '7', '9', ' ', '=', '$', '#', '\'', '/', ':', '-', '_', '.', '"', '\\', '\n',
    '\r', '\t', '\u{0}', '\u{1}', '\u{8}', '\u{c}', '\u{1f}', '\u{7f}', 'é', 'ß', '漢', '🔑', '\u{2028}', '\u{feff}',
];

fn random_value(rng: &mut impl Rng, len: usize) -> String {
    (0..len).map(|_| *POOL.choose(rng).expect("non-empty pool")).collect()
}

fn random_env(rng: &mut impl Rng, case: usize) -> EnvVars {
    let (count, max_len) = match case {
        0 => (0, 0),                // an empty env
        1 => (MAX_ENV_ENTRIES, 16), // the most entries a CVM accepts
        2 => (1, 0),                // one empty value
        _ => (rng.random_range(1..40), 300),
    };
    let mut pairs: Vec<(String, String)> = (0..count)
        .map(|i| {
            let key = format!("{}{i}", ["KEY_", "_k", "Var", "x"][rng.random_range(0..4)]);
            let len = rng.random_range(0..=max_len);
            (key, random_value(rng, len))
        })
        .collect();
    if case == 3 {
        // A value of the largest size a CVM accepts (escapes make its JSON longer).
        let mut big = random_value(rng, MAX_ENV_VALUE_BYTES / 2);
        while big.len() < MAX_ENV_VALUE_BYTES {
            big.push('a');
        }
        pairs.push(("BIG".into(), big));
    }
    EnvVars::from_pairs(pairs).expect("generated env is within the CVM's limits")
}

fn main() {
    let cases: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("usage: encrypt_blob [CASES]"),
        None => 50,
    };
    let mut rng = rand::rng();
    for case in 0..cases {
        let mut secret_bytes = [0u8; 32];
        getrandom::fill(&mut secret_bytes).expect("OS RNG");
        let secret = x25519_dalek::StaticSecret::from(secret_bytes);
        let public = RecipientPublicKey::try_from(&x25519_dalek::PublicKey::from(&secret).as_bytes()[..])
            .expect("an X25519 public key");
        let env = random_env(&mut rng, case);
        // Alternate the accepted key forms: hex, 0x-hex, bytes.
        let encrypted = match case % 3 {
            0 => encrypt(&env, public.to_hex().as_str()),
            1 => encrypt(&env, format!("0x{public}").as_str()),
            _ => encrypt(&env, *public.as_bytes()),
        }
        .expect("encrypt");
        let line = json!({
            "case": case,
            "recipient_secret_key": const_hex::encode(secret_bytes),
            "recipient_public_key": public.to_hex(),
            "encrypted_env": encrypted.as_hex(),
            "env_keys": encrypted.keys(),
            "env": env.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        println!("{line}");
    }
}
