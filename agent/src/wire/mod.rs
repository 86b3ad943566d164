//! Zero-copy readers for the link layers a monitor-mode capture can have.
//!
//! The contract, as in smoltcp: every `new_checked` validates lengths once;
//! after it returns `Ok`, no accessor can panic on any input. Nothing here
//! allocates per frame, copies a MAC out of the buffer except as a `[u8; 6]`
//! for hashing, or touches an SSID.

pub mod ieee80211;
pub mod linktype;
pub mod pcapfile;
pub mod ppi;
pub mod prism;
pub mod radiotap;

/// Why a frame could not be read. Variants carry the offsets involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: need {need} bytes, got {got}")]
    Truncated { need: usize, got: usize },
    #[error("unsupported header version {0}")]
    Version(u8),
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

pub(crate) fn read_u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn read_u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn read_u32_be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
