//! SPEC §1: which captured frames are detections. This is the door: a frame
//! comes in with a MAC, a `Detection` leaves with a keyed `DeviceId` and a
//! keyed fingerprint of its elements (SPEC §8), and nothing after this
//! module sees a MAC or an element's bytes.
//!
//! `classify` is the hot path: it parses in place, allocates nothing and
//! never panics; each rejected frame gets one `DropReason`.

use crate::privacy::fingerprint::FingerprintCache;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::privacy::{prefetch, DeviceId, Keyer, Keys, MacSet};
use crate::wire::ieee80211::{self, Mac, ProbeRequest};
use crate::wire::linktype::LinkType;
use crate::wire::{ppi, prism, radiotap, WireError};

/// Why a frame is not a detection, one reason per frame, in SPEC §1 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The link-layer header (radiotap) is not well formed.
    MalformedRadiotap,
    /// A Prism, AVS or PPI header is not well formed.
    MalformedHeader,
    /// Not a management frame of subtype 4 with protocol version 0.
    NotProbeRequest,
    /// A probe request whose 24-byte MAC header was not captured.
    Truncated,
    /// The capture header says the FCS check failed.
    BadFcs,
    /// The transmitter address has the group bit set.
    GroupAddress,
    /// Signal below `rssi_floor_dbm`.
    BelowRssiFloor,
    /// The device is on the opt-out list.
    OptedOut,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::NotProbeRequest,
        DropReason::Truncated,
        DropReason::BadFcs,
        DropReason::GroupAddress,
        DropReason::BelowRssiFloor,
        DropReason::MalformedRadiotap,
        DropReason::MalformedHeader,
        DropReason::OptedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotProbeRequest => "not_probe_request",
            DropReason::Truncated => "truncated",
            DropReason::BadFcs => "bad_fcs",
            DropReason::GroupAddress => "group_address",
            DropReason::BelowRssiFloor => "below_rssi_floor",
            DropReason::MalformedRadiotap => "malformed_radiotap",
            DropReason::MalformedHeader => "malformed_header",
            DropReason::OptedOut => "opted_out",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A probe request that passed SPEC §1, still carrying its MAC. Private to
/// this module's callers in `detect`; it is hashed before leaving.
pub struct Probe<'a> {
    pub mac: Mac,
    pub signal_dbm: Option<i8>,
    pub frame: ProbeRequest<'a>,
}

/// SPEC §1 on one captured frame. `rssi_floor_dbm` applies only when the
/// frame has a signal; a frame without one is kept.
pub fn classify(link: LinkType, frame: &[u8], rssi_floor_dbm: i8) -> Result<Probe<'_>, DropReason> {
    classify_cached(
        link,
        frame,
        rssi_floor_dbm,
        &mut radiotap::LayoutCache::default(),
    )
}

/// `classify` reusing the radiotap layout of the frame before.
fn classify_cached<'a>(
    link: LinkType,
    frame: &'a [u8],
    rssi_floor_dbm: i8,
    layout: &mut radiotap::LayoutCache,
) -> Result<Probe<'a>, DropReason> {
    let (body, signal, fcs_at_end, bad_fcs) = match link {
        LinkType::Ieee80211 => (frame, None, false, false),
        LinkType::Radiotap => {
            let h = radiotap::Header::new_cached(frame, layout)
                .map_err(|_| DropReason::MalformedRadiotap)?;
            let flags = h.flags().unwrap_or(0);
            (
                &frame[h.len()..],
                h.dbm_signal(),
                flags & radiotap::flags::FCS_AT_END != 0,
                flags & radiotap::flags::BAD_FCS != 0,
            )
        }
        LinkType::Prism | LinkType::Avs => {
            let h = if link == LinkType::Prism {
                prism::Header::new_checked_119(frame)
            } else {
                prism::Header::new_checked_avs(frame)
            }
            .map_err(|_| DropReason::MalformedHeader)?;
            (&frame[h.len()..], h.dbm_signal(), false, false)
        }
        LinkType::Ppi => {
            let h = ppi::Header::new_checked(frame).map_err(|_| DropReason::MalformedHeader)?;
            let flags = h.common_flags().unwrap_or(0);
            (
                &frame[h.len()..],
                h.dbm_signal(),
                flags & ppi::flags::FCS_PRESENT != 0,
                flags & ppi::flags::FCS_INVALID != 0,
            )
        }
    };
    match ieee80211::kind(body) {
        Some(ieee80211::Kind::ProbeRequest) => {}
        Some(ieee80211::Kind::Other) | None => return Err(DropReason::NotProbeRequest),
    }
    let body = if fcs_at_end {
        &body[..body.len().saturating_sub(4)]
    } else {
        body
    };
    let probe = match ProbeRequest::new_checked(body) {
        Ok(p) => p,
        Err(WireError::Truncated { .. }) => return Err(DropReason::Truncated),
        Err(_) => return Err(DropReason::NotProbeRequest),
    };
    if bad_fcs {
        return Err(DropReason::BadFcs);
    }
    let mac = probe.transmitter();
    if mac.is_group() {
        return Err(DropReason::GroupAddress);
    }
    if signal.is_some_and(|s| s < rssi_floor_dbm) {
        return Err(DropReason::BelowRssiFloor);
    }
    Ok(Probe {
        mac,
        signal_dbm: signal,
        frame: probe,
    })
}

/// One detection (SPEC §1), as the counter sees it: no MAC, no SSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub t_us: i64,
    pub device: DeviceId,
    /// Locally administered address (SPEC §1).
    pub randomized: bool,
    /// Signal at least `visit_rssi_dbm`, or no signal field (SPEC §1.5).
    pub strong: bool,
    pub no_signal: bool,
    /// SPEC §8 cues: the 802.11 sequence number, the keyed fingerprint of
    /// the information elements (`privacy::fingerprint`) and the signal.
    pub seq: u16,
    pub fingerprint: u64,
    pub rssi_dbm: Option<i8>,
    /// The key epoch the id was made in (`privacy::keys`): ids of two
    /// epochs are unrelated, so the counter ends one before the next.
    pub epoch: i64,
}

/// Per-reason frame counts, the figures of `inspect` and of the
/// `footfall_frames_total{result}` metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub frames: u64,
    pub probe_requests: u64,
    pub detections: u64,
    pub detections_no_signal: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    /// Key rotations whose key could not be written (the key file's
    /// directory is full or read-only); counting goes on in memory.
    pub key_errors: u64,
}

impl FrameStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// Ids (and element fingerprints) of recently seen MACs. A phone probes in
/// bursts, a dozen frames a visit, and HMAC-SHA-256 was the costliest step
/// per frame (measured: issue 7), so each burst is keyed once; a MAC's
/// fingerprint is taken from its first frame (a phone sends the same
/// elements in every probe of a scan). Direct-mapped: a slot holds the
/// last MAC that hashed to it, and a miss just keys again, so the cache
/// never changes an id. It lives in memory only, like the frame itself:
/// MACs never reach a disk (the service unit also disables core dumps).
struct IdCache {
    slots: Box<[Option<(Mac, DeviceId, u64)>]>,
    fingerprints: FingerprintCache,
}

impl IdCache {
    const SLOTS: usize = 16384;

    fn new() -> IdCache {
        IdCache {
            slots: vec![None; Self::SLOTS].into_boxed_slice(),
            fingerprints: FingerprintCache::new(),
        }
    }

    /// Forgets every MAC: after a key rotation its ids are of the old key.
    fn clear(&mut self) {
        self.slots.fill(None);
        self.fingerprints.clear();
    }

    fn slot(mac: &[u8; 6]) -> usize {
        let mut word = [0u8; 8];
        word[..6].copy_from_slice(mac);
        // Fibonacci hashing: the top bits of a multiply spread any bytes.
        (u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as usize
    }

    /// Hints the CPU to load `mac`'s slot (`Detector::prefetch`).
    fn prefetch(&self, mac: &[u8; 6]) {
        if let Some(slot) = self.slots.get(Self::slot(mac)) {
            prefetch(slot);
        }
    }

    fn id(&mut self, keyer: &Keyer, probe: &Probe) -> (DeviceId, u64) {
        let mac = &probe.mac;
        let slot = Self::slot(&mac.0);
        match &self.slots[slot] {
            Some((m, id, fp)) if m == mac => (*id, *fp),
            _ => {
                let id = keyer.id(mac);
                let fp = self.fingerprints.get(keyer, probe.frame.elements());
                self.slots[slot] = Some((*mac, id, fp));
                (id, fp)
            }
        }
    }
}

/// Frames in, detections out: SPEC §1 plus the keyed id and opt-out of §2.
pub struct Detector {
    link: LinkType,
    keys: Keys,
    /// The epoch `ids` holds ids of.
    ids_epoch: Option<i64>,
    ids: IdCache,
    layout: radiotap::LayoutCache,
    opt_out: MacSet,
    rssi_floor_dbm: i8,
    visit_rssi_dbm: i8,
    /// The key epoch the counter has committed (`i64::MIN`: none yet):
    /// keys of earlier epochs are dropped (`Keys::retire`).
    committed_epoch: Arc<AtomicI64>,
    pub stats: FrameStats,
}

impl Detector {
    pub fn new(
        link: LinkType,
        keys: Keys,
        opt_out: MacSet,
        rssi_floor_dbm: i8,
        visit_rssi_dbm: i8,
    ) -> Detector {
        Detector {
            link,
            keys,
            ids_epoch: None,
            ids: IdCache::new(),
            layout: radiotap::LayoutCache::default(),
            opt_out,
            rssi_floor_dbm,
            visit_rssi_dbm,
            committed_epoch: Arc::new(AtomicI64::new(i64::MIN)),
            stats: FrameStats::default(),
        }
    }

    /// Drops the previous key once the counter has committed a later
    /// epoch; called for every probe, and at the end of a run.
    pub fn retire_committed(&mut self) {
        if self.keys.holds_previous() {
            let committed = self.committed_epoch.load(Ordering::Relaxed);
            if let Err(e) = self.keys.retire(committed) {
                tracing::error!("cannot remove the previous device key: {e}");
                self.stats.key_errors += 1;
            }
        }
    }

    /// Where the counting side says which key epoch it has committed.
    pub fn committed_epoch(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.committed_epoch)
    }

    pub fn set_link(&mut self, link: LinkType) {
        self.link = link;
    }

    /// Hints the CPU to load what `frame` will read of the MACs' ids, a
    /// few frames before it comes: their slots (640 KB in all) missed the
    /// caches at nearly every frame, 43 % of `frame` under a crowd (perf,
    /// issue 20). Only a hint: `frame` bytes that are not a probe request
    /// it reads as one cost a wasted load, never an id.
    pub fn prefetch(&self, frame: &[u8]) {
        let body = match self.link {
            LinkType::Radiotap => {
                radiotap::Header::len_unchecked(frame).and_then(|len| frame.get(len..))
            }
            LinkType::Ieee80211 => Some(frame),
            LinkType::Prism | LinkType::Avs | LinkType::Ppi => None,
        };
        if let Some(mac) = body.and_then(ieee80211::probe_transmitter_unchecked) {
            self.ids.prefetch(mac);
        }
    }

    /// One captured frame; `Some` when it is a detection.
    pub fn frame(&mut self, t_us: i64, frame: &[u8]) -> Option<Detection> {
        self.stats.frames += 1;
        let probe = match classify_cached(self.link, frame, self.rssi_floor_dbm, &mut self.layout) {
            Ok(p) => p,
            Err(reason) => {
                if !matches!(
                    reason,
                    DropReason::NotProbeRequest
                        | DropReason::MalformedRadiotap
                        | DropReason::MalformedHeader
                ) {
                    self.stats.probe_requests += 1;
                }
                self.stats.dropped[reason.index()] += 1;
                return None;
            }
        };
        self.stats.probe_requests += 1;
        self.retire_committed();
        if self.opt_out.contains(&probe.mac) {
            self.stats.dropped[DropReason::OptedOut.index()] += 1;
            return None;
        }
        let epoch = match self.keys.advance(t_us) {
            Ok(e) => e,
            Err(e) => {
                // The new key is in force in memory; a restart before the
                // next rotation would start the epoch again with a new one.
                tracing::error!("cannot keep the new device key: {e}");
                self.stats.key_errors += 1;
                self.keys.epoch_of(t_us)
            }
        };
        if self.ids_epoch != Some(epoch) {
            self.ids.clear();
            self.ids_epoch = Some(epoch);
        }
        let (device, fingerprint) = self.ids.id(self.keys.keyer(epoch), &probe);
        self.stats.detections += 1;
        let no_signal = probe.signal_dbm.is_none();
        self.stats.detections_no_signal += u64::from(no_signal);
        Some(Detection {
            t_us,
            device,
            randomized: probe.mac.is_local(),
            strong: probe.signal_dbm.is_none_or(|s| s >= self.visit_rssi_dbm),
            no_signal,
            seq: probe.frame.seq(),
            fingerprint,
            rssi_dbm: probe.signal_dbm,
            epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::radiotap::{flags, Repr as Rt};
    use proptest::prelude::*;

    fn frame(rt: Rt, mac: [u8; 6], fcs: bool) -> Vec<u8> {
        let mut b = Vec::new();
        rt.emit(&mut b);
        ieee80211::Repr::probe_request(mac, 1).emit(&mut b);
        if fcs {
            b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        }
        b
    }

    const PHONE: [u8; 6] = [0x3c, 0x22, 0xfb, 1, 2, 3];

    #[test]
    fn spec_section_1_rules() {
        let ok = Rt {
            flags: Some(0),
            dbm_signal: Some(-60),
            ..Rt::default()
        };
        assert!(classify(LinkType::Radiotap, &frame(ok, PHONE, false), -90).is_ok());
        // Exactly at the floor is strong enough.
        let floor = Rt {
            dbm_signal: Some(-90),
            ..ok
        };
        assert!(classify(LinkType::Radiotap, &frame(floor, PHONE, false), -90).is_ok());
        let weak = Rt {
            dbm_signal: Some(-91),
            ..ok
        };
        assert_eq!(
            classify(LinkType::Radiotap, &frame(weak, PHONE, false), -90).err(),
            Some(DropReason::BelowRssiFloor)
        );
        let bad = Rt {
            flags: Some(flags::BAD_FCS),
            ..ok
        };
        assert_eq!(
            classify(LinkType::Radiotap, &frame(bad, PHONE, false), -90).err(),
            Some(DropReason::BadFcs)
        );
        let mut group = PHONE;
        group[0] |= 1;
        assert_eq!(
            classify(LinkType::Radiotap, &frame(ok, group, false), -90).err(),
            Some(DropReason::GroupAddress)
        );
        // No signal field: kept.
        let nosig = Rt {
            flags: Some(0),
            ..Rt::default()
        };
        let bytes = frame(nosig, PHONE, false);
        let p = classify(LinkType::Radiotap, &bytes, -90).unwrap();
        assert_eq!(p.signal_dbm, None);
    }

    #[test]
    fn fcs_bytes_do_not_count_towards_the_header() {
        let fcs = Rt {
            flags: Some(flags::FCS_AT_END),
            dbm_signal: Some(-50),
            ..Rt::default()
        };
        let mut b = Vec::new();
        fcs.emit(&mut b);
        let rt_len = b.len();
        ieee80211::Repr::probe_request(PHONE, 1).emit(&mut b);
        // Cut to 23 header bytes + 4 "FCS" bytes: 27 bytes after radiotap.
        b.truncate(rt_len + 27);
        assert_eq!(
            classify(LinkType::Radiotap, &b, -90).err(),
            Some(DropReason::Truncated)
        );
        b.truncate(rt_len);
        b.extend_from_slice(&frame(Rt::default(), PHONE, false)[8..8 + 24]);
        b.extend_from_slice(&[0; 4]);
        assert!(classify(LinkType::Radiotap, &b, -90).is_ok());
    }

    #[test]
    fn detector_hashes_and_classifies_strength() {
        let keyer = Keyer::new(&[1; 32]);
        let mut d = Detector::new(
            LinkType::Radiotap,
            Keys::fixed(&[1; 32]),
            MacSet::default(),
            -90,
            -70,
        );
        let weak = Rt {
            dbm_signal: Some(-80),
            ..Rt::default()
        };
        let det = d
            .frame(5, &frame(weak, [0x02, 0, 0, 0, 0, 1], false))
            .unwrap();
        assert!(!det.strong && det.randomized && !det.no_signal);
        assert_eq!(det.device, keyer.id(&Mac([0x02, 0, 0, 0, 0, 1])));
        let raw = &frame(Rt::default(), PHONE, false)[8..];
        d.set_link(LinkType::Ieee80211);
        let det = d.frame(6, raw).unwrap();
        assert!(det.strong && det.no_signal && !det.randomized);
        assert_eq!(
            (
                d.stats.frames,
                d.stats.detections,
                d.stats.detections_no_signal
            ),
            (2, 2, 1)
        );

        let opt = [Mac(PHONE)].into_iter().collect();
        let mut d = Detector::new(LinkType::Ieee80211, Keys::fixed(&[1; 32]), opt, -90, -70);
        assert!(d.frame(1, raw).is_none());
        assert_eq!(d.stats.dropped(DropReason::OptedOut), 1);
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), lt in 0usize..5) {
            let link = [LinkType::Radiotap, LinkType::Ieee80211, LinkType::Prism, LinkType::Avs, LinkType::Ppi][lt];
            let _ = classify(link, &bytes, -90);
        }
    }
}
