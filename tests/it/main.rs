//! The integration tests, one binary: the heavy dependencies (alloy, axum, httpmock) link once.
//! A module per concern; the ones that need a feature say so at their top.
//!
//! | module | what |
//! |---|---|
//! | `update_envs`, `spec_conformance` | every status with the shared fixtures; spec drift; bodies validated against the spec |
//! | `generated_ops`, `normalizer`, `spec_corpus` | generated operations through the hooks; the converter on the whole spec; the FastAPI corpus |
//! | `odd_replies`, `faults`, `hostile_parse` | non-spec statuses and odd bodies over real HTTP; refused, reset, stalled and cut replies; property tests over reply parsing |
//! | `envcrypt`, `from_env`, `bad_input` | encryption, limits and KMS signatures; `Client::from_env`; input refused before sending |
//! | `key_lookup` | the CVM's env-encryption key looked up and verified (API-reported and on-chain KMS key, faults refused before sending); the simulator's GETs |
//! | `two_phase`, `two_phase_chain`, `flow_faults`, `flow_registrations` | the phases as values; the one-call flow on anvil, under faults and scripted replies |
//! | `cvm_patch` | the CVM compose updates (unified PATCH, compose and pre-launch-script uploads): what each phase sends, input refused, each on anvil with its 466 restart |
//! | `fleet` | the update of many CVMs: one registration per compose hash, per-CVM results, a rerun that sends nothing |
//! | `anvil_contract`, `registrar_chain`, `registrar_rpc_faults` | the contracts and the on-chain registrar on anvil and on a faulty JSON-RPC server |
//! | `simulator_offline`, `simulator_chain`, `simulate_cmd` | the simulator's every answer, offline and against anvil; the standalone server |
//! | `cli`, `cli_registration`, `cli_confirm`, `cli_fleet` | the command line: exit codes, `--json`, env files, concurrent processes; the question before signing, on a pseudo-terminal |
//! | `cli_compose` | `compose update` and `cvms update` on the simulator and anvil |
//! | `logs` | what reaches the logs: a span per operation, no secret, no RPC URL; each test alone in a process |
//!
//! `support` holds the shared helpers: a scripted HTTP server (replies in sequence, exact bytes,
//! or misbehaving at the socket level), anvil, a fake JSON-RPC server, running the flow while
//! recording its events, KMS signing, and running a test alone in a child process (for the tests
//! that set what is process-wide: the environment, a logger, `tracing`'s callsite cache).

mod support;

// `build.rs` includes these two by path as sibling modules; so do the tests.
#[path = "../../build/generate.rs"]
#[allow(dead_code)]
mod generate;
#[path = "../../build/normalize.rs"]
#[allow(dead_code)]
mod normalize;

mod anvil_contract;
mod bad_input;
mod cli;
mod cli_compose;
mod cli_confirm;
mod cli_fleet;
mod cli_registration;
mod cvm_patch;
mod envcrypt;
mod faults;
mod fleet;
mod flow_faults;
mod flow_registrations;
mod from_env;
mod generated_ops;
// It calls the reply classifier directly, which only feature `__internals` exposes.
#[cfg(feature = "__internals")]
mod hostile_parse;
mod js_interop;
mod key_lookup;
mod logs;
mod normalizer;
mod odd_replies;
mod registrar_chain;
mod registrar_rpc_faults;
mod simulate_cmd;
mod simulator_chain;
mod simulator_offline;
mod spec_conformance;
mod spec_corpus;
mod two_phase;
mod two_phase_chain;
mod update_envs;
