//! The link types footfall reads (SPEC §1), with names for error messages.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// 105: bare 802.11, no signal.
    Ieee80211,
    /// 119: Prism (or AVS) header.
    Prism,
    /// 127: radiotap.
    Radiotap,
    /// 163: AVS header.
    Avs,
    /// 192: PPI.
    Ppi,
}

impl LinkType {
    /// The supported link type for a DLT number, or a message saying why not.
    pub fn from_dlt(dlt: i32) -> Result<LinkType, UnsupportedLinkType> {
        Ok(match dlt {
            105 => LinkType::Ieee80211,
            119 => LinkType::Prism,
            127 => LinkType::Radiotap,
            163 => LinkType::Avs,
            192 => LinkType::Ppi,
            other => return Err(UnsupportedLinkType(other)),
        })
    }

    pub fn dlt(self) -> i32 {
        match self {
            LinkType::Ieee80211 => 105,
            LinkType::Prism => 119,
            LinkType::Radiotap => 127,
            LinkType::Avs => 163,
            LinkType::Ppi => 192,
        }
    }
}

/// A capture whose frames are not 802.11 (an Ethernet capture, usually: the
/// card was not in monitor mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct UnsupportedLinkType(pub i32);

impl fmt::Display for UnsupportedLinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => " (BSD loopback)",
            1 => " (Ethernet)",
            101 => " (raw IP)",
            113 => " (Linux cooked)",
            276 => " (Linux cooked v2)",
            _ => "",
        };
        write!(
            f,
            "link type {}{name} is not 802.11 (footfall reads radiotap 127, 802.11 105, PPI 192, Prism 119, AVS 163); capture in monitor mode",
            self.0
        )
    }
}
