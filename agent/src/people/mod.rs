//! People estimates (SPEC §8): how many people were present in a window,
//! with a 90 % interval, and how many arrived, when phones hide behind
//! MACs that change every few minutes or every scan.
//!
//! The method, per window, from the strong detections (at least
//! `visit_rssi_dbm`: weaker ones are mostly the corridor outside), with
//! residents and opted-out devices left out:
//! 1. **Link** the MACs of one phone: a MAC that starts within a minute of
//!    another's last frame, with the same keyed fingerprint of the probe's
//!    information elements (`privacy::fingerprint`), a sequence number a few steps
//!    on, and a signal within 15 dB, is the same phone.
//! 2. **Measure** the phones: a phone seen in two bursts 30 s apart or more
//!    is *persistent* and counts the share of the window it spans; the
//!    phones seen in one burst only (MACs that change every scan) are
//!    counted **by rate**, as the number of distinct fingerprints among
//!    them: many bursts of one model are more likely one phone scanning
//!    again than many phones.
//! 3. **Calibrate**: present = a · persistent + b · fingerprints^0.7 (the
//!    first model seen counts most: see `FINGERPRINT_EXPONENT`), with a, b
//!    fitted by least squares on captures with a truth
//!    (`footfall-agent calibrate`); the interval comes from the fit's
//!    errors on files it did not see. Entries are the rise in present
//!    since the window before, less a dead band for the estimate's own
//!    noise (fitted so that the fit's entries add up to the truth's).
//!
//! Failure modes, measured on the lab days (docs/people.md):
//! - Two people with phones of the same model that change MAC every scan
//!   count as one when neither keeps a MAC for 30 s: crowds of one model
//!   are undercounted.
//! - A phone that sleeps through a window (screen off, no scans) is not
//!   seen; one probing only weakly (a bag, a far corner) is left out.
//! - People who stay in the doorway or just outside at -70 dBm or better
//!   count as present: the threshold is the store's edge.
//! - A new site's walls and phones differ from the lab: without its own
//!   calibration expect a bias of ±20 % (2022 → 2024 in the lab: -15 %).
//! - Entries see only net rises: one person leaving as another arrives
//!   within a window is no entry.
//!
//! Limits (SPEC §2): the fingerprint is keyed like a device id and the SSID
//! is never read; the observations are per window and go when it is final,
//! minutes later, so linkage never reaches back days.

pub mod calibration;
pub mod estimate;

pub use calibration::{Calibration, CalibrationError};
pub use estimate::{Estimate, Features, Obs, Observations};
/// A window's observations by device: each device's id and 32-byte
/// observation once, side by side (3.1 MB at 65,536 devices, where a hash
/// map of pairs doubled to 7.5 MB; issue 20).
pub type ObsTable = crate::privacy::IdTable<Obs>;
