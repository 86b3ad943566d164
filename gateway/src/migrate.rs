//! `footfall-gateway migrate --to postgres://…` (issue 19): copies a sled
//! store into PostgreSQL — windows, days, statuses, campaigns and dead
//! letters (hours are the windows summed, so they follow) — and then
//! verifies the copy store by store: the same number of windows and days,
//! and the same SHA-256 over them in key order.
//!
//! It can resume: a report already copied is a duplicate by its key and
//! is left as it is, a dead letter already there is not copied again, and
//! the verification reads both stores whole. Run it with the gateway
//! stopped (sled allows one process), then point `[storage]` at the URL.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use crate::store::{Put, Query, ReportStore};

/// What a migration copied and found.
#[derive(Debug, Default)]
pub struct Migrated {
    pub windows: u64,
    pub days: u64,
    pub already: u64,
    pub conflicts: u64,
    pub dead_letters: u64,
    pub statuses: u64,
    pub campaigns: u64,
    /// One line per store: counts and checksum, equal on both sides.
    pub verified: Vec<String>,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "copied {} windows and {} days ({} already there, {} conflicting), {} dead letters, {} statuses, {} campaigns",
            self.windows, self.days, self.already, self.conflicts, self.dead_letters, self.statuses, self.campaigns
        )?;
        for v in &self.verified {
            writeln!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Copies everything of `from` into `to`, then verifies each store.
pub fn migrate(from: &dyn ReportStore, to: &dyn ReportStore) -> Result<Migrated> {
    let mut m = Migrated::default();
    let stores: BTreeSet<String> = from
        .reporting_agents()?
        .into_iter()
        .map(|(s, _, _)| s)
        .chain(
            from.days(&Query::default())?
                .into_iter()
                .map(|d| d.store_id),
        )
        .collect();
    // Statuses first: they name each store's zone, which the database's
    // local days are cut in as windows arrive.
    for a in from.agents()? {
        to.set_status(&a)?;
        m.statuses += 1;
    }
    to.commit()?;
    for store in &stores {
        let q = Query {
            store_id: Some(store.clone()),
            ..Query::default()
        };
        let reports: Vec<footfall_report::Report> = from
            .windows(&q)?
            .into_iter()
            .map(footfall_report::Report::Window)
            .chain(from.days(&q)?.into_iter().map(footfall_report::Report::Day))
            .collect();
        // In batches, as the MQTT loop stores them: one statement each.
        for part in reports.chunks(5000) {
            for (put, r) in to.put_many(part)?.into_iter().zip(part) {
                match (put, r) {
                    (Put::Inserted, footfall_report::Report::Window(_)) => m.windows += 1,
                    (Put::Inserted, footfall_report::Report::Day(_)) => m.days += 1,
                    (Put::Duplicate, _) => m.already += 1,
                    (Put::Conflict, _) => m.conflicts += 1,
                }
            }
        }
        to.commit()?;
    }
    let campaigns = from.campaigns()?;
    to.put_campaigns(&campaigns)?;
    m.campaigns = campaigns.len() as u64;
    let there: BTreeSet<String> = to
        .dead_letters()?
        .iter()
        .map(|d| serde_json::to_string(d).expect("serializes"))
        .collect();
    for d in from.dead_letters()? {
        if !there.contains(&serde_json::to_string(&d).expect("serializes")) {
            to.dead_letter(&d)?;
            m.dead_letters += 1;
        }
    }
    to.commit()?;
    let mut differ = Vec::new();
    for store in &stores {
        let (a, b) = (summary(from, store)?, summary(to, store)?);
        if a == b {
            m.verified.push(format!(
                "store {store}: {} windows, {} days, sha256 {}: equal",
                a.0,
                a.1,
                &a.2[..16]
            ));
        } else {
            differ.push(format!(
                "store {store}: {} windows, {} days in sled, {} and {} in PostgreSQL (checksums {} / {})",
                a.0, a.1, b.0, b.1, &a.2[..16], &b.2[..16]
            ));
        }
    }
    if !differ.is_empty() {
        bail!(
            "the copy differs (run migrate again to resume; a conflict means PostgreSQL already held other counts for a key):\n{}",
            differ.join("\n")
        );
    }
    Ok(m)
}

/// A store's windows and days: how many, and SHA-256 over them in key
/// order (each report's JSON, `seq` included).
fn summary(s: &dyn ReportStore, store: &str) -> Result<(usize, usize, String)> {
    let q = Query {
        store_id: Some(store.to_string()),
        ..Query::default()
    };
    let mut h = Sha256::new();
    let mut windows = s.windows(&q)?;
    windows.sort_by(|a, b| (&a.agent_id, a.window_start).cmp(&(&b.agent_id, b.window_start)));
    for w in &windows {
        h.update(serde_json::to_vec(w).expect("serializes"));
    }
    let mut days = s.days(&q)?;
    days.sort_by(|a, b| (&a.agent_id, &a.date).cmp(&(&b.agent_id, &b.date)));
    for d in &days {
        h.update(serde_json::to_vec(d).expect("serializes"));
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((windows.len(), days.len(), hex))
}
