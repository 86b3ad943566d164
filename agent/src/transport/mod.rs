//! Where final reports go once committed to the outbox: `file`, the JSON
//! lines of `replay --emit`, and `mqtt`, the live agent's connection
//! (publish, the gateway's ack, resend), driven by `run`'s loop.
//!
//! Invariant of every transport: a report leaves the outbox only after it
//! is delivered (file: written and synced; MQTT: the gateway's ack).

pub mod file;
pub mod mqtt;
