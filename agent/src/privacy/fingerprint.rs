//! The probe's information elements as a fingerprint of the phone model and
//! its settings (SPEC §8 linking): which elements, in what order, and the
//! values of those that describe capabilities. Phones that rotate their MAC
//! keep these, so MACs of one phone share a fingerprint; two phones of one
//! model share it too, which is why a fingerprint is a cue, not an id.
//!
//! Privacy (SPEC §2): the SSID (element 0) is never read, and the channel
//! (element 3) is left out because it follows the channel hopper, not the
//! phone. The structure is gathered on the stack and keyed-hashed like a
//! device id (`Keyer::fingerprint`); no element byte outlives the frame.
//! It lives here, with the keyer, because it is the other keyed thing a
//! frame leaves the door as (`detect`).

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

/// The keyed fingerprint of a probe's elements.
pub fn fingerprint<'a>(keyer: &Keyer, elements: impl Iterator<Item = (u8, &'a [u8])>) -> u64 {
    let mut buf = [0u8; MAX];
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
    keyer.fingerprint(&buf[..len])
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
