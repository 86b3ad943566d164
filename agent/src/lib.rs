//! footfall's store agent: capture → detect → count → store → outbox →
//! transport. Data flows one way, and each stage is a module named after
//! what it owns; nothing after `detect` sees a MAC.
//!
//! Modules, each importing only those above it in this list:
//! - `wire`: parsers of capture files and frame headers (pcap, radiotap,
//!   PPI, Prism, 802.11); no allocation per frame, no panics on input;
//! - `days`: local days in the store's time zone (SPEC §3), for the
//!   counter and for keys that rotate at midnight;
//! - `privacy`: the keyed device id (SPEC §2) and element fingerprint
//!   (§8), the keys of each privacy mode and when they rotate (issue 18),
//!   the key file, opt-out;
//! - `detect`: SPEC §1 on one frame, and the MAC turned into a `DeviceId`;
//! - `people`: SPEC §8, estimates of people from a window's detections:
//!   linking, features, calibration;
//! - `config`: agent.toml, raw then resolved, and `params_hash`;
//! - `capture`: frames from an interface or a file, on their own thread,
//!   into detections; `read_file` is the one capture-file reader;
//! - `count`: SPEC §3-§5, from detections to final window and day reports,
//!   and what each privacy mode's key epochs let it keep (issue 18);
//! - `store`: the counter's state, device histories and the outbox in sled;
//! - `pipeline`: the state opened from a config, and the checkpoint that
//!   numbers reports and commits them with the state;
//! - `transport`: where committed reports go (the emit file, or MQTT with
//!   the gateway's ack);
//! - `metrics`: Prometheus text on a loopback port;
//! - `replay`: capture files counted as one timeline, to a file;
//! - `run`: the live agent, `run(config, shutdown)`, delivering over MQTT;
//! - `evaluate`: SPEC §8's estimates against a truth, and `calibrate`;
//! - `inspect`, `doctor`, `simulate`: the other commands' work.
//!
//! `main.rs` only parses arguments, calls one of these, and prints.

pub mod capture;
pub mod config;
pub mod count;
pub mod days;
pub mod detect;
pub mod doctor;
pub mod evaluate;
pub mod inspect;
pub mod metrics;
pub mod people;
pub mod pipeline;
pub mod privacy;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod store;
pub mod transport;
pub mod wire;

pub use run::run;

/// The version every report carries as `agent_version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
