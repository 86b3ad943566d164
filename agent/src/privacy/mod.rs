//! Keyed device ids (SPEC §2): the only form in which a device leaves the
//! capture path. A MAC is turned into HMAC-SHA-256(key, MAC) truncated to
//! 128 bits as soon as a frame is parsed; nothing downstream sees the MAC.
//!
//! The key file holds 32 random bytes, is created with mode 0600 on first
//! start, and is refused when group or others can read it: whoever holds the
//! key can test a MAC against the ids.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac as _};
use serde::{Deserialize, Serialize};

use crate::wire::ieee80211::Mac;

pub mod fingerprint;
pub mod keys;
mod maybe;
mod runs;
mod table;

pub(crate) use maybe::Maybe;
pub(crate) use runs::{merge_in, Runs};
pub(crate) use table::prefetch;
pub use table::{At, IdTable};

pub use keys::Keys;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const KEY_LEN: usize = 32;

/// A device as footfall knows it: 128 bits of keyed hash. `Debug` and
/// `Display` show an 8-hex-digit prefix, enough to follow one in a log.
///
/// Aligned to 8 bytes, not 16 as a `u128`: every map, entry and record of
/// the counter holds one beside a smaller value, which padding to 16 made
/// a quarter larger (an entry of a window was 32 bytes for 20; issue 20).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(C, packed(8))]
pub struct DeviceId(pub u128);

impl DeviceId {
    /// 64 bits of the id: its halves folded together, so that the low
    /// half alone gives the id back from them (`store::spill_index`).
    /// Either half would do for HMAC outputs; folded, ids a test counts
    /// from 1 differ too.
    pub(crate) fn folded(self) -> u64 {
        (self.0 >> 64) as u64 ^ self.0 as u64
    }
}

/// Hashes a `DeviceId` by its own low 64 bits. The ids are HMAC outputs:
/// evenly spread and, without the key, impossible to aim at one bucket, so
/// SipHash adds nothing; it was a tenth of the hot path (issue 7).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a DeviceId (it hashes as one u128); kept correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64;
    }

    /// A part of an id (`store::spill_index`).
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;
/// A map keyed by device.
pub type IdMap<V> = std::collections::HashMap<DeviceId, V, IdBuildHasher>;
/// A set of devices.
pub type IdSet = std::collections::HashSet<DeviceId, IdBuildHasher>;

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev:{:08x}", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: key file must hold exactly {KEY_LEN} bytes, found {len}")]
    KeyLength { path: PathBuf, len: usize },
    #[error("{path}: {what}; give this mode a key file of its own ([privacy] key_file)")]
    KeyOfOtherMode { path: PathBuf, what: &'static str },
    #[error("{path}: key file is readable by others (mode {mode:04o}); run `chmod 600 {path}`")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("{path}:{line}: {what}")]
    OptOut {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

/// Turns MACs into device ids under one deployment key.
#[derive(Clone)]
pub struct Keyer {
    /// HMAC state with the key already absorbed: each id costs the two
    /// compressions of the message, not the two of the key.
    keyed: HmacSha256,
}

impl Keyer {
    pub fn new(key: &[u8; KEY_LEN]) -> Keyer {
        Keyer {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// SPEC §2: HMAC-SHA-256(key, MAC) truncated to its first 128 bits.
    pub fn id(&self, mac: &Mac) -> DeviceId {
        let mut h = self.keyed.clone();
        h.update(&mac.0);
        let out = h.finalize().into_bytes();
        let mut first = [0u8; 16];
        first.copy_from_slice(&out[..16]);
        DeviceId(u128::from_be_bytes(first))
    }

    /// SPEC §8: a probe's element structure (`people::fingerprint`) under
    /// the same key, in its own domain so that it can never equal a device
    /// id; 64 bits are plenty to tell phone models apart.
    pub fn fingerprint(&self, structure: &[u8]) -> u64 {
        let mut h = self.keyed.clone();
        h.update(b"footfall/ie/1\0");
        h.update(structure);
        let out = h.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).expect("the OS random source is available");
    key
}

/// Loads the key, creating it (32 random bytes, mode 0600) when missing.
pub fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], PrivacyError> {
    let io = |source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(PrivacyError::KeyMode {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let bytes = fs::read(path).map_err(io)?;
            if bytes.starts_with(keys::MAGIC) {
                return Err(PrivacyError::KeyOfOtherMode {
                    path: path.to_path_buf(),
                    what: "holds the day keys of the daily mode (or loyalty with rotate_days), not a key kept for ever",
                });
            }
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| PrivacyError::KeyLength {
                    path: path.to_path_buf(),
                    len: bytes.len(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io)?;
            }
            let key = random_key();
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(&key).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Parses a MAC written as six hex octets separated by `:` or `-`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(Mac(out))
}

/// The MACs of an opt-out list. Kept in memory only (as raw MACs may be,
/// SPEC §2) and checked before a MAC is hashed: with rotating keys a list
/// of ids would have to be hashed again at every rotation.
pub type MacSet = std::collections::HashSet<Mac>;

/// SPEC §2 opt-out: one MAC a line, `#` starts a comment.
pub fn load_opt_out(path: &Path) -> Result<MacSet, PrivacyError> {
    let text = fs::read_to_string(path).map_err(|source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut macs = MacSet::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // The error names the line, not its content: the line is a MAC.
        let mac = parse_mac(line).ok_or_else(|| PrivacyError::OptOut {
            path: path.to_path_buf(),
            line: i + 1,
            what: "not a MAC address (expected six hex octets like 00:11:22:33:44:55)".into(),
        })?;
        macs.insert(mac);
    }
    Ok(macs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the counter holds by the hundred thousand stays unpadded.
    #[test]
    fn an_id_beside_a_small_value_is_not_padded() {
        assert_eq!(std::mem::size_of::<(DeviceId, i32)>(), 24);
        assert_eq!(std::mem::size_of::<(DeviceId, u64)>(), 24);
        assert_eq!(
            postcard::to_stdvec(&DeviceId(u128::MAX)).unwrap(),
            postcard::to_stdvec(&u128::MAX).unwrap(),
            "stored as the u128 it was"
        );
    }

    #[test]
    fn id_is_truncated_hmac_sha256() {
        // RFC 4231-style check against an independent computation:
        // HMAC-SHA-256(key = 32 x 0x0b, msg = 00:11:22:33:44:55).
        let keyer = Keyer::new(&[0x0b; 32]);
        let id = keyer.id(&Mac([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
        let mut h = HmacSha256::new_from_slice(&[0x0b; 32]).unwrap();
        h.update(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let full = h.finalize().into_bytes();
        assert_eq!(id.0.to_be_bytes(), full[..16]);
        assert_ne!(
            id,
            Keyer::new(&[0x0c; 32]).id(&Mac([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]))
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let k1 = load_or_create_key(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key(&path).unwrap(), k1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err().to_string();
        assert!(
            err.contains("readable by others") && err.contains("0644"),
            "{err}"
        );
    }

    #[test]
    fn short_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, [1u8; 5]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_key(&path).unwrap_err().to_string();
        assert!(err.contains("exactly 32 bytes, found 5"), "{err}");
    }

    #[test]
    fn opt_out_names_the_bad_line_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optout");
        fs::write(
            &path,
            "# staff\n00:11:22:33:44:55\n\n66-77-88-99-aa-bb # till\n00:11:22:33:44\n",
        )
        .unwrap();
        let err = load_opt_out(&path).err().expect("an error").to_string();
        assert!(
            err.ends_with(
                "optout:5: not a MAC address (expected six hex octets like 00:11:22:33:44:55)"
            ),
            "{err}"
        );
        fs::write(
            &path,
            "# staff\n00:11:22:33:44:55\n66-77-88-99-aa-bb # till\n",
        )
        .unwrap();
        let macs = load_opt_out(&path).unwrap();
        assert_eq!(macs.len(), 2);
        assert!(macs.contains(&Mac([0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb])));
    }

    #[test]
    fn device_id_prints_only_a_prefix() {
        let id = DeviceId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(format!("{id:?}"), "dev:01234567");
    }
}
