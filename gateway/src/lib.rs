//! footfall's HQ gateway: accept → store → query → render, served over MQTT
//! and HTTP. The gateway never sees a MAC: reports carry only counts and
//! keyed-id sketches.
//!
//! Modules, each importing only those above it in this list:
//! - `config`: gateway.toml, raw then resolved;
//! - `store`: the `ReportStore` trait and its engines (sled);
//! - `calendar`: time zones, local days, ISO weeks, campaign bounds;
//! - `retention`: what is past `[retention]`, and what `purge` deletes;
//! - `migrate`: a sled store copied into PostgreSQL, and verified;
//! - `validate`: the checks a payload must pass (SPEC §4-§6);
//! - `accept`: the one place a payload is accepted (validate → store →
//!   dead-letter → tally), for MQTT, HTTP and `ingest`;
//! - `metrics`: counters and their Prometheus text;
//! - `query`: report rows, the stores list, dwell;
//! - `campaigns`: campaign CSV and the campaign report (SPEC §7);
//! - `render`: tables, CSV and JSON lines for people and scripts;
//! - `web`: the dashboard's static files;
//! - `api`: the HTTP API and dashboard;
//! - `broker`: the embedded MQTT broker for a single box;
//! - `mqtt`: subscribe → accept → commit → ack;
//! - `serve`: starts broker, API and MQTT loop;
//! - `client`: the commands' way in, the store itself or a running
//!   gateway's API;
//! - `conformance` (tests only): what every store engine must do alike.

pub mod accept;
pub mod api;
pub mod broker;
pub mod calendar;
pub mod campaigns;
pub mod client;
pub mod config;
#[cfg(test)]
mod conformance;
pub mod metrics;
pub mod migrate;
pub mod mqtt;
pub mod query;
pub mod render;
pub mod retention;
pub mod serve;
pub mod store;
pub mod validate;
pub mod web;
