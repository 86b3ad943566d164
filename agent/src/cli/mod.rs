//! The agent's commands. Each returns `anyhow::Result`; `main` prints the
//! error chain and exits 2.

pub mod doctor;
pub mod inspect;
pub mod replay;
pub mod run;
pub mod simulate;
