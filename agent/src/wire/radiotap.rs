//! Radiotap (link type 127), parsed by the book: <https://www.radiotap.org>.
//!
//! `Header::new_checked` walks the present bitmaps once: extended bitmaps
//! (bit 31), namespace switches (bit 29 back to radiotap, bit 30 to a vendor
//! namespace, skipped by its `skip_length`), and each field's alignment,
//! which is relative to the start of the header. It keeps the offsets of the
//! only two fields SPEC §1 needs: Flags and the *first* dBm antenna signal.
//!
//! Walking stops at a field whose size is not known (a newer standard field,
//! or TLVs at bit 28): the fields before it have been located, and their
//! position does not depend on what follows.

use super::{read_u16_le, read_u32_le, WireError};

mod field {
    pub const VERSION: usize = 0;
    pub const LEN: usize = 2;
    pub const PRESENT: usize = 4;
    pub const FIRST_FIELD: usize = 8;
}

/// Flags field bits (radiotap field 1).
pub mod flags {
    /// The frame includes the 4-byte FCS at its end.
    pub const FCS_AT_END: u8 = 0x10;
    /// The frame failed its FCS check.
    pub const BAD_FCS: u8 = 0x40;
}

const EXT: u32 = 1 << 31;
const NS_RADIOTAP: u32 = 1 << 29;
const NS_VENDOR: u32 = 1 << 30;
const TLV: u32 = 28;
const FIELD_FLAGS: u32 = 1;
const FIELD_DBM_ANTSIGNAL: u32 = 5;

/// (alignment, size) of standard radiotap fields 0..=27.
const FIELDS: [(u8, u8); 28] = [
    (8, 8),  // 0 TSFT
    (1, 1),  // 1 Flags
    (1, 1),  // 2 Rate
    (2, 4),  // 3 Channel
    (2, 2),  // 4 FHSS
    (1, 1),  // 5 dBm antenna signal
    (1, 1),  // 6 dBm antenna noise
    (2, 2),  // 7 Lock quality
    (2, 2),  // 8 TX attenuation
    (2, 2),  // 9 dB TX attenuation
    (1, 1),  // 10 dBm TX power
    (1, 1),  // 11 Antenna
    (1, 1),  // 12 dB antenna signal
    (1, 1),  // 13 dB antenna noise
    (2, 2),  // 14 RX flags
    (2, 2),  // 15 TX flags
    (1, 1),  // 16 RTS retries
    (1, 1),  // 17 data retries
    (4, 8),  // 18 XChannel
    (1, 3),  // 19 MCS
    (4, 8),  // 20 A-MPDU status
    (2, 12), // 21 VHT
    (8, 12), // 22 timestamp
    (2, 12), // 23 HE
    (2, 12), // 24 HE-MU
    (2, 6),  // 25 HE-MU-other-user
    (1, 1),  // 26 0-length PSDU
    (2, 4),  // 27 L-SIG
];

/// A radiotap header that has been checked: its length lies inside the
/// buffer and every field located lies inside that length.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    buf: &'a [u8],
    len: usize,
    flags_at: Option<usize>,
    signal_at: Option<usize>,
}

/// The layouts of the last headers walked. A card writes the same present
/// bitmaps frame after frame, and where the fields lie depends only on
/// them, the length and vendor skip lengths; so a header whose bytes up to
/// its first field equal a remembered one's, with no vendor namespace, has
/// its layout. Four, for captures that mix a few layouts (a card whose
/// frames carry TSFT or not, `simulate`'s four kinds of phone). The walk
/// was 150 of a frame's instructions (callgrind, issue 7).
#[derive(Debug, Clone, Default)]
pub struct LayoutCache {
    layouts: [Layout; 4],
    /// The slot the next new layout takes.
    next: usize,
    /// The slot that matched last, tried first: a capture is mostly one
    /// layout.
    last: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    /// The version, length and first present word (8 bytes); 0 is an
    /// empty slot, as no header has length 0.
    head: u64,
    /// Further present words, `more` of them.
    words: [u32; Layout::MORE_WORDS],
    more: usize,
    len: usize,
    flags_at: Option<usize>,
    signal_at: Option<usize>,
}

impl Layout {
    const MORE_WORDS: usize = 4;

    /// Whether `buf` starts with this layout's header bytes.
    #[inline(always)]
    fn fits(&self, head: u64, buf: &[u8]) -> bool {
        head == self.head
            && buf.len() >= self.len
            && (0..self.more).all(|i| read_u32_le(buf, 8 + 4 * i) == self.words[i])
    }
}

impl<'a> Header<'a> {
    /// `new_checked` through `cache`: the same result, and the same errors.
    pub fn new_cached(buf: &'a [u8], cache: &mut LayoutCache) -> Result<Header<'a>, WireError> {
        let Some(head) = buf.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) else {
            return Header::new_checked(buf);
        };
        // A layout's `len` covers its present words, so `fits` reads
        // inside `buf`.
        let hit = if cache.layouts[cache.last].fits(head, buf) {
            Some(cache.last)
        } else {
            cache.layouts.iter().position(|l| l.fits(head, buf))
        };
        if let Some(i) = hit {
            cache.last = i;
            let l = &cache.layouts[i];
            return Ok(Header {
                buf,
                len: l.len,
                flags_at: l.flags_at,
                signal_at: l.signal_at,
            });
        }
        let (h, reusable) = Header::walk(buf)?;
        let more = reusable.map(|end| (end - 8) / 4);
        if let Some(more) = more.filter(|&m| m <= Layout::MORE_WORDS) {
            let l = &mut cache.layouts[cache.next];
            l.head = head;
            for (i, w) in l.words.iter_mut().take(more).enumerate() {
                *w = read_u32_le(buf, 8 + 4 * i);
            }
            l.more = more;
            l.len = h.len;
            l.flags_at = h.flags_at;
            l.signal_at = h.signal_at;
            cache.next = (cache.next + 1) % cache.layouts.len();
        }
        Ok(h)
    }

    /// The length the header at the start of `buf` says it has, not
    /// validated: for a hint that may be wrong (`Detector::prefetch`).
    pub fn len_unchecked(buf: &[u8]) -> Option<usize> {
        (buf.len() >= field::LEN + 2).then(|| usize::from(read_u16_le(buf, field::LEN)))
    }

    /// Validates the header at the start of `buf` (SPEC §1.2).
    pub fn new_checked(buf: &'a [u8]) -> Result<Header<'a>, WireError> {
        Header::walk(buf).map(|(h, _)| h)
    }

    /// The header, and where its present words end when nothing after them
    /// (a vendor namespace) changes the layout.
    fn walk(buf: &'a [u8]) -> Result<(Header<'a>, Option<usize>), WireError> {
        if buf.len() < field::FIRST_FIELD {
            return Err(WireError::Truncated {
                need: field::FIRST_FIELD,
                got: buf.len(),
            });
        }
        if buf[field::VERSION] != 0 {
            return Err(WireError::Version(buf[field::VERSION]));
        }
        let len = usize::from(read_u16_le(buf, field::LEN));
        if len > buf.len() {
            return Err(WireError::Truncated {
                need: len,
                got: buf.len(),
            });
        }
        if len < field::FIRST_FIELD {
            return Err(WireError::Malformed(
                "radiotap length shorter than its fixed part",
            ));
        }
        let hdr = &buf[..len];

        // The present words are consecutive; data starts after the last one.
        let mut words_end = field::PRESENT + 4;
        while read_u32_le(hdr, words_end - 4) & EXT != 0 {
            words_end += 4;
            if words_end > len {
                return Err(WireError::Malformed(
                    "present bitmaps run past the radiotap length",
                ));
            }
        }

        let mut out = Header {
            buf,
            len,
            flags_at: None,
            signal_at: None,
        };
        let mut off = words_end;
        let mut reusable = Some(words_end);
        let mut in_vendor = false;
        let mut bit_base = 0u32;
        let mut word_at = field::PRESENT;
        'words: while word_at < words_end {
            let word = read_u32_le(hdr, word_at);
            word_at += 4;
            if !in_vendor {
                // Only the set bits, lowest first: most headers have a
                // handful of 29, and testing each bit was a third of the
                // parse (issue 7).
                let mut bits = word & ((1 << 29) - 1);
                while bits != 0 {
                    let bit = bits.trailing_zeros();
                    bits &= bits - 1;
                    let index = bit_base + bit;
                    if index == TLV || index as usize >= FIELDS.len() {
                        // Unknown size: nothing after this can be located.
                        break 'words;
                    }
                    let (align, size) = FIELDS[index as usize];
                    let (align, size) = (usize::from(align), usize::from(size));
                    off = off.next_multiple_of(align);
                    if off + size > len {
                        return Err(WireError::Malformed(
                            "a present field runs past the radiotap length",
                        ));
                    }
                    if index == FIELD_FLAGS && out.flags_at.is_none() {
                        out.flags_at = Some(off);
                    }
                    if index == FIELD_DBM_ANTSIGNAL && out.signal_at.is_none() {
                        out.signal_at = Some(off);
                    }
                    off += size;
                }
            }
            if word & EXT == 0 {
                break;
            }
            if word & NS_RADIOTAP != 0 {
                in_vendor = false;
                bit_base = 0;
            } else if word & NS_VENDOR != 0 {
                // OUI (3), sub-namespace (1), skip_length (2), 2-aligned,
                // where the next field would be; then skip its data.
                off = off.next_multiple_of(2);
                if off + 6 > len {
                    return Err(WireError::Malformed(
                        "vendor namespace header runs past the radiotap length",
                    ));
                }
                let skip = usize::from(read_u16_le(hdr, off + 4));
                off += 6 + skip;
                if off > len {
                    return Err(WireError::Malformed(
                        "vendor namespace data runs past the radiotap length",
                    ));
                }
                in_vendor = true;
                reusable = None;
                bit_base = 0;
            } else {
                bit_base += 32;
            }
        }
        Ok((out, reusable))
    }

    /// Length of the radiotap header: the 802.11 frame starts here.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The Flags field, when present.
    pub fn flags(&self) -> Option<u8> {
        self.flags_at.map(|at| self.buf[at])
    }

    /// SPEC §1.5: the first dBm antenna signal in the header.
    pub fn dbm_signal(&self) -> Option<i8> {
        self.signal_at.map(|at| self.buf[at] as i8)
    }
}

/// Builds radiotap headers for tests and `simulate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repr {
    pub tsft: Option<u64>,
    pub flags: Option<u8>,
    pub rate: Option<u8>,
    pub channel: Option<(u16, u16)>,
    pub dbm_signal: Option<i8>,
    /// Extra per-antenna signals, each in its own radiotap namespace after
    /// the first (the way multi-antenna drivers write them), with antenna
    /// index.
    pub antennas: &'static [(i8, u8)],
}

impl Repr {
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut present = 0u32;
        if self.tsft.is_some() {
            present |= 1 << 0;
        }
        if self.flags.is_some() {
            present |= 1 << 1;
        }
        if self.rate.is_some() {
            present |= 1 << 2;
        }
        if self.channel.is_some() {
            present |= 1 << 3;
        }
        if self.dbm_signal.is_some() {
            present |= 1 << 5;
        }
        let mut words = vec![present];
        for _ in self.antennas {
            let last = words.len() - 1;
            words[last] |= EXT | NS_RADIOTAP;
            words.push((1 << 5) | (1 << 11));
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        for w in &words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let pad_to = |out: &mut Vec<u8>, align: usize| {
            while !(out.len() - start).is_multiple_of(align) {
                out.push(0);
            }
        };
        if let Some(t) = self.tsft {
            pad_to(out, 8);
            out.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(f) = self.flags {
            out.push(f);
        }
        if let Some(r) = self.rate {
            out.push(r);
        }
        if let Some((freq, chflags)) = self.channel {
            pad_to(out, 2);
            out.extend_from_slice(&freq.to_le_bytes());
            out.extend_from_slice(&chflags.to_le_bytes());
        }
        if let Some(s) = self.dbm_signal {
            out.push(s as u8);
        }
        for &(sig, ant) in self.antennas {
            out.push(sig as u8);
            out.push(ant);
        }
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_flags_and_first_signal_across_namespaces() {
        let repr = Repr {
            tsft: Some(42),
            flags: Some(flags::FCS_AT_END),
            rate: Some(2),
            channel: Some((2437, 0xa0)),
            dbm_signal: Some(-55),
            antennas: &[(-60, 0), (-52, 1)],
        };
        let mut b = Vec::new();
        repr.emit(&mut b);
        let h = Header::new_checked(&b).unwrap();
        assert_eq!(h.len(), b.len());
        assert_eq!(h.flags(), Some(flags::FCS_AT_END));
        assert_eq!(h.dbm_signal(), Some(-55));
    }

    #[test]
    fn vendor_namespace_is_skipped() {
        // present: flags, ext+vendor; vendor word: bit 0; then radiotap again?
        // Layout: word0 = flags | EXT | NS_VENDOR, word1 = 1 | EXT | NS_RADIOTAP,
        // word2 = dbm signal.
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&((1u32 << 1) | EXT | NS_VENDOR).to_le_bytes());
        b.extend_from_slice(&(1u32 | EXT | NS_RADIOTAP).to_le_bytes());
        b.extend_from_slice(&(1u32 << 5).to_le_bytes());
        b.push(0x00); // flags at 20
        b.push(0); // pad to 2
        b.extend_from_slice(&[0x00, 0x11, 0x22, 0x01, 3, 0]); // OUI, subns, skip 3
        b.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        b.push(-40i8 as u8);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_le_bytes());
        let h = Header::new_checked(&b).unwrap();
        assert_eq!(h.flags(), Some(0));
        assert_eq!(h.dbm_signal(), Some(-40));
    }

    #[test]
    fn rejects_bad_versions_and_overruns() {
        assert!(matches!(
            Header::new_checked(&[1, 0, 8, 0, 0, 0, 0, 0]),
            Err(WireError::Version(1))
        ));
        assert!(matches!(
            Header::new_checked(&[0, 0, 9, 0, 0, 0, 0, 0]),
            Err(WireError::Truncated { .. })
        ));
        // Present says TSFT, but the length leaves no room for it.
        assert!(matches!(
            Header::new_checked(&[0, 0, 8, 0, 1, 0, 0, 0]),
            Err(WireError::Malformed(_))
        ));
        // An extended bitmap that never ends.
        let b = [0, 0, 12, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x80];
        assert!(matches!(
            Header::new_checked(&b),
            Err(WireError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(h) = Header::new_checked(&bytes) {
                let _ = (h.flags(), h.dbm_signal(), h.len());
                prop_assert!(h.len() <= bytes.len());
                prop_assert_eq!(Header::len_unchecked(&bytes), Some(h.len()));
            }
        }

        /// Any sequence of headers, valid or not, parses through the cache
        /// as it does without: same length, fields and errors.
        #[test]
        fn the_layout_cache_changes_nothing(
            headers in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..40),
                    (any::<Option<u8>>(), any::<Option<i8>>(), any::<bool>(), 0usize..4).prop_map(
                        |(flags, dbm_signal, tsft, cut)| {
                            let mut b = Vec::new();
                            Repr {
                                flags,
                                dbm_signal,
                                tsft: tsft.then_some(7),
                                ..Repr::default()
                            }
                            .emit(&mut b);
                            b.truncate(b.len().saturating_sub(cut));
                            b
                        }
                    ),
                ],
                1..12,
            ),
        ) {
            let mut cache = LayoutCache::default();
            let view = |r: Result<Header, WireError>| r.map(|h| (h.len(), h.flags(), h.dbm_signal()));
            for b in headers.iter().chain(&headers) {
                prop_assert_eq!(
                    view(Header::new_cached(b, &mut cache)),
                    view(Header::new_checked(b))
                );
            }
        }

        #[test]
        fn parse_of_emit_is_identity(
            tsft in proptest::option::of(any::<u64>()),
            flags in proptest::option::of(any::<u8>()),
            rate in proptest::option::of(any::<u8>()),
            channel in proptest::option::of(any::<(u16, u16)>()),
            sig in proptest::option::of(any::<i8>()),
        ) {
            let r = Repr { tsft, flags, rate, channel, dbm_signal: sig, antennas: &[] };
            let mut b = Vec::new();
            r.emit(&mut b);
            b.extend_from_slice(&[0x40, 0, 0, 0]);
            let h = Header::new_checked(&b).unwrap();
            prop_assert_eq!(h.flags(), flags);
            prop_assert_eq!(h.dbm_signal(), sig);
            prop_assert_eq!(h.len(), b.len() - 4);
        }
    }
}
