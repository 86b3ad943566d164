//! The probe's information elements as a fingerprint of the phone model and
//! its settings (SPEC §8 linking): which elements, in what order, and the
//! values of those that describe capabilities. Phones that rotate their MAC
//! keep these, so MACs of one phone share a fingerprint; two phones of one
//! model share it too, which is why a fingerprint is a cue, not an id.
//!
//! Privacy (SPEC §2): the SSID (element 0) is never read, and the channel
//! (element 3) is left out because it follows the channel hopper, not the
//! phone. The structure is gathered on the stack and keyed-hashed like a
//! device id (`Keyer::fingerprint`). Only the structure outlives the
//! frame, in memory, in `FingerprintCache` (never written anywhere, and
//! dropped at each key rotation); no other element byte does.
//! It lives here, with the keyer, because it is the other keyed thing a
//! frame leaves the door as (`detect`).

use std::hash::BuildHasher;

use super::Keyer;

/// Elements whose whole body describes the phone's capabilities: rates
/// (1, 50), HT (45), extended capabilities (127), VHT (191),
/// interworking (107), operating classes (59), RM capabilities (70),
/// extension elements (255: HE and later).
const WHOLE: [u8; 9] = [1, 50, 45, 127, 191, 107, 59, 70, 255];
const SSID: u8 = 0;
const DS_PARAMETER: u8 = 3;
const VENDOR: u8 = 221;
/// Bytes of structure hashed at most; what is longer is cut (the same way
/// for every frame, so fingerprints stay comparable).
const MAX: usize = 512;

/// The keyed fingerprint of a probe's elements, uncached: what
/// `FingerprintCache::get` must give, which its tests compare with.
#[cfg(test)]
pub fn fingerprint<'a>(keyer: &Keyer, elements: impl Iterator<Item = (u8, &'a [u8])>) -> u64 {
    let mut buf = [0u8; MAX];
    let len = structure(elements, &mut buf);
    keyer.fingerprint(&buf[..len])
}

/// Writes the structure that is hashed into `buf`; returns its length.
fn structure<'a>(elements: impl Iterator<Item = (u8, &'a [u8])>, buf: &mut [u8; MAX]) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(MAX - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    for (id, body) in elements {
        match id {
            SSID | DS_PARAMETER => {}
            VENDOR => {
                // The vendor's OUI and type, not its payload (which can
                // carry per-connection data such as WPS UUIDs).
                put(&[id]);
                put(&body[..body.len().min(4)]);
            }
            _ if WHOLE.contains(&id) => {
                put(&[id]);
                put(body);
            }
            _ => put(&[id]),
        }
    }
    len
}

/// Fingerprints of the structures seen lately. A crowd's phones are a few
/// dozen models, and a phone that takes a new MAC every scan made keying
/// its structure (four SHA-256 blocks) a tenth of a crowd's replay (issue
/// 20). Direct-mapped like the detector's id cache: a slot holds the last
/// structure that hashed to it, compared byte for byte, so the cache never
/// changes a fingerprint. Memory only; the structure holds no SSID.
pub struct FingerprintCache {
    slots: Box<[Option<Slot>]>,
}

/// A structure and its fingerprint.
type Slot = (Box<[u8]>, u64);

impl FingerprintCache {
    const SLOTS: usize = 256;

    pub fn new() -> FingerprintCache {
        FingerprintCache {
            slots: vec![None; Self::SLOTS].into_boxed_slice(),
        }
    }

    /// Forgets every fingerprint: after a key rotation they are the old key's.
    pub fn clear(&mut self) {
        self.slots.fill(None);
    }

    /// `fingerprint(keyer, elements)`, from the cache when it holds it.
    pub fn get<'a>(
        &mut self,
        keyer: &Keyer,
        elements: impl Iterator<Item = (u8, &'a [u8])>,
    ) -> u64 {
        let mut buf = [0u8; MAX];
        let len = structure(elements, &mut buf);
        let bytes = &buf[..len];
        // Only spreads structures over slots; equality decides. Word by
        // word: FNV-1a's byte at a time was a quarter of the reader's
        // parsing under a crowd (perf, issue 20).
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(bytes);
        let slot = &mut self.slots[(hash >> 56) as usize % Self::SLOTS];
        match slot {
            Some((s, fp)) if **s == *bytes => *fp,
            _ => {
                let fp = keyer.fingerprint(bytes);
                *slot = Some((bytes.into(), fp));
                fp
            }
        }
    }
}

impl Default for FingerprintCache {
    fn default() -> Self {
        FingerprintCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyer() -> Keyer {
        Keyer::new(&[7; 32])
    }

    #[test]
    fn the_ssid_and_channel_do_not_change_it_capabilities_do() {
        let k = keyer();
        let a: &[(u8, &[u8])] = &[(0, b"home"), (1, &[2, 4]), (3, &[6]), (45, &[1, 2])];
        let b: &[(u8, &[u8])] = &[(0, b""), (1, &[2, 4]), (3, &[11]), (45, &[1, 2])];
        let c: &[(u8, &[u8])] = &[(0, b""), (1, &[2, 4]), (3, &[11]), (45, &[1, 3])];
        let d: &[(u8, &[u8])] = &[(1, &[2, 4]), (45, &[1, 2]), (3, &[11])];
        let fp = |e: &[(u8, &[u8])]| fingerprint(&k, e.iter().copied());
        assert_eq!(fp(a), fp(b));
        assert_ne!(fp(b), fp(c));
        assert_eq!(fp(b), fp(d), "the channel's place does not matter");
        let reordered: &[(u8, &[u8])] = &[(45, &[1, 2]), (1, &[2, 4])];
        assert_ne!(fp(b), fp(reordered), "the order of elements does");
    }

    #[test]
    fn the_cache_gives_what_keying_gives() {
        let (k, other) = (keyer(), Keyer::new(&[8; 32]));
        let mut cache = FingerprintCache::new();
        let structures: Vec<Vec<(u8, Vec<u8>)>> = (0..600u32)
            .map(|i| vec![(1, vec![2, 4]), (45, i.to_le_bytes().to_vec())])
            .collect();
        fn elements(e: &[(u8, Vec<u8>)]) -> Vec<(u8, &[u8])> {
            e.iter().map(|(id, b)| (*id, b.as_slice())).collect()
        }
        for round in 0..2 {
            for e in &structures {
                let e = elements(e);
                assert_eq!(
                    cache.get(&k, e.iter().copied()),
                    fingerprint(&k, e.iter().copied()),
                    "round {round}"
                );
            }
        }
        cache.clear();
        let e = elements(&structures[0]);
        assert_eq!(
            cache.get(&other, e.iter().copied()),
            fingerprint(&other, e.iter().copied())
        );
    }

    #[test]
    fn keyed_vendor_payloads_ignored_and_long_ones_cut() {
        let k = keyer();
        let v1: &[(u8, &[u8])] = &[(221, &[0, 0x50, 0xf2, 4, 1, 2, 3])];
        let v2: &[(u8, &[u8])] = &[(221, &[0, 0x50, 0xf2, 4, 9, 9, 9])];
        assert_eq!(
            fingerprint(&k, v1.iter().copied()),
            fingerprint(&k, v2.iter().copied())
        );
        assert_ne!(
            fingerprint(&k, v1.iter().copied()),
            fingerprint(&Keyer::new(&[8; 32]), v1.iter().copied()),
            "another deployment key, another fingerprint"
        );
        let long = [0xaau8; 255];
        let many: Vec<(u8, &[u8])> = (0..8).map(|_| (255u8, &long[..])).collect();
        let _ = fingerprint(&k, many.into_iter());
    }
}
