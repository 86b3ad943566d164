//! What the gateway has done since it started, for Prometheus on
//! `/metrics`: counters every accepted payload adds to, and the text they
//! are served as.
//!
//! Invariant: a figure that cannot be read is left out, never shown as 0
//! (a 0 would say something that is not known).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::accept::Tally;

#[derive(Debug)]
pub struct Counters {
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub conflicts: AtomicU64,
    pub dead: AtomicU64,
    pub statuses: AtomicU64,
    /// Records the retention sweeper deleted (issue 18).
    pub purged: AtomicU64,
    /// 1 while the store takes batches, 0 while it fails (issue 19).
    pub store_up: AtomicU64,
    /// Why the store fails, as last logged: a new reason is logged too.
    pub store_failure: std::sync::Mutex<Option<String>>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            inserted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            store_up: AtomicU64::new(1),
            store_failure: Default::default(),
        }
    }
}

impl Counters {
    pub fn add(&self, t: &Tally) {
        self.inserted.fetch_add(t.inserted, Ordering::Relaxed);
        self.duplicates.fetch_add(t.duplicates, Ordering::Relaxed);
        self.conflicts.fetch_add(t.conflicts, Ordering::Relaxed);
        self.dead.fetch_add(t.dead, Ordering::Relaxed);
        self.statuses.fetch_add(t.statuses, Ordering::Relaxed);
    }

    /// The Prometheus text; `agents` is how many agents have sent a
    /// status, or `None` when the store could not say.
    pub fn render(&self, agents: Option<usize>) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "footfall_gateway_reports_inserted_total",
                "Reports stored for the first time.",
                &self.inserted,
            ),
            (
                "footfall_gateway_reports_duplicate_total",
                "Reports already stored with the same counts.",
                &self.duplicates,
            ),
            (
                "footfall_gateway_reports_conflict_total",
                "Reports whose key is stored with other counts.",
                &self.conflicts,
            ),
            (
                "footfall_gateway_dead_letters_total",
                "Payloads refused (see dead-letters).",
                &self.dead,
            ),
            (
                "footfall_gateway_status_messages_total",
                "Agent status messages received.",
                &self.statuses,
            ),
            (
                "footfall_gateway_retention_purged_total",
                "Records deleted as past [retention] (windows, hours, day reports, dead letters).",
                &self.purged,
            ),
        ] {
            let v = v.load(Ordering::Relaxed);
            out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
        }
        out += &format!(
            "# HELP footfall_gateway_store_up 1 while the store takes reports, 0 while it fails (nothing is acked then).\n# TYPE footfall_gateway_store_up gauge\nfootfall_gateway_store_up {}\n",
            self.store_up.load(Ordering::Relaxed)
        );
        if let Some(n) = agents {
            out += &format!("# HELP footfall_gateway_agents Agents that have sent a status.\n# TYPE footfall_gateway_agents gauge\nfootfall_gateway_agents {n}\n");
        }
        out
    }
}
