//! The main job, from plaintext env to a checked request for `PATCH /api/v1/cvms/{cvm_id}/envs`.
//!
//! ```text
//! cargo run --example encrypt_envs --features simulator  # embedded default: no account, no network
//! PHALA_CLOUD_API_KEY=… cargo run --example encrypt_envs --features simulator -- CVM_ID PUBKEY_HEX [ENV_FILE]
//! ```
//!
//! On the embedded default it verifies the published KMS signature over the published
//! env-encryption key, encrypts an example env to that key, checks the request as the client
//! does before sending, and shows the body; then it plays a CVM of its own to show the blob
//! decrypts to the same env. With a CVM id and its public key it sends the update to Phala
//! Cloud and prints the typed outcome.

use phala_cloud::simulator::{RecipientSecretKey, decrypt};
use phala_cloud::{AppId, Client};
use phala_cloud::{EnvVars, K256PublicKey, SignedEnvPubkey, encrypt};

/// The example env, as a dotenv file holds it.
const EXAMPLE_ENV: &str = include_str!("example.env");

/// The published KMS env-encryption key, its signature and signer (legacy form, no timestamp),
/// from `tests/fixtures/crypto/vectors.json`.
const KMS_PUBLIC_KEY: &str = "e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a";
const KMS_SIGNATURE: &str = "8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00";
const KMS_APP_ID: &str = "0000000000000000000000000000000000000000";
const KMS_SIGNER: &str = "0x0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = match args.get(2) {
        Some(path) => EnvVars::from_dotenv_file(path)?,
        None => EnvVars::from_dotenv_str(EXAMPLE_ENV)?,
    };
    println!(
        "1. env: {} variables ({} bytes), checked against the CVM's limits: {env:?}",
        env.len(),
        env.total_bytes()
    );

    if let [cvm_id, pubkey, ..] = args.as_slice() {
        return send(cvm_id, pubkey, &env).await;
    }

    let app_id: AppId = KMS_APP_ID.parse()?;
    let signed = SignedEnvPubkey::from_hex(KMS_PUBLIC_KEY, KMS_SIGNATURE, None)?;
    let recipient = signed.verify(&app_id, &KMS_SIGNER.parse::<K256PublicKey>()?)?;
    println!("2. recipient key {recipient}: KMS signature verified, signer {KMS_SIGNER}");

    let encrypted = encrypt(&env, recipient)?;
    let body = encrypted.into_body();
    println!("3. encrypted: {} bytes of blob; env_keys = {:?}", body.encrypted_env.len() / 2, body.env_keys.as_deref());
    println!("   body:");
    println!("   {}", serde_json::to_string(&body)?);

    let cvm = RecipientSecretKey::generate()?;
    let blob = encrypt(&env, cvm.public_key())?;
    let seen = decrypt(blob.as_hex(), &cvm)?;
    assert_eq!(seen, env);
    println!("4. a CVM of our own (key {}) decrypts its blob to the same {} variables", cvm.public_key(), seen.len());
    println!(
        "\nTo send it: PHALA_CLOUD_API_KEY=… cargo run --example encrypt_envs --features simulator -- CVM_ID PUBKEY_HEX [ENV_FILE]"
    );
    Ok(())
}

/// Sends the update to Phala Cloud and prints the typed outcome.
async fn send(cvm_id: &str, pubkey: &str, env: &EnvVars) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    let body = encrypt(env, pubkey)?.into_body();
    match client.update_cvm_envs(cvm_id, &body).await {
        Ok(accepted) => println!(
            "2. accepted: correlation id {:?}, allowed envs changed: {:?}",
            accepted.correlation_id, accepted.allowed_envs_changed
        ),
        Err(e) if e.is_registration_required() => {
            println!("2. phase 1 answered 465: {e}");
            if let Some(data) = e.phase1() {
                println!(
                    "   compose hash {}, app contract {}, chain {:?}",
                    data.compose_hash,
                    data.app_id,
                    data.chain_id()
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
