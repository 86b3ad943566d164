//! PPI, the Per-Packet Information header (link type 192), wrapping 802.11.
//! SPEC §1.5: the signal is the 802.11-common field's dBm antenna signal.
//! The 802.11-common flags carry "FCS present" and "FCS invalid".

use super::{read_u16_le, read_u32_le, WireError};

const DLT_IEEE802_11: u32 = 105;
const FIELD_80211_COMMON: u16 = 2;
const COMMON_LEN: usize = 20;
const FLAG_ALIGNED: u8 = 0x01;

/// 802.11-common flags.
pub mod flags {
    pub const FCS_PRESENT: u16 = 0x0001;
    pub const FCS_INVALID: u16 = 0x0004;
}

#[derive(Debug, Clone, Copy)]
pub struct Header {
    len: usize,
    common_flags: Option<u16>,
    dbm_signal: Option<i8>,
}

impl Header {
    pub fn new_checked(buf: &[u8]) -> Result<Header, WireError> {
        if buf.len() < 8 {
            return Err(WireError::Truncated {
                need: 8,
                got: buf.len(),
            });
        }
        if buf[0] != 0 {
            return Err(WireError::Version(buf[0]));
        }
        let aligned = buf[1] & FLAG_ALIGNED != 0;
        let len = usize::from(read_u16_le(buf, 2));
        if len < 8 {
            return Err(WireError::Malformed(
                "PPI length shorter than its fixed part",
            ));
        }
        if len > buf.len() {
            return Err(WireError::Truncated {
                need: len,
                got: buf.len(),
            });
        }
        if read_u32_le(buf, 4) != DLT_IEEE802_11 {
            return Err(WireError::Malformed("PPI does not wrap 802.11"));
        }
        let mut out = Header {
            len,
            common_flags: None,
            dbm_signal: None,
        };
        let mut off = 8;
        while off + 4 <= len {
            let kind = read_u16_le(buf, off);
            let data_len = usize::from(read_u16_le(buf, off + 2));
            let data = off + 4;
            if data + data_len > len {
                return Err(WireError::Malformed("PPI field runs past the PPI length"));
            }
            if kind == FIELD_80211_COMMON && out.common_flags.is_none() {
                if data_len < COMMON_LEN {
                    return Err(WireError::Malformed("PPI 802.11-common field too short"));
                }
                out.common_flags = Some(read_u16_le(buf, data + 8));
                out.dbm_signal = Some(buf[data + 18] as i8);
            }
            off = data + data_len;
            if aligned {
                off = off.next_multiple_of(4);
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn common_flags(&self) -> Option<u16> {
        self.common_flags
    }

    pub fn dbm_signal(&self) -> Option<i8> {
        self.dbm_signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_common_field() {
        let mut b = vec![0, 0, 32, 0, 105, 0, 0, 0];
        b.extend_from_slice(&[2, 0, 20, 0]);
        let mut common = [0u8; 20];
        common[8] = flags::FCS_PRESENT as u8;
        common[18] = -47i8 as u8;
        b.extend_from_slice(&common);
        let h = Header::new_checked(&b).unwrap();
        assert_eq!(h.len(), 32);
        assert_eq!(h.dbm_signal(), Some(-47));
        assert_eq!(h.common_flags(), Some(flags::FCS_PRESENT));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(h) = Header::new_checked(&bytes) {
                prop_assert!(h.len() <= bytes.len());
            }
        }
    }
}
