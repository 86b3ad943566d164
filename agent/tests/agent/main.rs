//! The agent's integration tests, one binary: real captures from
//! ../shared/data (`captures`), the binary end to end (`cli`), and the
//! counter against an independent model of SPEC §3-§5 (`reference`), and
//! the people estimates against truth (`people`), and what the privacy
//! modes leave on disk (`privacy`).
//! The helpers it shares with the end-to-end tests (the privacy audit,
//! `FOOTFALL_REQUIRE`) are their source files, included by path: a
//! dependency on the end-to-end crate would be built for ARM too.

#[path = "../../../tests/src/audit.rs"]
mod audit;
#[path = "../../../tests/src/require.rs"]
mod require;

mod captures;
mod cli;
mod people;
mod privacy;
mod reference;
