//! Which operations answer 465, read from the spec at build time
//! ([`TWO_PHASE_OPERATIONS`](crate::TWO_PHASE_OPERATIONS)), how each carries phase 2, and
//! which of them the one-call flow drives ([`DRIVEN_OPERATIONS`]).

/// How an operation's request carries phase 2 (the registered compose hash and the
/// transaction that registered it), as its parameters and request body in the spec say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase2Carrier {
    /// The JSON body's `compose_hash` and `transaction_hash` (`PATCH …/envs`).
    BodyFields,
    /// The `X-Compose-Hash` and `X-Transaction-Hash` headers (the unified
    /// `PATCH /api/v1/cvms/{cvm_id}`, and the multipart compose and pre-launch-script uploads).
    Headers,
    /// A `transaction_hash` query parameter only: the compose hash is the revision's own
    /// (the two revision redeploys).
    TransactionQuery,
    /// Nothing in the request names a registration: a 465 is an allow-list rejection, and the
    /// same request is sent again once the hash is allowed (`POST …/replicas`).
    NotCarried,
}

/// An operation of the spec whose responses include 465 (see
/// [`TWO_PHASE_OPERATIONS`](crate::TWO_PHASE_OPERATIONS)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoPhaseOperation {
    /// `PATCH`, `POST`, …
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    /// Its shortened operationId (its method name on [`api::Operations`](crate::api::Operations)
    /// when generated).
    pub name: &'static str,
    /// Which of 465, 466, 467, 468 its responses list.
    pub statuses: &'static [u16],
    /// How its request carries phase 2.
    pub carrier: Phase2Carrier,
}

impl TwoPhaseOperation {
    /// The one-call flow that drives this operation, if any (see [`DRIVEN_OPERATIONS`]).
    pub fn driven_by(&self) -> Option<&'static DrivenOperation> {
        DRIVEN_OPERATIONS.iter().find(|d| d.name == self.name)
    }
}

/// An operation the one-call two-phase flow drives, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrivenOperation {
    /// The operation's shortened operationId.
    pub name: &'static str,
    /// How the flow sends phase 2 for it; it must be what the spec says
    /// ([`TwoPhaseOperation::carrier`]).
    pub carrier: Phase2Carrier,
    /// The builder that runs the flow.
    pub entry_point: &'static str,
}

/// The operations the one-call flow drives. An operation of
/// [`TWO_PHASE_OPERATIONS`](crate::TWO_PHASE_OPERATIONS) missing here is not driven: its 465
/// is still typed ([`TwoPhaseKind`](crate::TwoPhaseKind), through
/// [`Client::send_two_phase`](crate::Client::send_two_phase)), and its phase 2 is the caller's.
pub const DRIVEN_OPERATIONS: &[DrivenOperation] = &[
    DrivenOperation { name: "update_cvm_envs", carrier: Phase2Carrier::BodyFields, entry_point: "Client::env_update" },
    DrivenOperation { name: "update_cvm_endpoint", carrier: Phase2Carrier::Headers, entry_point: "Client::cvm_patch" },
    DrivenOperation {
        name: "update_cvm_docker_compose",
        carrier: Phase2Carrier::Headers,
        entry_point: "Client::docker_compose_patch",
    },
    DrivenOperation {
        name: "update_cvm_pre_launch_script",
        carrier: Phase2Carrier::Headers,
        entry_point: "Client::pre_launch_script_patch",
    },
];
