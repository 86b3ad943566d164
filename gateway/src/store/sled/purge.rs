//! Deleting what retention or a closed store no longer keeps (issue 18).
//!
//! Keys are read, not values, wherever the key says enough (windows, hours,
//! days); a dead letter's time and topic are in its value. Each tree is
//! cleared in batches and the whole purge flushed before it says what it
//! deleted. A window's hour goes with it: purges cut at an instant, and a
//! window and its hour start before it together whenever the instant is
//! on the hour (retention and `--before` cut at midnight UTC).

use super::super::keys::{prefix, split_key, time_key, HOUR};
use super::{DeadLetter, Purge, Purged, Query, ReportStore, SledStore, StoreError};

/// Deletes per batch at most: a batch is held whole in memory.
const PART: usize = 4096;

impl SledStore {
    pub(super) fn purge_records(&self, p: &Purge) -> Result<Purged, StoreError> {
        let whole_store = p.store_id.is_some()
            && p.windows_before_s.is_none()
            && p.days_before.is_none()
            && p.dead_letters_before_s.is_none();
        let pre = p
            .store_id
            .as_deref()
            .map(|s| {
                let mut k = s.as_bytes().to_vec();
                k.push(0);
                k
            })
            .unwrap_or_default();
        // A time-keyed record goes when it is before the cut, or with its
        // whole store.
        let timed = |t: i64, cut: Option<i64>| match cut {
            Some(c) => t < c,
            None => whole_store,
        };
        let mut purged = Purged::default();
        // Hours cut on the hour, so that no hour keeps part of a purged
        // window's sums.
        let hour_cut = p.windows_before_s.map(|c| c.div_euclid(HOUR) * HOUR);
        purged.windows = self.delete_where(&self.windows, &pre, |k, _| {
            split_key(k).is_some_and(|(_, _, t)| timed(t, p.windows_before_s))
        })?;
        purged.hours = self.delete_where(&self.hours, &pre, |k, _| {
            split_key(k).is_some_and(|(_, _, t)| timed(t, hour_cut))
        })?;
        self.delete_where(&self.hour_sketches, &pre, |k, _| {
            split_key(k).is_some_and(|(_, _, t)| timed(t, hour_cut))
        })?;
        // A UTC day's window list goes with its last window.
        let day_cut = p.windows_before_s.map(|c| c.div_euclid(86_400) * 86_400);
        self.delete_where(&self.day_windows, &pre, |k, _| {
            split_key(k).is_some_and(|(_, _, t)| timed(t, day_cut))
        })?;
        // The local days before the cut go; the one the cut falls in is
        // summed again from the windows it keeps.
        self.delete_where(&self.local_days, &pre, |k, _| {
            split_key(k).is_some_and(|(_, _, t)| timed(t, p.windows_before_s))
        })?;
        if let (Some(cut), false) = (p.windows_before_s, whole_store) {
            let kept = self.windows(&Query {
                store_id: p.store_id.clone(),
                from_s: Some(cut),
                to_s: Some(cut.saturating_add(2 * 86_400)),
            })?;
            for w in kept {
                if self.local_day(&w).0 < cut {
                    let mut key = prefix(&w.store_id, &w.agent_id);
                    key.extend_from_slice(&time_key(w.window_start));
                    self.add_to_local_day(&key, &w)?;
                }
            }
        }
        // The chain's distinct visitors merged what goes: worked out again
        // from what stays when next asked for.
        if let Some(cut) = p.chain_cut() {
            self.delete_where(&self.chain_days, b"", |k, _| k < cut.as_bytes())?;
        }
        purged.day_reports = self.delete_where(&self.days, &pre, |k, _| {
            let date = k.rsplit(|b| *b == 0).next().unwrap_or_default();
            match &p.days_before {
                Some(cut) => date < cut.as_bytes(),
                None => whole_store,
            }
        })?;
        let mut letters = Vec::new();
        for item in self.dead.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let d: DeadLetter = self.decode("dead", &k, &v)?;
            let of_store = p.store_id.as_deref().is_none_or(|s| {
                // MQTT topics name the store third: footfall/v1/{store}/...
                d.source.split('/').nth(2) == Some(s)
            });
            let old = match p.dead_letters_before_s {
                Some(c) => d.received_unix_s < c,
                None => whole_store,
            };
            if of_store && old {
                letters.push(k);
            }
        }
        purged.dead_letters = self.delete_keys(&self.dead, letters)?;
        if whole_store {
            purged.agent_statuses = self.delete_where(&self.agents, &pre, |_, _| true)?;
            self.delete_where(&self.seen, &pre, |_, _| true)?;
        } else if let Some(cut) = p.windows_before_s {
            // An agent whose every window is gone reported nothing left.
            let mut gone = Vec::new();
            for item in self.seen.scan_prefix(&pre) {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let end = v.as_ref().try_into().map_or(0, i64::from_be_bytes);
                let mut first = k.to_vec();
                first.push(0);
                let any_left = self
                    .windows
                    .range(first.clone()..)
                    .next()
                    .transpose()
                    .map_err(|e| self.err(e))?
                    .is_some_and(|(wk, _)| wk.starts_with(&first));
                if end <= cut && !any_left {
                    gone.push(k);
                }
            }
            self.delete_keys(&self.seen, gone)?;
        }
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(purged)
    }

    /// Deletes the records under `pre` that `hit` picks; returns how many.
    fn delete_where(
        &self,
        tree: &sled::Tree,
        pre: &[u8],
        hit: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<u64, StoreError> {
        let mut keys = Vec::new();
        for item in tree.scan_prefix(pre) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if hit(&k, &v) {
                keys.push(k);
            }
        }
        self.delete_keys(tree, keys)
    }

    fn delete_keys(&self, tree: &sled::Tree, keys: Vec<sled::IVec>) -> Result<u64, StoreError> {
        let n = keys.len() as u64;
        for part in keys.chunks(PART) {
            let mut batch = sled::Batch::default();
            for k in part {
                batch.remove(k.clone());
            }
            tree.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        Ok(n)
    }
}
