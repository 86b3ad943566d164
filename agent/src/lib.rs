//! footfall's store agent: capture → detect → count → store → report.
//!
//! Data flows one way. `wire` parses frames in place; `detect` applies SPEC
//! §1 and turns each MAC into a keyed `DeviceId` (SPEC §2), so nothing after
//! it sees a MAC; `count` applies SPEC §3-§5; `store` keeps the counter's
//! state and the outbox in sled; the commands in `cli` tie them together.

pub mod capture;
pub mod cli;
pub mod config;
pub mod count;
pub mod detect;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod wire;

/// The version every report carries as `agent_version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
