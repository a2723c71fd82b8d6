//! A local anvil chain for the on-chain tests, and the test contract `contracts/AppAuth.json`.
//!
//! Which anvil: `$ANVIL` (a path), else `anvil` on the `PATH`, else the npm package
//! `@foundry-rs/anvil@ANVIL_NPM_VERSION`, installed once into the cargo target directory and
//! shared by every test binary and thread after that, and by `phala-cloud demo` (the library's
//! `phala_cloud::simulator::anvil` finds and installs it). Nothing is skipped: when no anvil
//! can be found or installed, the test panics and says how to install one.
//!
//! Each [`LocalChain`] is its own anvil process on a free loopback port; dropping it stops that
//! process (SIGTERM, then SIGKILL after 10 s) by its PID.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, ChainId};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;

use phala_cloud::simulator::anvil;

/// anvil's default chain id, the one the official client knows as "anvil".
pub const ANVIL_CHAIN_ID: ChainId = 31_337;

/// The test stand-in for dstack's app-auth contract: `contracts/AppAuth.sol`, compiled.
pub use phala_cloud::simulator::AppAuth;

/// How to start anvil.
#[derive(Debug, Clone, Copy)]
pub struct AnvilOptions {
    /// Seconds between blocks; `None` mines a block per transaction at once (anvil's default).
    pub block_time: Option<u64>,
    /// The chain id.
    pub chain_id: ChainId,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        Self { block_time: None, chain_id: ANVIL_CHAIN_ID }
    }
}

impl AnvilOptions {
    /// A block every 2 s, as on Base, with anvil's chain id.
    pub fn base_like() -> Self {
        Self { block_time: Some(2), ..Self::default() }
    }
}

/// A running anvil. Dropping it stops the process.
#[derive(Debug)]
pub struct LocalChain {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub chain_id: ChainId,
    /// The funded dev accounts, in anvil's order (10 000 ETH each).
    pub signers: Vec<PrivateKeySigner>,
    instance: AnvilInstance,
}

impl LocalChain {
    /// Starts anvil with anvil's defaults: instant mining, chain id 31337.
    pub fn start() -> Self {
        Self::start_with(AnvilOptions::default())
    }

    pub fn start_with(options: AnvilOptions) -> Self {
        let path = anvil_binary();
        let mut anvil = Anvil::at(path).host("127.0.0.1").chain_id(options.chain_id).timeout(60_000);
        if let Some(seconds) = options.block_time {
            anvil = anvil.block_time(seconds);
        }
        let instance = anvil.try_spawn().unwrap_or_else(|e| panic!("could not start anvil ({}): {e}", path.display()));
        let chain_id = instance.chain_id();
        let signers = instance
            .keys()
            .iter()
            .map(|key| PrivateKeySigner::from(key.clone()).with_chain_id(Some(chain_id)))
            .collect::<Vec<_>>();
        assert!(!signers.is_empty(), "anvil printed no dev accounts");
        Self { endpoint: format!("http://127.0.0.1:{}", instance.port()), chain_id, signers, instance }
    }

    /// The dev account `n` (0 is anvil's first).
    pub fn signer(&self, n: usize) -> PrivateKeySigner {
        self.signers[n].clone()
    }

    /// The anvil process id.
    pub fn pid(&self) -> u32 {
        self.instance.child().id()
    }

    /// A provider signing as dev account `n`.
    pub fn provider(&self, n: usize) -> impl Provider + Clone + use<> {
        wallet_provider(&self.endpoint, self.signer(n))
    }

    /// `addComposeHash(hash)` on `contract`, signed by `signer`, with a fixed gas limit (no
    /// estimate, so a reverting call is still mined); the receipt once mined.
    pub async fn add_compose_hash(
        &self,
        contract: Address,
        hash: alloy::primitives::B256,
        signer: PrivateKeySigner,
    ) -> alloy::rpc::types::TransactionReceipt {
        AppAuth::new(contract, wallet_provider(&self.endpoint, signer))
            .addComposeHash(hash)
            .gas(100_000)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sending addComposeHash failed: {e}"))
            .get_receipt()
            .await
            .unwrap_or_else(|e| panic!("no receipt for addComposeHash: {e}"))
    }

    /// Deploys `AppAuth` from dev account `n`, which becomes its owner.
    pub async fn deploy_app_auth(&self, n: usize) -> Address {
        deploy_app_auth(&self.endpoint, self.signer(n)).await
    }

    /// How many `ComposeHashAdded` events app contract `app` emitted on this node.
    pub async fn compose_hashes_added(&self, app: Address) -> usize {
        let filter = alloy::rpc::types::Filter::new()
            .address(app)
            .event_signature(phala_cloud::onchain::COMPOSE_HASH_ADDED_TOPIC)
            .from_block(0);
        self.provider(0).get_logs(&filter).await.unwrap().len()
    }

    /// A simulator's chain settings for this node, its contracts deployed by dev account 0.
    pub fn sim_chain(&self) -> phala_cloud::simulator::ChainConfig {
        phala_cloud::simulator::ChainConfig::new(self.endpoint.parse().unwrap()).deployer(self.signer(0))
    }

    /// A simulator verifying against this node ([`Self::sim_chain`]) with one contract-owned
    /// CVM, `cvm-1`, owned by dev account 0.
    pub fn sim_with_one_onchain_cvm(&self) -> phala_cloud::simulator::SimulatorConfig {
        phala_cloud::simulator::SimulatorConfig::default()
            .cvms([phala_cloud::simulator::CvmSpec::onchain("cvm-1")])
            .chain(self.sim_chain())
    }
}

/// A provider that signs with `signer` and fills nonce, gas and chain id, over the crate's own
/// HTTP client (`phala_cloud::http_client_builder`): reqwest has no process-wide TLS provider
/// here, so alloy's `connect_http` would panic building its client.
pub fn wallet_provider(endpoint: &str, signer: PrivateKeySigner) -> impl Provider + Clone + use<> {
    let url = endpoint.parse().unwrap_or_else(|e| panic!("bad endpoint {endpoint}: {e}"));
    let http = phala_cloud::http_client_builder().expect("HTTP client settings").build().expect("HTTP client");
    ProviderBuilder::new().wallet(signer).connect_reqwest(http, url)
}

/// Deploys `AppAuth` with `signer`, which becomes its owner, and returns the contract's address
/// once the deployment is mined.
pub async fn deploy_app_auth(endpoint: &str, signer: PrivateKeySigner) -> Address {
    let url = endpoint.parse().unwrap_or_else(|e| panic!("bad endpoint {endpoint}: {e}"));
    phala_cloud::simulator::deploy_app_auth(&url, signer)
        .await
        .unwrap_or_else(|e| panic!("deploying AppAuth failed: {e}"))
}

/// The anvil binary to run, found (or installed into the cargo target directory) once per test
/// binary, by the library's finder (`phala_cloud::simulator::anvil`, which `phala-cloud demo`
/// uses too). Nothing is skipped: without one the test panics and says how to get one.
pub fn anvil_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(find_anvil)
}

fn no_anvil(e: anvil::AnvilError) -> ! {
    panic!("no anvil: {e}; {}", anvil::how_to_install())
}

fn find_anvil() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR has a parent");
    if let Some(found) = anvil::find(target).unwrap_or_else(|e| no_anvil(e)) {
        return found.path;
    }
    eprintln!(
        "anvil: none given (ANVIL) or on the PATH; installing {} with npm into {}",
        anvil::npm_spec(),
        anvil::install_dir(target).display()
    );
    let found = anvil::install(target).unwrap_or_else(|e| no_anvil(e));
    if let anvil::AnvilSource::JustInstalled(took) = found.source {
        eprintln!("anvil: installed {} in {took:.1?}", anvil::npm_spec());
    }
    found.path
}
