//! Where final reports go once committed to the outbox: `file`, the JSON
//! lines of `replay --emit`. The MQTT transport of the live agent (publish,
//! the gateway's ack, resend) is in `run`, beside the loop that drives it.
//!
//! Invariant of every transport: a report leaves the outbox only after it
//! is delivered (file: written and synced; MQTT: the gateway's ack).

pub mod file;
