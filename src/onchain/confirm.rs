//! Confirming a registration before it is signed: the [`PlannedRegistration`] the on-chain
//! registrar shows its confirmation hook ([`OnchainRegistrar::confirm_before_signing`]).
//!
//! [`OnchainRegistrar::confirm_before_signing`]: super::OnchainRegistrar::confirm_before_signing

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use alloy::primitives::{Address, U256};

use super::contract::RegistrationCall;
use crate::hex::{AppId, ComposeHash};

/// The `addComposeHash` transaction the on-chain registrar is about to sign, once everything
/// about it is known: the chain, the app contract, the hash, the signer, its nonce, the gas and
/// the fees. Shown to the hook of
/// [`OnchainRegistrar::confirm_before_signing`](super::OnchainRegistrar::confirm_before_signing),
/// which decides whether it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedRegistration {
    /// The chain it is sent on (the RPC's, which equals phase 1's `kms_info.chain_id`).
    pub chain_id: u64,
    /// The app contract, which the transaction calls.
    pub app_id: AppId,
    /// The compose hash it registers.
    pub compose_hash: ComposeHash,
    /// The call itself: `to` (the app contract) and `data` (`addComposeHash(compose_hash)`);
    /// the value is zero.
    pub call: RegistrationCall,
    /// The signer, which pays: the app contract's owner.
    pub from: Address,
    /// The signer's nonce the transaction takes.
    pub nonce: u64,
    /// The signer's balance, in wei.
    pub balance: U256,
    /// The node's gas estimate.
    pub gas_estimate: u64,
    /// The gas limit signed (the estimate plus a margin, at most the gas-limit cap).
    pub gas_limit: u64,
    /// The base fee per gas of the next block, in wei.
    pub base_fee_per_gas: u128,
    /// The priority fee per gas signed, in wei.
    pub max_priority_fee_per_gas: u128,
    /// The max fee per gas signed, in wei (at most the registrar's cap).
    pub max_fee_per_gas: u128,
}

impl PlannedRegistration {
    /// The gas price it is expected to pay: the base fee plus the priority fee, at most the
    /// max fee.
    pub fn expected_gas_price(&self) -> u128 {
        self.base_fee_per_gas.saturating_add(self.max_priority_fee_per_gas).min(self.max_fee_per_gas)
    }

    /// The estimated cost in wei: the gas estimate × [`expected_gas_price`](Self::expected_gas_price).
    pub fn estimated_cost_wei(&self) -> U256 {
        U256::from(self.gas_estimate) * U256::from(self.expected_gas_price())
    }

    /// The most it can cost in wei: the gas limit × the max fee per gas.
    pub fn max_cost_wei(&self) -> U256 {
        U256::from(self.gas_limit) * U256::from(self.max_fee_per_gas)
    }
}

/// Why a confirmation hook declined: its own error, kept as the source of
/// [`OnchainError::NotConfirmed`](super::OnchainError::NotConfirmed).
pub type DeclineReason = Box<dyn std::error::Error + Send + Sync>;

type ConfirmFuture = Pin<Box<dyn Future<Output = Result<(), DeclineReason>> + Send>>;

/// The hook, boxed once.
pub(crate) type ConfirmHook = Arc<dyn Fn(PlannedRegistration) -> ConfirmFuture + Send + Sync>;

/// Boxes `confirm`'s future and error.
pub(crate) fn hook<F, Fut, E>(confirm: F) -> ConfirmHook
where
    F: Fn(PlannedRegistration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<DeclineReason>,
{
    Arc::new(move |plan| {
        let answer = confirm(plan);
        Box::pin(async move { answer.await.map_err(Into::into) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_gas_times_price_and_limit_times_max_fee() {
        let app = AppId([0xa1; 20]);
        let hash = ComposeHash([0x11; 32]);
        let plan = PlannedRegistration {
            chain_id: 8453,
            app_id: app,
            compose_hash: hash,
            call: RegistrationCall::new(app, hash),
            from: Address::repeat_byte(0x42),
            nonce: 3,
            balance: U256::from(10u64).pow(U256::from(18u64)),
            gas_estimate: 50_000,
            gas_limit: 60_000,
            base_fee_per_gas: 1_000_000_000,
            max_priority_fee_per_gas: 100_000_000,
            max_fee_per_gas: 2_100_000_000,
        };
        assert_eq!(plan.expected_gas_price(), 1_100_000_000);
        assert_eq!(plan.estimated_cost_wei(), U256::from(55_000_000_000_000u64));
        assert_eq!(plan.max_cost_wei(), U256::from(126_000_000_000_000u64));
        // A max fee below base + priority caps the expected price.
        let capped = PlannedRegistration { max_fee_per_gas: 1_050_000_000, ..plan };
        assert_eq!(capped.expected_gas_price(), 1_050_000_000);
    }
}
