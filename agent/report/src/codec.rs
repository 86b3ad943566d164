//! How footfall stores a value in sled, agent and gateway alike:
//! `[format version][payload][CRC-32 of both, little-endian]`. sled is beta
//! software and disks fail: a value that fails its checksum or carries
//! another version is an error, never a default.

/// Wraps `payload` for storage.
pub fn seal(version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(version);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The payload of a sealed value, or what is wrong with it.
pub fn open(version: u8, bytes: &[u8]) -> Result<&[u8], String> {
    match open_any(bytes)? {
        (v, payload) if v == version => Ok(payload),
        (v, _) => Err(format!("value version {v} is not {version}")),
    }
}

/// The version and payload of a sealed value, for a store that reads the
/// formats of older versions as they are instead of rewriting them.
pub fn open_any(bytes: &[u8]) -> Result<(u8, &[u8]), String> {
    if bytes.len() < 5 {
        return Err(format!("value of {} bytes is too short", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch".into());
    }
    Ok((body[0], &body[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let v = seal(1, b"hello");
        assert_eq!(open(1, &v).unwrap(), b"hello");
        assert_eq!(open(2, &v).unwrap_err(), "value version 1 is not 2");
        let mut bad = v.clone();
        bad[2] ^= 1;
        assert_eq!(open(1, &bad).unwrap_err(), "checksum mismatch");
        assert!(open(1, &v[..3]).is_err());
        assert_eq!(open_any(&v).unwrap(), (1, &b"hello"[..]));
    }
}
