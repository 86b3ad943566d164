//! The privacy audit of every test that feeds MACs in: which MACs a
//! capture holds, and whether any of them is in bytes the system wrote.
//! It lives with the tests, not in the agent: the product never needs to
//! look for a MAC.

use std::collections::HashSet;
use std::path::Path;

/// Audit: finds any of `macs` in `bytes`, as raw bytes or as text (`aa:bb:..`,
/// `aa-bb-..`, `aabbcc..`, either case), and says where. The privacy tests
/// run it over everything the agent, broker and gateway wrote.
pub fn find_mac(bytes: &[u8], macs: &HashSet<[u8; 6]>) -> Option<String> {
    for (i, w) in bytes.windows(6).enumerate() {
        if macs.contains(<&[u8; 6]>::try_from(w).expect("windows of 6")) {
            return Some(format!("raw bytes at {i}"));
        }
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    for i in 0..bytes.len() {
        for (len, sep) in [(17usize, true), (12, false)] {
            let Some(s) = bytes.get(i..i + len) else {
                continue;
            };
            if sep && !(2..17).step_by(3).all(|j| s[j] == b':' || s[j] == b'-') {
                continue;
            }
            let digits = s
                .iter()
                .enumerate()
                .filter(|(j, _)| !sep || j % 3 != 2)
                .map(|(_, &c)| hex(c));
            let Some(n) = digits.collect::<Option<Vec<u8>>>() else {
                continue;
            };
            let mac: [u8; 6] = std::array::from_fn(|k| n[2 * k] << 4 | n[2 * k + 1]);
            if macs.contains(&mac) {
                return Some(format!("text at {i}"));
            }
        }
    }
    None
}

/// Each frame of a radiotap capture after its radiotap header, for the
/// audits below; frames whose header does not parse are skipped.
fn frames_after_radiotap(
    capture: &Path,
    mut each: impl FnMut(&[u8]),
) -> Result<(), footfall_agent::wire::pcapfile::CaptureError> {
    let mut cap = footfall_agent::wire::pcapfile::CaptureFile::open(capture)?;
    while let Some(rec) = cap.next_record() {
        let rec = rec?;
        if let Ok(h) = footfall_agent::wire::radiotap::Header::new_checked(rec.data) {
            each(&rec.data[h.len()..]);
        }
    }
    Ok(())
}

/// Audit: every transmitter address in a radiotap capture, the MACs to look
/// for with `find_mac`. Kept in memory only.
pub fn transmitters(
    capture: &Path,
) -> Result<HashSet<[u8; 6]>, footfall_agent::wire::pcapfile::CaptureError> {
    let mut macs = HashSet::new();
    frames_after_radiotap(capture, |frame| {
        if let Some(mac) = frame.get(10..16) {
            macs.insert(mac.try_into().expect("6 bytes"));
        }
    })?;
    Ok(macs)
}

/// Audit: the SSIDs and the longer information-element bodies (8 bytes or
/// more: capabilities, vendor data) of every probe request in a radiotap
/// capture, the bytes SPEC §8's fingerprint reads and must never write.
pub fn element_bytes(
    capture: &Path,
) -> Result<HashSet<Vec<u8>>, footfall_agent::wire::pcapfile::CaptureError> {
    use footfall_agent::wire::ieee80211::ProbeRequest;
    let mut found = HashSet::new();
    frames_after_radiotap(capture, |frame| {
        if let Ok(p) = ProbeRequest::new_checked(frame) {
            for (id, body) in p.elements() {
                if (id == 0 && !body.is_empty()) || body.len() >= 8 {
                    found.insert(body.to_vec());
                }
            }
        }
    })?;
    Ok(found)
}

/// Every file under `dir`, for the audits to search.
pub fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Audit: any of `needles` in `bytes`, as raw bytes or as lower-case
/// hex, and where. One pass per needle length, each window looked up in a
/// set: the state files are megabytes and the needles thousands.
pub fn find_bytes(bytes: &[u8], needles: &HashSet<Vec<u8>>) -> Option<String> {
    let hexed: HashSet<Vec<u8>> = needles
        .iter()
        .map(|n| {
            n.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    for (set, how) in [(needles, "raw bytes"), (&hexed, "hex")] {
        let lengths: std::collections::BTreeSet<usize> = set.iter().map(Vec::len).collect();
        for len in lengths {
            if let Some(i) = bytes.windows(len).position(|w| set.contains(w)) {
                return Some(format!("{len} bytes as {how} at {i}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_mac_sees_raw_and_text_forms() {
        let m = [0x3c, 0x22, 0xfb, 0x0a, 0x0b, 0x0c];
        let set: HashSet<[u8; 6]> = [m].into_iter().collect();
        assert!(find_mac(b"nothing here 3c:22:fb:0a:0b:0d", &set).is_none());
        assert!(find_mac(b"x 3C-22-FB-0A-0B-0C y", &set).is_some());
        assert!(find_mac(b"x3c22fb0a0b0cy", &set).is_some());
        let mut raw = b"ab".to_vec();
        raw.extend_from_slice(&m);
        assert_eq!(find_mac(&raw, &set).as_deref(), Some("raw bytes at 2"));
    }
}
