//! Prism (link type 119) and AVS (163) capture headers, as old Linux
//! drivers (wlan-ng, madwifi) wrote them. Link type 119 files may hold AVS
//! headers too, told apart by the AVS magic.
//!
//! Prism fields are in the capturing host's byte order; the header length
//! tells which. SPEC §1.5: the signal counts only when given in dBm: AVS
//! says so in `ssi_type`; Prism does not, so its `signal` item counts when it
//! is marked present and holds a plausible dBm value (-127..=0).

use super::{read_u32_be, read_u32_le, WireError};

const AVS_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const AVS_MAGIC: u32 = 0x8021_1000;
const AVS_SSI_TYPE_DBM: u32 = 2;
const PRISM_MIN_LEN: usize = 144;
/// DID of the Prism `signal` item: message code 0x0044 in the high bytes,
/// item 6 in the low ones (wlan-ng p80211 DIDs).
const PRISM_SIGNAL_ITEM: usize = 6;
const PRISM_ITEMS_AT: usize = 24;

/// A checked Prism or AVS header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    len: usize,
    dbm_signal: Option<i8>,
}

impl Header {
    /// For link type 119: AVS if the magic says so, else Prism.
    pub fn new_checked_119(buf: &[u8]) -> Result<Header, WireError> {
        if buf.len() >= 4 && read_u32_be(buf, 0) & AVS_MAGIC_MASK == AVS_MAGIC {
            return Header::new_checked_avs(buf);
        }
        if buf.len() < PRISM_MIN_LEN {
            return Err(WireError::Truncated {
                need: PRISM_MIN_LEN,
                got: buf.len(),
            });
        }
        let le = read_u32_le(buf, 4) as usize;
        type ReadU32 = fn(&[u8], usize) -> u32;
        let (len, read): (usize, ReadU32) = if (PRISM_MIN_LEN..=1024).contains(&le) {
            (le, read_u32_le)
        } else {
            (read_u32_be(buf, 4) as usize, read_u32_be)
        };
        if !(PRISM_MIN_LEN..=1024).contains(&len) {
            return Err(WireError::Malformed("prism header length out of range"));
        }
        if len > buf.len() {
            return Err(WireError::Truncated {
                need: len,
                got: buf.len(),
            });
        }
        // Items are 12 bytes: did u32, status u16, len u16, data u32.
        let item = PRISM_ITEMS_AT + 12 * PRISM_SIGNAL_ITEM;
        let status = u16::from_le_bytes([buf[item + 4], buf[item + 5]]);
        let value = read(buf, item + 8) as i32;
        let dbm_signal = (status == 0 && (-127..=0).contains(&value)).then_some(value as i8);
        Ok(Header { len, dbm_signal })
    }

    /// AVS v1/v2: a big-endian header of `length` bytes.
    pub fn new_checked_avs(buf: &[u8]) -> Result<Header, WireError> {
        const AVS_FIXED: usize = 64;
        if buf.len() < AVS_FIXED {
            return Err(WireError::Truncated {
                need: AVS_FIXED,
                got: buf.len(),
            });
        }
        if read_u32_be(buf, 0) & AVS_MAGIC_MASK != AVS_MAGIC {
            return Err(WireError::Malformed("AVS magic missing"));
        }
        let len = read_u32_be(buf, 4) as usize;
        if len < AVS_FIXED {
            return Err(WireError::Malformed(
                "AVS header length shorter than its fixed part",
            ));
        }
        if len > buf.len() {
            return Err(WireError::Truncated {
                need: len,
                got: buf.len(),
            });
        }
        let ssi_type = read_u32_be(buf, 44);
        let ssi_signal = read_u32_be(buf, 48) as i32;
        let dbm_signal = (ssi_type == AVS_SSI_TYPE_DBM && (-128..=127).contains(&ssi_signal))
            .then_some(ssi_signal as i8);
        Ok(Header { len, dbm_signal })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dbm_signal(&self) -> Option<i8> {
        self.dbm_signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn avs(signal: i32, ssi_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&0x8021_1001u32.to_be_bytes());
        b[4..8].copy_from_slice(&64u32.to_be_bytes());
        b[44..48].copy_from_slice(&ssi_type.to_be_bytes());
        b[48..52].copy_from_slice(&signal.to_be_bytes());
        b
    }

    #[test]
    fn avs_signal_only_in_dbm() {
        let h = Header::new_checked_avs(&avs(-61, 2)).unwrap();
        assert_eq!((h.len(), h.dbm_signal()), (64, Some(-61)));
        assert_eq!(
            Header::new_checked_avs(&avs(40, 1)).unwrap().dbm_signal(),
            None
        );
        assert_eq!(
            Header::new_checked_119(&avs(-61, 2)).unwrap().dbm_signal(),
            Some(-61)
        );
    }

    #[test]
    fn prism_shorter_than_header_is_truncated() {
        assert!(matches!(
            Header::new_checked_119(&[0u8; 100]),
            Err(WireError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for h in [Header::new_checked_119(&bytes), Header::new_checked_avs(&bytes)].into_iter().flatten() {
                prop_assert!(h.len() <= bytes.len());
            }
        }
    }
}
