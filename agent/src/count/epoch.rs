//! Key epochs (issue 18): what the counter does when the device key is
//! replaced. Ids of two epochs are unrelated, so nothing is linked across
//! a rotation, and what the mode may no longer keep is let go of there.
//!
//! - `ephemeral` (keys every `rotate_s`): the counter follows no device at
//!   all. Each epoch's strong detections are linked into phones in memory
//!   (`EpochObs`) and, when the epoch ends, reduced to the numbers of
//!   SPEC §8 (`Features`) added to their window; the ids go with them.
//!   Neither ids nor fingerprints are ever in the state a checkpoint
//!   writes.
//! - day epochs (`daily`, `loyalty` with `rotate_days`): at the rotation
//!   every session ends (its phone will have another id), every window up
//!   to it becomes final, the day before it is reported, and every device
//!   leaves memory. Stored histories of the old epoch fall outside
//!   `history_horizon`, so the checkpoint that commits the rotation prunes
//!   them.

use crate::config::Rotation;
use crate::people::{Features, Observations};
use crate::privacy::keys::{epoch_of, epoch_start_us};

use super::{Counter, HistoryError, HistoryStore};

/// The current epoch's observations (`ephemeral` only): memory only.
#[derive(Debug, Default)]
pub(super) struct EpochObs {
    pub(super) epoch: i64,
    pub(super) obs: Observations,
}

impl Counter {
    pub(super) fn epoch_of(&self, t_us: i64) -> i64 {
        epoch_of(self.privacy.rotation, &self.days, t_us)
    }

    /// The epoch the counter is in: set by the first detection, and after
    /// a restart the clock's.
    fn current_epoch(&mut self) -> Option<i64> {
        if self.epoch.is_none() {
            self.epoch = self.state.clock_us.map(|c| self.epoch_of(c));
        }
        self.epoch
    }

    /// Whether a detection of `epoch` comes after its epoch ended (input
    /// reordered across a rotation): its id is of a key whose devices are
    /// gone, so it is a late frame.
    pub(super) fn epoch_is_over(&mut self, epoch: i64) -> bool {
        self.privacy.rotation != Rotation::Never
            && self.current_epoch().is_some_and(|current| epoch < current)
    }

    /// Ends the current epoch when `next` is newer; then `next` is current.
    pub(super) fn rotate_to(
        &mut self,
        next: i64,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        if self.privacy.rotation == Rotation::Never {
            return Ok(());
        }
        let Some(current) = self.current_epoch() else {
            self.epoch = Some(next);
            return Ok(());
        };
        if next <= current {
            return Ok(());
        }
        match self.privacy.rotation {
            Rotation::Seconds(_) => self.end_ephemeral_epoch(),
            Rotation::Days(_) => {
                let boundary = epoch_start_us(self.privacy.rotation, &self.days, current + 1);
                self.close_everything_through(boundary - 1, store)?;
                self.state.devices.clear();
                self.finalized_spilled.clear();
                self.state.randomized_visitors.clear();
                store.key_rotated();
            }
            Rotation::Never => {}
        }
        self.epoch = Some(next);
        Ok(())
    }

    /// Reduces the ephemeral epoch's observations to its window's people
    /// features; the ids are dropped here.
    pub(super) fn end_ephemeral_epoch(&mut self) {
        let Some(e) = self.epoch_obs.take() else {
            return;
        };
        let start = epoch_start_us(self.privacy.rotation, &self.days, e.epoch);
        let w = self.window_of(start);
        let Some(nw) = self.state.next_window else {
            return;
        };
        if w < nw {
            return;
        }
        self.extend_windows(w);
        let f = e.obs.features(self.params.window_us, |_| false);
        let acc = &mut self.state.windows[(w - nw) as usize];
        acc.epochs.persistent += f.persistent;
        acc.epochs.fingerprints += f.fingerprints;
        acc.epochs.phones += f.phones;
        acc.epochs.links += f.links;
    }

    /// A window's features from its ephemeral epochs: persistent phones'
    /// shares add up (each epoch measured against the whole window), and
    /// single-burst models are the mean over the window's epochs, since
    /// a model present all along is seen once in every epoch.
    pub(super) fn epoch_features(&self, sums: &Features) -> Features {
        let per_window = match self.privacy.rotation {
            Rotation::Seconds(s) => (self.params.window_us / (i64::from(s) * 1_000_000)).max(1),
            _ => 1,
        };
        Features {
            fingerprints: sums.fingerprints / per_window as f64,
            ..*sums
        }
    }
}
