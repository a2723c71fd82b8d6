//! The helpers the integration tests share: a scripted HTTP/1.1 server ([`server`]), anvil
//! ([`anvil`]), a fake JSON-RPC server ([`fake_rpc`]), running the flow while recording its
//! events, KMS signing, and running a test alone in a process of its own ([`alone`]).
#![allow(dead_code)]

pub mod alone;
#[cfg(feature = "simulator")]
pub mod anvil;
#[cfg(feature = "onchain")]
pub mod fake_rpc;
pub mod server;

// The lean build (no chain, no simulator) leaves some of them unused.
#[allow(unused_imports)]
pub use server::{MAX_LIFETIME, Recorded, Reply, ScriptedServer, body, cat, read_request, refused_url, response};

/// Runs `update` with `registrar`, recording every event it emits; gives its outcome and the
/// events, in order. (It sets the update's event callback.)
pub async fn run_recording<R: phala_cloud::ComposeHashRegistrar>(
    update: phala_cloud::EnvUpdate<'_>,
    registrar: R,
) -> (Result<phala_cloud::UpdateOutcome, phala_cloud::FlowError<R::Error>>, Vec<phala_cloud::FlowEvent>) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let outcome = update.on_event(move |e| sink.lock().unwrap().push(e.clone())).run(registrar).await;
    let events = std::mem::take(&mut *events.lock().unwrap());
    (outcome, events)
}

/// Registers with `inner`, then runs `after` (to disturb the flow: expire the hash, say).
pub struct Then<'a, R, F> {
    pub inner: &'a R,
    pub after: F,
}

impl<R, F> phala_cloud::ComposeHashRegistrar for Then<'_, R, F>
where
    R: phala_cloud::ComposeHashRegistrar,
    F: Fn(phala_cloud::TransactionHash) -> Result<phala_cloud::TransactionHash, std::io::Error> + Send + Sync,
{
    type Error = std::io::Error;
    async fn register(
        &self,
        data: &phala_cloud::Phase1Data,
        progress: &phala_cloud::Progress<'_>,
    ) -> Result<phala_cloud::TransactionHash, std::io::Error> {
        let tx = self.inner.register(data, progress).await.map_err(std::io::Error::other)?;
        (self.after)(tx)
    }
}

/// A fresh X25519 public key to encrypt to (its secret is dropped: nothing decrypts with it).
pub fn random_recipient() -> phala_cloud::RecipientPublicKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("CSPRNG");
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    phala_cloud::RecipientPublicKey::from(*public.as_bytes())
}

/// An env-encryption public key of a fresh CVM, signed by `kms` for `app_id` (timestamped form
/// with `timestamp`, legacy form without), as a KMS's `GET /kms/{slug}/pubkey/{app_id}` answers.
pub fn sign_env_pubkey(
    kms: &k256::ecdsa::SigningKey,
    app_id: &phala_cloud::AppId,
    timestamp: Option<u64>,
) -> phala_cloud::SignedEnvPubkey {
    let public_key = random_recipient();
    let mut signed = phala_cloud::SignedEnvPubkey { public_key, signature: [0; 65], timestamp };
    let (signature, recovery_id) = kms.sign_prehash_recoverable(&signed.digest(app_id));
    signed.signature[..64].copy_from_slice(&signature.to_bytes());
    signed.signature[64] = recovery_id.to_byte();
    signed
}

/// `key`'s public key, compressed.
pub fn k256_public(key: &k256::ecdsa::SigningKey) -> phala_cloud::K256PublicKey {
    phala_cloud::K256PublicKey::from_sec1_bytes(key.verifying_key().to_sec1_point(true).as_bytes())
        .expect("a signing key's point is on the curve")
}
