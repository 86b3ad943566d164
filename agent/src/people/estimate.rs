//! One window's observations of strong devices, linked into phones and
//! turned into features, and the features into an estimate of people.

use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::ObsTable;
use crate::detect::Detection;
use crate::privacy::{DeviceId, IdBuildHasher};

const US_PER_S: i64 = 1_000_000;
/// Frames of one device further apart than this are separate bursts (a
/// phone's scan sends its probes within a few tens of milliseconds).
pub const BURST_GAP_US: i64 = US_PER_S;
/// A device seen in two bursts this far apart or more is persistent: a
/// phone that keeps its MAC for a while, not a single scan.
pub const PERSISTENT_SPAN_US: i64 = 30 * US_PER_S;
/// Linking a MAC to the one before it: the new MAC starts within this
/// long after the old one's last frame ...
pub const LINK_GAP_US: i64 = 60 * US_PER_S;
/// ... with a sequence number at most this far ahead (802.11 sequence
/// numbers count modulo 4096; phones that keep counting across a MAC
/// change give themselves away by a small step) ...
pub const LINK_SEQ: u16 = 32;
/// ... and a signal level within this many dB (the phone has not moved).
pub const LINK_RSSI_DB: i16 = 15;

/// What the window saw of one device (its strong detections only). 32
/// bytes: a crowd's window holds tens of thousands (issue 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obs {
    first_us: i64,
    last_us: i64,
    first_seq: u16,
    last_seq: u16,
    /// dBm; 0 when the frame had no signal field (kept, SPEC §1.5).
    first_rssi: i8,
    last_rssi: i8,
    /// Saturating: only whether there were two or more is read. Stored as
    /// the `u32` it was.
    #[serde(with = "saturating_u16")]
    bursts: u16,
    fingerprint: u64,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Obs>() == 32);

/// A `u16` stored as a `u32`, larger values read back as `u16::MAX`.
mod saturating_u16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        Ok(u16::try_from(u32::deserialize(d)?).unwrap_or(u16::MAX))
    }
}

/// A window's observations, by device. Lives only until the window is
/// final (minutes): this is all the linkage state there is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observations {
    devices: ObsTable,
    /// Part of the window was not observed for people (it was pending
    /// when the agent was upgraded from a version without estimates).
    unavailable: bool,
    /// Halvings of the share of phone models observed, which agents of
    /// 2026-11-30 made over the budget and a window they checkpointed may
    /// still carry; none are made now. Stored apart (`count::Bulk`), as
    /// the layout of this struct is positional.
    #[serde(skip)]
    share: u8,
    /// Issue 20: halvings of the sequence numbers a new MAC must start at
    /// to be observed (`in_seq_share`), when the window saw more devices
    /// than its budget (`observe`). Halving the models instead kept
    /// phones whole but depended on how the models split: with the five
    /// of `simulate`'s crowd it overstated people 2.8 times, or left no
    /// model and read 0; halving the numbers stayed within 5 %. Stored
    /// apart, as `share` is.
    #[serde(skip)]
    seq_share: u8,
}

/// Whether a device of element fingerprint `fingerprint` is in the share
/// of models observed after `share` halvings (a window of an older agent).
fn in_share(fingerprint: u64, share: u8) -> bool {
    share == 0 || fingerprint.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - u32::from(share)) == 0
}

/// 802.11 sequence numbers have 12 bits.
const SEQ_BITS: u8 = 12;

/// Whether a MAC whose first frame has sequence number `seq` is observed
/// after `seq_share` halvings: those starting in the lowest 4096 / 2^k
/// numbers. A contiguous block, as a phone that keeps counting across MAC
/// changes starts each MAC a little further on: the MACs it starts inside
/// the block are consecutive and still link, so the span observed is, on
/// average, its share of the phone's (phones start at random numbers). A
/// MAC is observed whole or not at all, so a phone keeping its MAC counts
/// exactly 2^k times or not at all.
fn in_seq_share(seq: u16, seq_share: u8) -> bool {
    seq_share == 0 || (seq & 0x0fff) >> (SEQ_BITS - seq_share) == 0
}

/// What the estimate is made of (see the module doc of `people`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Σ over persistent phones of the share of the window they span.
    pub persistent: f64,
    /// Distinct fingerprints among the phones seen in one burst only.
    pub fingerprints: f64,
    /// Phones after linking, and MAC changes linked (for `evaluate`).
    pub phones: u64,
    pub links: u64,
}

/// Single-burst models count as `fingerprints^FINGERPRINT_EXPONENT`: the
/// first model seen is most likely someone there, each further one less
/// so (it is as likely a passer-by or a second MAC of a phone already
/// counted). 0.7 makes one lone model about one person on the lab days
/// (factor 1.04 in the built-in calibration) while fitting crowds better
/// than a straight count (held-out busy MAE 2.57 against 2.75); it is
/// fixed by design, not fitted, since a fit would trade the lone phone
/// for the crowd.
pub const FINGERPRINT_EXPONENT: f64 = 0.7;

impl Features {
    /// The regressors the calibration's two factors multiply.
    pub fn regressors(&self) -> [f64; 2] {
        [
            self.persistent,
            self.fingerprints.powf(FINGERPRINT_EXPONENT),
        ]
    }
}

/// SPEC §8's window figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub present: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Observations {
    /// Starts loading what `observe` will touch for `d` (`IdTable::prefetch`).
    pub fn prefetch(&self, d: &Detection) {
        if in_share(d.fingerprint, self.share) {
            self.devices.prefetch(d.device);
        }
    }

    /// One strong detection (frames weaker than `visit_rssi_dbm` are more
    /// likely the corridor than the store, and are not offered). Past
    /// `budget` devices, the window observes only the MACs that start in
    /// half the sequence numbers it did (again as often as needed), and
    /// its features count each MAC seen for the ones left out: the
    /// estimate gets coarser, memory stays bounded (issue 20).
    pub fn observe(&mut self, d: &Detection, budget: usize) {
        if !in_share(d.fingerprint, self.share) {
            return;
        }
        if self.seq_share > 0
            && !self.devices.contains(d.device)
            && !in_seq_share(d.seq, self.seq_share)
        {
            return;
        }
        let rssi = d.rssi_dbm.unwrap_or(0);
        // A new observation is as the update below leaves it.
        let o = self.devices.entry(d.device, || Obs {
            first_us: d.t_us,
            last_us: d.t_us,
            first_seq: d.seq,
            last_seq: d.seq,
            first_rssi: rssi,
            last_rssi: rssi,
            bursts: 1,
            fingerprint: d.fingerprint,
        });
        if d.t_us >= o.last_us {
            if d.t_us - o.last_us > BURST_GAP_US {
                o.bursts = o.bursts.saturating_add(1);
            }
            o.last_us = d.t_us;
            o.last_seq = d.seq;
            o.last_rssi = rssi;
        } else if d.t_us < o.first_us {
            if o.first_us - d.t_us > BURST_GAP_US {
                o.bursts = o.bursts.saturating_add(1);
            }
            o.first_us = d.t_us;
            o.first_seq = d.seq;
            o.first_rssi = rssi;
        }
        while self.devices.len() > budget {
            self.halve();
        }
    }

    /// Halves the sequence numbers MACs may start at to be observed.
    fn halve(&mut self) {
        if self.seq_share < SEQ_BITS {
            self.seq_share += 1;
            let seq_share = self.seq_share;
            self.devices
                .retain(|_, o| in_seq_share(o.first_seq, seq_share));
        } else {
            // One sequence number: nothing left to halve.
            self.devices.clear();
        }
    }

    /// Halvings of the models and of the sequence numbers observed (0: all).
    pub fn share(&self) -> (u8, u8) {
        (self.share, self.seq_share)
    }

    /// Restores `share` (a stored checkpoint's).
    pub fn set_share(&mut self, (share, seq_share): (u8, u8)) {
        self.share = share.min(32);
        self.seq_share = seq_share.min(SEQ_BITS);
    }

    /// None yet, with room for about `n` devices without a rehash.
    pub fn with_room_for(n: usize) -> Observations {
        Observations {
            devices: ObsTable::with_slots(n),
            ..Observations::default()
        }
    }

    /// Observations of a window that was partly counted without them.
    pub fn unavailable() -> Observations {
        Observations {
            unavailable: true,
            ..Observations::default()
        }
    }

    /// The observations by device, taken out (the checkpoint writes them
    /// in parts); `unavailable` stays.
    pub fn take_devices(&mut self) -> ObsTable {
        std::mem::take(&mut self.devices)
    }

    /// Puts back what `take_devices` took, as it was (not rehashed).
    pub fn put_devices(&mut self, devices: ObsTable) {
        debug_assert!(self.devices.is_empty(), "put back over observations");
        self.devices = devices;
    }

    /// Adds a part of what `take_devices` took (a stored checkpoint's).
    pub fn extend_devices(&mut self, devices: impl IntoIterator<Item = (DeviceId, Obs)>) {
        self.devices.extend(devices);
    }

    /// Devices observed (each with its fingerprint).
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Whether the window can have an estimate.
    pub fn available(&self) -> bool {
        !self.unavailable
    }

    /// Links the window's devices into phones and measures them, leaving
    /// out the devices `excluded` says are not people (residents).
    pub fn features(&self, window_us: i64, excluded: impl Fn(DeviceId) -> bool) -> Features {
        let obs = self.devices.in_order_by(|id| !excluded(id), Obs::first_us);
        let mut phones: Vec<Obs> = Vec::with_capacity(obs.len());
        // Phones by fingerprint and block of LINK_SEQ sequence numbers
        // their last one is in: a new MAC looks in the (at most two) blocks
        // just before its first number, so linking stays linear when
        // thousands of phones share a model (a list per model was
        // quadratic). Each phone has one entry, in the block of its
        // current last_seq, holding what linking compares (so the lists
        // are scanned without touching `phones`): it moves when the phone
        // links, and goes once the phone's last frame is more than
        // LINK_GAP_US before a new MAC's first, since MACs come in time
        // order and no later one can link to it. With every phone of the
        // epoch left in the lists, linking was a third of a crowd's replay
        // (issue 20).
        #[derive(Clone, Copy)]
        struct End {
            phone: usize,
            last_us: i64,
            last_seq: u16,
            last_rssi: i8,
        }
        impl End {
            fn of(phone: usize, o: &Obs) -> End {
                End {
                    phone,
                    last_us: o.last_us,
                    last_seq: o.last_seq,
                    last_rssi: o.last_rssi,
                }
            }
        }
        let mut ends: std::collections::HashMap<u128, Vec<End>, IdBuildHasher> = Default::default();
        // The map hashes a key's low half as it is (`IdHasher`, made for
        // HMAC outputs): the block goes in mixed with the fingerprint, not
        // as its low bits, which left most bits of the table's index zero
        // and its probes long (its lookups were 13 % of the counting
        // thread at 1 M devices a day; issue 20, perf). The high half
        // keeps the fingerprint, so keys stay distinct.
        let block = |fingerprint: u64, seq: u16| {
            let b = u64::from((seq & 0x0fff) / LINK_SEQ);
            u128::from(fingerprint) << 64
                | u128::from(fingerprint ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        };
        let mut links = 0;
        for &o in obs {
            let keys = [
                block(o.fingerprint, o.first_seq.wrapping_sub(1)),
                block(o.fingerprint, o.first_seq.wrapping_sub(LINK_SEQ)),
            ];
            let distinct = if keys[0] == keys[1] { 1 } else { 2 };
            // (step, phone) decides; then where its entry is.
            let mut best: Option<(u16, usize, u128)> = None;
            for &key in &keys[..distinct] {
                let Some(list) = ends.get_mut(&key) else {
                    continue;
                };
                list.retain(|e| o.first_us - e.last_us <= LINK_GAP_US);
                if list.is_empty() {
                    ends.remove(&key);
                    continue;
                }
                for e in list.iter() {
                    if let Some(step) = link_step(e.last_us, e.last_seq, e.last_rssi, &o) {
                        if best.is_none_or(|(s, i, _)| (step, e.phone) < (s, i)) {
                            best = Some((step, e.phone, key));
                        }
                    }
                }
            }
            let i = match best {
                Some((_, i, key)) => {
                    let list = ends.get_mut(&key).expect("found in it above");
                    let at = list.iter().position(|e| e.phone == i).expect("found");
                    list.swap_remove(at);
                    phones[i].continue_with(&o);
                    links += 1;
                    i
                }
                None => {
                    phones.push(o);
                    phones.len() - 1
                }
            };
            ends.entry(block(o.fingerprint, o.last_seq))
                .or_default()
                .push(End::of(i, &phones[i]));
        }
        let f = Features::of_phones(&phones, links, window_us);
        // Each model observed stands for 2^share, each MAC for 2^seq_share
        // more; a model's single-burst phones are many in a crowd, so the
        // models among them are as many in any block of numbers.
        let halvings = u32::from(self.share) + u32::from(self.seq_share);
        Features {
            persistent: f.persistent * f64::from(halvings).exp2(),
            fingerprints: f.fingerprints * f64::from(self.share).exp2(),
            phones: f.phones << halvings,
            links: f.links << halvings,
        }
    }
}

impl Obs {
    pub(super) fn first_us(&self) -> i64 {
        self.first_us
    }

    /// The phone after `next`, a new MAC linked to it.
    fn continue_with(&mut self, next: &Obs) {
        // A MAC change within one burst does not start another.
        let same_burst = next.first_us - self.last_us <= BURST_GAP_US;
        self.bursts = self
            .bursts
            .saturating_add(next.bursts - u16::from(same_burst));
        self.last_us = next.last_us;
        self.last_seq = next.last_seq;
        self.last_rssi = next.last_rssi;
    }
}

impl Features {
    /// The features of a window's phones, linked (`links` MAC changes).
    fn of_phones(phones: &[Obs], links: u64, window_us: i64) -> Features {
        let mut persistent = 0.0;
        let mut single: Vec<u64> = Vec::new();
        for p in phones {
            if p.bursts >= 2 && p.last_us - p.first_us >= PERSISTENT_SPAN_US {
                persistent += ((p.last_us - p.first_us) as f64 / window_us as f64).min(1.0);
            } else {
                single.push(p.fingerprint);
            }
        }
        single.sort_unstable();
        single.dedup();
        Features {
            persistent,
            fingerprints: single.len() as f64,
            phones: phones.len() as u64,
            links,
        }
    }
}

/// Whether `next` (a new MAC) continues the phone whose last frame was
/// (`last_us`, `last_seq`, `last_rssi`), and how close the
/// sequence numbers are (the smallest step wins when several could).
fn link_step(last_us: i64, last_seq: u16, last_rssi: i8, next: &Obs) -> Option<u16> {
    let gap = next.first_us - last_us;
    let step = next.first_seq.wrapping_sub(last_seq) & 0x0fff;
    let rssi = (i16::from(next.first_rssi) - i16::from(last_rssi)).abs();
    (gap > 0 && gap <= LINK_GAP_US && step > 0 && step <= LINK_SEQ && rssi <= LINK_RSSI_DB)
        .then_some(step)
}

impl Calibration {
    /// People present, as a time average over the window, with its 90 %
    /// interval: lo ≤ present ≤ hi, all ≥ 0.
    pub fn estimate(&self, f: &Features) -> Estimate {
        let [x0, x1] = f.regressors();
        let present = (self.per_persistent * x0 + self.per_fingerprint * x1).max(0.0);
        let lo = ((present + 1.0) * self.interval_log_lo.exp() - 1.0).clamp(0.0, present);
        let hi = ((present + 1.0) * self.interval_log_hi.exp() - 1.0).max(present);
        Estimate { present, lo, hi }
    }
}

impl Calibration {
    /// People whose stay begins in a window: the rise in `present` since
    /// the window before, less the calibration's dead band (rises smaller
    /// than it are the estimate's own noise); 0 for the first window after
    /// a start or a gap, which cannot tell arrivals from people already
    /// there.
    pub fn entries(&self, present: f64, before: Option<f64>) -> f64 {
        before.map_or(0.0, |b| (present - b - self.entries_deadband).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_772_409_600 * US_PER_S;
    const WINDOW: i64 = 900 * US_PER_S;

    /// Linking as SPEC §8's method states it, with nothing to make it fast:
    /// each MAC, in time order, continues the phone of its model with the
    /// smallest step (then the first found) that `link_step` accepts.
    fn features_by_definition(o: &Observations) -> Features {
        let mut obs: Vec<(DeviceId, Obs)> = o.devices.iter().map(|(i, o)| (*i, *o)).collect();
        obs.sort_unstable_by_key(|(id, o)| (o.first_us, *id));
        let mut phones: Vec<Obs> = Vec::new();
        let mut links = 0;
        for (_, o) in obs {
            let best = (0..phones.len())
                .filter(|&i| phones[i].fingerprint == o.fingerprint)
                .filter_map(|i| {
                    let p = &phones[i];
                    link_step(p.last_us, p.last_seq, p.last_rssi, &o).map(|s| (s, i))
                })
                .min();
            match best {
                Some((_, i)) => {
                    phones[i].continue_with(&o);
                    links += 1;
                }
                None => phones.push(o),
            }
        }
        Features::of_phones(&phones, links, WINDOW)
    }

    proptest::proptest! {
        /// The indexed linking (blocks of sequence numbers, entries that
        /// move and expire) links exactly as the definition does, on
        /// crowds of few models whose sequence numbers collide and wrap.
        #[test]
        fn linking_is_the_definition(
            dets in proptest::collection::vec(
                (0u32..600_000, 0u128..400, 0u16..120, 0u64..3, -80i8..-40),
                1..1500,
            )
        ) {
            let mut obs = Observations::default();
            for (t_ms, dev, seq, fp, rssi) in dets {
                obs.observe(&Detection {
                    rssi_dbm: Some(rssi),
                    // Around 4095 -> 0, where sequence numbers wrap.
                    ..det(f64::from(t_ms) / 1000.0, dev, (seq + 4030) % 4096, fp)
                }, usize::MAX);
            }
            proptest::prop_assert_eq!(obs.features(WINDOW, |_| false), features_by_definition(&obs));
        }
    }

    fn det(t_s: f64, dev: u128, seq: u16, fp: u64) -> Detection {
        Detection {
            t_us: T0 + (t_s * 1e6) as i64,
            device: DeviceId(dev),
            randomized: true,
            strong: true,
            no_signal: false,
            seq,
            fingerprint: fp,
            rssi_dbm: Some(-60),
            epoch: 0,
        }
    }

    /// A probe burst: three frames 20 ms apart, sequence numbers counting.
    fn burst(obs: &mut Observations, t_s: f64, dev: u128, seq: u16, fp: u64) -> u16 {
        for i in 0..3 {
            obs.observe(
                &det(t_s + 0.02 * f64::from(i), dev, seq + i, fp),
                usize::MAX,
            );
        }
        seq + 3
    }

    /// The features of 3,000 phones over 10 minutes, observed whole and
    /// over a budget of 4,000 devices: a scan a minute (4 probes), each
    /// phone from its own starting sequence number, two in three taking a
    /// new MAC every scan and counting on; `model` gives each its model.
    fn whole_and_over_budget(model: impl Fn(u128) -> u64) -> (Features, Features) {
        let (mut all, mut some) = (Observations::default(), Observations::default());
        for minute in 0..10u16 {
            for phone in 0..3000u128 {
                let mac = if phone % 3 == 0 {
                    phone
                } else {
                    phone * 1000 + u128::from(minute)
                };
                let seq = (phone as u16).wrapping_mul(1361).wrapping_add(minute * 4) & 0x0fff;
                let t = f64::from(minute) * 60.0 + (phone % 50) as f64;
                let d = det(t, mac, seq, model(phone));
                all.observe(&d, usize::MAX);
                some.observe(&d, 4000);
            }
        }
        assert!(some.share().1 >= 2, "share {:?}", some.share());
        assert!(some.devices() <= 4000);
        (
            all.features(WINDOW, |_| false),
            some.features(WINDOW, |_| false),
        )
    }

    fn near(a: f64, b: f64, by: f64) -> bool {
        (a - b).abs() <= by * a
    }

    /// Over its budget a window observes the MACs that start in half the
    /// sequence numbers, then a quarter..., and counts each MAC seen for
    /// those left out: memory stays under the budget and the features stay
    /// near the whole's.
    #[test]
    fn over_its_budget_a_window_observes_a_share_of_sequence_numbers() {
        let (fa, fs) = whole_and_over_budget(|phone| {
            ((phone % 600) as u64).wrapping_mul(0x1234_5678_9abc_def1)
        });
        assert!(near(fa.persistent, fs.persistent, 0.35), "{fa:?} {fs:?}");
        assert!(
            near(fa.phones as f64, fs.phones as f64, 0.35),
            "{fa:?} {fs:?}"
        );
    }

    /// The same with one model (a crowd of one brand), where halving the
    /// models, as agents did before, left none and every estimate read 0.
    #[test]
    fn over_its_budget_with_one_model_the_features_stay_near_the_whole() {
        let (fa, fs) = whole_and_over_budget(|_| 42);
        assert!(fa.persistent > 500.0, "{fa:?}");
        assert!(near(fa.persistent, fs.persistent, 0.2), "{fa:?} {fs:?}");
        // A chain cut where it leaves the block counts as two phones.
        assert!(
            near(fa.phones as f64, fs.phones as f64, 0.5),
            "{fa:?} {fs:?}"
        );
    }

    #[test]
    fn a_mac_change_with_continuing_sequence_numbers_links() {
        let mut obs = Observations::default();
        // One phone: a new MAC every scan, every 40 s, sequence counting on.
        let mut seq = 100;
        for k in 0..10u128 {
            seq = burst(&mut obs, 40.0 * k as f64, 1000 + k, seq, 7);
        }
        let f = obs.features(WINDOW, |_| false);
        assert_eq!(f.phones, 1, "{f:?}");
        assert_eq!(f.links, 9);
        assert_eq!(f.fingerprints, 0.0);
        assert!((f.persistent - 360.04 / 900.0).abs() < 1e-3, "{f:?}");
    }

    #[test]
    fn two_phones_of_one_model_with_their_own_sequences_do_not_link() {
        let mut obs = Observations::default();
        let (mut a, mut b) = (100, 3000);
        for k in 0..10u128 {
            a = burst(&mut obs, 40.0 * k as f64, 1000 + k, a, 7);
            b = burst(&mut obs, 40.0 * k as f64 + 5.0, 2000 + k, b, 7);
        }
        let f = obs.features(WINDOW, |_| false);
        assert_eq!(f.phones, 2, "{f:?}");
        // Neither is linked to the other's MACs: each spans the 360 s.
        assert!((f.persistent - 2.0 * 360.04 / 900.0).abs() < 1e-3, "{f:?}");
    }

    #[test]
    fn a_new_sequence_or_another_model_starts_another_phone() {
        let mut obs = Observations::default();
        burst(&mut obs, 0.0, 1, 100, 7);
        burst(&mut obs, 40.0, 2, 2000, 7); // sequence jumped: iOS-style
        burst(&mut obs, 80.0, 3, 106, 8); // another fingerprint
        let f = obs.features(WINDOW, |_| false);
        assert_eq!((f.phones, f.links), (3, 0));
        assert_eq!(f.fingerprints, 2.0, "single bursts count once per model");
        // Residents are left out before linking.
        let f = obs.features(WINDOW, |id| id == DeviceId(3));
        assert_eq!(f.fingerprints, 1.0);
    }

    #[test]
    fn estimates_keep_their_order_and_entries_count_rises() {
        let c = Calibration::builtin();
        for (p, s) in [(0.0, 0.0), (0.3, 2.0), (5.0, 10.0)] {
            let e = c.estimate(&Features {
                persistent: p,
                fingerprints: s,
                ..Features::default()
            });
            assert!(
                0.0 <= e.lo && e.lo <= e.present && e.present <= e.hi,
                "{e:?}"
            );
        }
        assert_eq!(c.entries(3.0, None), 0.0);
        assert_eq!(c.entries(3.0, Some(1.0)), 2.0 - c.entries_deadband);
        assert_eq!(c.entries(1.0, Some(3.0)), 0.0);
        assert_eq!(
            c.entries(1.1, Some(1.0)),
            0.0,
            "a rise within the dead band"
        );
    }

    /// An observation is stored in the layout it had with 32-bit bursts,
    /// and more bursts than 16 bits hold read back as two or more.
    #[test]
    fn an_observation_is_stored_as_it_was() {
        #[derive(Serialize)]
        struct Before {
            first_us: i64,
            last_us: i64,
            first_seq: u16,
            last_seq: u16,
            first_rssi: i8,
            last_rssi: i8,
            bursts: u32,
            fingerprint: u64,
        }
        let before = |bursts| Before {
            first_us: T0,
            last_us: T0 + 40 * US_PER_S,
            first_seq: 7,
            last_seq: 300,
            first_rssi: -61,
            last_rssi: -58,
            bursts,
            fingerprint: 0xfeed,
        };
        let o = Obs {
            first_us: T0,
            last_us: T0 + 40 * US_PER_S,
            first_seq: 7,
            last_seq: 300,
            first_rssi: -61,
            last_rssi: -58,
            bursts: 3,
            fingerprint: 0xfeed,
        };
        let stored = postcard::to_stdvec(&o).unwrap();
        assert_eq!(stored, postcard::to_stdvec(&before(3)).unwrap());
        assert_eq!(postcard::from_bytes::<Obs>(&stored).unwrap(), o);
        let many: Obs =
            postcard::from_bytes(&postcard::to_stdvec(&before(70_000)).unwrap()).unwrap();
        assert_eq!(many.bursts, u16::MAX);
    }
}
