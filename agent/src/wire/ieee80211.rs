//! The IEEE 802.11 MAC header, as far as SPEC §1 and §8 need it: frame
//! control, the transmitter address and the sequence number of a probe
//! request, and its information elements as (id, body) slices.
//!
//! The elements are only ever read in place, by `people::fingerprint`, which
//! skips the SSID and keys a hash of the rest: no element's bytes are copied
//! out of the frame (SPEC §2).

use super::WireError;

mod field {
    use std::ops::Range;
    pub const FRAME_CONTROL: usize = 0;
    pub const ADDR2: Range<usize> = 10..16;
    pub const SEQ_CTRL: Range<usize> = 22..24;
    /// A management header: FC, duration, three addresses, sequence control.
    pub const MGMT_HEADER_LEN: usize = SEQ_CTRL.end;
}

pub use field::MGMT_HEADER_LEN;

/// Frame control byte 0 of a probe request: version 0, type 0, subtype 4.
const PROBE_REQUEST_FC0: u8 = 0x40;

/// A 48-bit MAC address. It deliberately has no `Debug` or `Display`: a MAC
/// must never reach a log line or an error (SPEC §2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Group (multicast/broadcast) bit: such a transmitter is not a phone.
    pub fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Locally administered bit: the phone randomizes its address.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

/// What the first frame-control byte says about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ProbeRequest,
    Other,
}

/// Classifies a frame from its first byte; `None` when there is no byte.
pub fn kind(frame: &[u8]) -> Option<Kind> {
    frame.get(field::FRAME_CONTROL).map(|&fc0| {
        if fc0 == PROBE_REQUEST_FC0 {
            Kind::ProbeRequest
        } else {
            Kind::Other
        }
    })
}

/// The transmitter address of `frame` if its first byte says probe
/// request, without checking the rest of its header: for a hint that may
/// be wrong (`Detector::prefetch`), never for an id.
pub fn probe_transmitter_unchecked(frame: &[u8]) -> Option<&[u8; 6]> {
    if kind(frame)? != Kind::ProbeRequest {
        return None;
    }
    frame.get(field::ADDR2)?.try_into().ok()
}

/// A probe request whose management header has been checked.
#[derive(Debug, Clone, Copy)]
pub struct ProbeRequest<'a> {
    buf: &'a [u8],
}

impl<'a> ProbeRequest<'a> {
    /// `buf` is the 802.11 frame without any FCS. After `Ok`, no accessor panics.
    pub fn new_checked(buf: &'a [u8]) -> Result<ProbeRequest<'a>, WireError> {
        if buf.len() < field::MGMT_HEADER_LEN {
            return Err(WireError::Truncated {
                need: field::MGMT_HEADER_LEN,
                got: buf.len(),
            });
        }
        if buf[field::FRAME_CONTROL] != PROBE_REQUEST_FC0 {
            return Err(WireError::Malformed("not a probe request"));
        }
        Ok(ProbeRequest { buf })
    }

    /// The transmitter (SPEC §1: the device).
    pub fn transmitter(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf[field::ADDR2]);
        Mac(m)
    }

    /// The 12-bit sequence number (the fragment number dropped).
    pub fn seq(&self) -> u16 {
        u16::from_le_bytes([
            self.buf[field::SEQ_CTRL.start],
            self.buf[field::SEQ_CTRL.start + 1],
        ]) >> 4
    }

    /// The information elements after the header, in frame order. A last
    /// element cut short by the capture is not returned.
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            rest: &self.buf[field::MGMT_HEADER_LEN..],
        }
    }
}

/// Iterator over (element id, element body) of a management frame body.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&id, rest) = self.rest.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let Some((body, rest)) = rest.split_at_checked(usize::from(len)) else {
            self.rest = &[];
            return None;
        };
        self.rest = rest;
        Some((id, body))
    }
}

/// Builds probe-request and other management frames for tests and `simulate`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Frame control byte 0 (0x40 probe request, 0x80 beacon, ...).
    pub fc0: u8,
    pub addr1: [u8; 6],
    pub addr2: [u8; 6],
    pub addr3: [u8; 6],
    pub seq: u16,
}

impl Repr {
    pub fn probe_request(transmitter: [u8; 6], seq: u16) -> Repr {
        Repr {
            fc0: PROBE_REQUEST_FC0,
            addr1: [0xff; 6],
            addr2: transmitter,
            addr3: [0xff; 6],
            seq,
        }
    }

    /// The header followed by a wildcard SSID and a small rates element.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.emit_with(b"", &[(1, &[0x02, 0x04, 0x0b, 0x16])], out);
    }

    /// The header, the SSID element (empty: wildcard), then `elements`.
    pub fn emit_with(&self, ssid: &[u8], elements: &[(u8, &[u8])], out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.fc0, 0, 0, 0]);
        out.extend_from_slice(&self.addr1);
        out.extend_from_slice(&self.addr2);
        out.extend_from_slice(&self.addr3);
        out.extend_from_slice(&(self.seq << 4).to_le_bytes());
        for (id, body) in std::iter::once((0u8, ssid)).chain(elements.iter().copied()) {
            out.push(id);
            out.push(body.len().min(255) as u8);
            out.extend_from_slice(&body[..body.len().min(255)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_transmitter_of_probe_request() {
        let mut b = Vec::new();
        Repr::probe_request([0x02, 1, 2, 3, 4, 5], 9).emit(&mut b);
        let p = ProbeRequest::new_checked(&b).unwrap();
        assert!(p.transmitter() == Mac([0x02, 1, 2, 3, 4, 5]));
        assert!(p.transmitter().is_local());
        assert!(!p.transmitter().is_group());
        assert_eq!(kind(&b), Some(Kind::ProbeRequest));
        assert!(matches!(
            ProbeRequest::new_checked(&b[..23]),
            Err(WireError::Truncated { need: 24, got: 23 })
        ));
    }

    #[test]
    fn sequence_number_and_elements() {
        let mut b = Vec::new();
        Repr::probe_request([0x02, 1, 2, 3, 4, 5], 0xabc).emit(&mut b);
        let p = ProbeRequest::new_checked(&b).unwrap();
        assert_eq!(p.seq(), 0xabc);
        let ids: Vec<(u8, usize)> = p.elements().map(|(id, body)| (id, body.len())).collect();
        assert_eq!(ids, [(0, 0), (1, 4)]);
        // A last element cut short ends the list without a panic.
        b.extend_from_slice(&[45, 26, 1, 2]);
        let p = ProbeRequest::new_checked(&b).unwrap();
        assert_eq!(p.elements().count(), 2);
    }

    #[test]
    fn other_versions_and_types_are_not_probe_requests() {
        for fc0 in [0x41u8, 0x43, 0x80, 0x48, 0x50] {
            assert_eq!(kind(&[fc0]), Some(Kind::Other), "{fc0:#x}");
        }
        assert_eq!(kind(&[]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ProbeRequest::new_checked(&bytes) {
                let _ = p.transmitter();
                let _ = p.seq();
                let _ = p.elements().count();
            }
        }

        /// The unchecked transmitter is the checked one wherever a probe
        /// request parses, and none where the first byte is another kind.
        #[test]
        fn unchecked_transmitter_agrees(mut bytes in proptest::collection::vec(any::<u8>(), 0..64), probe in any::<bool>()) {
            if probe && !bytes.is_empty() {
                bytes[0] = PROBE_REQUEST_FC0;
            }
            let unchecked = probe_transmitter_unchecked(&bytes).copied();
            if let Ok(p) = ProbeRequest::new_checked(&bytes) {
                prop_assert!(unchecked == Some(p.transmitter().0));
            }
            if kind(&bytes) != Some(Kind::ProbeRequest) {
                prop_assert!(unchecked.is_none());
            }
        }
    }
}
