//! footfall's HQ gateway: ingest → store → query.
//!
//! `ingest` validates reports (from MQTT or from agents' emit files),
//! `store` keeps them once per key behind the `ReportStore` trait (sled
//! today; a SQL engine when several gateways share a subscription), and
//! `query` answers `report` and `stores`. The gateway never sees a MAC:
//! reports carry only counts and keyed-id sketches.

pub mod api;
pub mod campaigns;
pub mod config;
pub mod ingest;
pub mod query;
pub mod serve;
pub mod store;
pub mod web;
