//! The device key over time (issue 18): which key a frame is hashed under,
//! when it is replaced, and where it lives meanwhile.
//!
//! A key belongs to an *epoch*: a slice of Unix time (`ephemeral`, every
//! `rotate_s`) or of local days (`daily`, and `loyalty` with
//! `rotate_days`). A frame is hashed under the key of its own epoch, taken
//! from its capture timestamp, so replay and live capture rotate alike.
//!
//! Where keys live:
//! - `ephemeral`: in memory only. A restart starts a new key; nothing on
//!   disk could link an id to a MAC or to another id.
//! - day epochs: the key file holds the current epoch and its key (0600),
//!   so that a restart keeps the day. At rotation it also keeps the
//!   previous key, until the counter has committed the end of that epoch
//!   (`retire`): after a crash in between, the frames re-read from the last
//!   checkpoint are hashed as they were the first time, so nothing is lost.
//! - `loyalty` without rotation: the 32-byte key file of SPEC §2.
//!
//! Key file, rotating modes: `FFK1`, then one or two (epoch as i64 LE,
//! 32-byte key) entries, newest first.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{load_or_create_key, random_key, Keyer, PrivacyError, KEY_LEN};
use crate::days::LocalDays;

pub(super) const MAGIC: &[u8; 4] = b"FFK1";
const ENTRY: usize = 8 + KEY_LEN;
const US_PER_S: i64 = 1_000_000;

/// The epoch of a key that never rotates.
pub const FOREVER: i64 = 0;

/// When the device key is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Every `n` seconds of Unix time, keys in memory only (`ephemeral`).
    Seconds(u32),
    /// At local midnight every `n` days, counted from 1970-01-01 (`daily`
    /// is 1; `loyalty` with `rotate_days`).
    Days(u32),
    /// Never (`loyalty` without `rotate_days`).
    Never,
}

/// The epoch of `rotation` that `t_us` is in (`FOREVER` without one).
pub fn epoch_of(rotation: Rotation, days: &LocalDays, t_us: i64) -> i64 {
    match rotation {
        Rotation::Never => FOREVER,
        Rotation::Seconds(s) => t_us.div_euclid(i64::from(s) * US_PER_S),
        Rotation::Days(n) => i64::from(days.day_of(t_us)).div_euclid(i64::from(n)),
    }
}

/// When `epoch` of `rotation` starts, in µs.
pub fn epoch_start_us(rotation: Rotation, days: &LocalDays, epoch: i64) -> i64 {
    match rotation {
        Rotation::Never => i64::MIN,
        Rotation::Seconds(s) => epoch * i64::from(s) * US_PER_S,
        Rotation::Days(n) => days.bounds((epoch * i64::from(n)) as i32).0,
    }
}

/// The keys of one agent: the current epoch's, and for day epochs the
/// previous one's until it is retired.
pub struct Keys {
    rotation: Rotation,
    days: LocalDays,
    /// The key file (day epochs and unrotated `loyalty`); `None`: memory.
    file: Option<PathBuf>,
    current: Option<(i64, Keyer)>,
    previous: Option<(i64, Keyer, [u8; KEY_LEN])>,
    current_key: [u8; KEY_LEN],
}

impl Keys {
    /// Loads what the key file holds for `rotation` (creating the SPEC §2
    /// key when it never rotates).
    pub fn open(
        rotation: Rotation,
        key_file: &Path,
        days: LocalDays,
    ) -> Result<Keys, PrivacyError> {
        let mut keys = Keys {
            rotation,
            days,
            file: None,
            current: None,
            previous: None,
            current_key: [0; KEY_LEN],
        };
        match rotation {
            Rotation::Never => {
                let key = load_or_create_key(key_file)?;
                keys.current = Some((FOREVER, Keyer::new(&key)));
                keys.current_key = key;
                keys.file = Some(key_file.to_path_buf());
            }
            Rotation::Seconds(_) => {}
            Rotation::Days(_) => {
                keys.file = Some(key_file.to_path_buf());
                let entries = read_rotating(key_file)?;
                let mut it = entries.into_iter();
                if let Some((epoch, key)) = it.next() {
                    keys.current = Some((epoch, Keyer::new(&key)));
                    keys.current_key = key;
                }
                if let Some((epoch, key)) = it.next() {
                    keys.previous = Some((epoch, Keyer::new(&key), key));
                }
            }
        }
        Ok(keys)
    }

    /// One key for ever, in memory only: `inspect`, `evaluate`'s
    /// throwaway key, and tests.
    pub fn fixed(key: &[u8; KEY_LEN]) -> Keys {
        Keys {
            rotation: Rotation::Never,
            days: LocalDays::new(jiff::tz::TimeZone::UTC),
            file: None,
            current: Some((FOREVER, Keyer::new(key))),
            previous: None,
            current_key: *key,
        }
    }

    /// A fixed key nobody knows: ids comparable within this process only.
    pub fn throwaway() -> Keys {
        Keys::fixed(&random_key())
    }

    /// Keys that rotate as `rotation` says but are never written
    /// (`evaluate` counts as the mode would, leaving the key file alone).
    pub fn in_memory(rotation: Rotation, days: LocalDays) -> Keys {
        let mut keys = Keys::throwaway();
        if rotation != Rotation::Never {
            keys.rotation = rotation;
            keys.days = days;
            keys.current = None;
        }
        keys
    }

    /// The epoch a frame at `t_us` belongs to.
    pub fn epoch_of(&self, t_us: i64) -> i64 {
        epoch_of(self.rotation, &self.days, t_us)
    }

    /// The epoch whose key hashes a frame at `t_us`, rotating first when
    /// the frame is of a newer epoch. A frame of an older epoch (input
    /// reordered across a rotation) keeps its own epoch while that key is
    /// still held, else takes the current one (the counter then finds it
    /// late). On an error the new key is in force in memory all the same.
    pub fn advance(&mut self, t_us: i64) -> Result<i64, PrivacyError> {
        let epoch = self.epoch_of(t_us);
        let current = match &self.current {
            Some((e, _)) if epoch <= *e => *e,
            _ => {
                self.rotate(epoch)?;
                return Ok(epoch);
            }
        };
        Ok(match &self.previous {
            Some((e, _, _)) if *e == epoch => epoch,
            _ => current,
        })
    }

    /// The key of `epoch`, as `advance` returned it.
    pub fn keyer(&self, epoch: i64) -> &Keyer {
        match (&self.previous, &self.current) {
            (Some((e, k, _)), _) if *e == epoch => k,
            (_, Some((_, k))) => k,
            (_, None) => unreachable!("advance sets a key before any is asked for"),
        }
    }

    /// `advance` and `keyer` in one, for tests.
    #[cfg(test)]
    fn at(&mut self, t_us: i64) -> Result<(i64, &Keyer), PrivacyError> {
        let epoch = self.advance(t_us)?;
        Ok((epoch, self.keyer(epoch)))
    }

    /// The current epoch, once a frame has been hashed (or read back).
    pub fn epoch(&self) -> Option<i64> {
        self.current.as_ref().map(|(e, _)| *e)
    }

    /// Replaces the key with a fresh random one for `epoch`. Day epochs
    /// write it to the key file, keeping the previous key until `retire`.
    fn rotate(&mut self, epoch: i64) -> Result<(), PrivacyError> {
        let key = random_key();
        let old = self.current.take();
        self.previous = match (self.rotation, old) {
            (Rotation::Days(_), Some((e, k))) => Some((e, k, self.current_key)),
            _ => None,
        };
        self.current = Some((epoch, Keyer::new(&key)));
        self.current_key = key;
        self.write()
    }

    /// Forgets keys of epochs before `epoch`: the counter has committed
    /// their end, so nothing will be hashed under them again.
    pub fn retire(&mut self, epoch: i64) -> Result<(), PrivacyError> {
        if self.previous.as_ref().is_some_and(|(e, _, _)| *e < epoch) {
            self.previous = None;
            self.write()?;
        }
        Ok(())
    }

    /// Whether a key older than the current one is still held.
    pub fn holds_previous(&self) -> bool {
        self.previous.is_some()
    }

    fn write(&self) -> Result<(), PrivacyError> {
        let (Rotation::Days(_), Some(path), Some((epoch, _))) =
            (self.rotation, &self.file, &self.current)
        else {
            return Ok(());
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&epoch.to_le_bytes());
        bytes.extend_from_slice(&self.current_key);
        if let Some((e, _, k)) = &self.previous {
            bytes.extend_from_slice(&e.to_le_bytes());
            bytes.extend_from_slice(k);
        }
        write_private(path, &bytes)
    }
}

/// The key of `epoch` as the rotating key file at `path` holds it, if it
/// still does (what the state of that epoch is sealed under).
pub fn stored_key(path: &Path, epoch: i64) -> Result<Option<[u8; KEY_LEN]>, PrivacyError> {
    Ok(read_rotating(path)?
        .into_iter()
        .find(|(e, _)| *e == epoch)
        .map(|(_, k)| k))
}

/// The (epoch, key) entries of a rotating key file, newest first; none
/// when it is missing. A 32-byte SPEC §2 key is refused: reusing the
/// loyalty mode's key for day keys would keep linking phones across days.
fn read_rotating(path: &Path) -> Result<Vec<(i64, [u8; KEY_LEN])>, PrivacyError> {
    let io = |source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivacyError::KeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    if bytes.len() == KEY_LEN {
        // The loyalty mode's key, kept for ever: not this mode's.
        return Err(PrivacyError::KeyOfOtherMode {
            path: path.to_path_buf(),
            what: "holds a key kept for ever (the loyalty mode's), not day keys",
        });
    }
    let body = bytes.strip_prefix(MAGIC.as_slice());
    match body {
        Some(body) if !body.is_empty() && body.len() % ENTRY == 0 && body.len() <= 2 * ENTRY => {
            Ok(body
                .chunks(ENTRY)
                .map(|c| {
                    let epoch = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                    (epoch, c[8..].try_into().expect("32 bytes"))
                })
                .collect())
        }
        _ => Err(PrivacyError::KeyLength {
            path: path.to_path_buf(),
            len: bytes.len(),
        }),
    }
}

/// Replaces `path` with `bytes`, mode 0600, atomically: a crash leaves the
/// old file or the new one, never a torn key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PrivacyError> {
    let io = |source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ieee80211::Mac;

    const DAY_US: i64 = 86_400 * US_PER_S;
    /// 2026-03-02T00:00:00Z.
    const T0: i64 = 1_772_409_600 * US_PER_S;

    fn days() -> LocalDays {
        LocalDays::new(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn daily_keys_change_at_midnight_and_survive_a_restart_within_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let mac = Mac([0, 1, 2, 3, 4, 5]);
        let mut keys = Keys::open(Rotation::Days(1), &path, days()).unwrap();
        let (e1, k) = keys.at(T0 + 3600 * US_PER_S).unwrap();
        let id1 = k.id(&mac);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut again = Keys::open(Rotation::Days(1), &path, days()).unwrap();
        assert_eq!(again.at(T0 + 7200 * US_PER_S).unwrap().1.id(&mac), id1);
        let (e2, k) = keys.at(T0 + DAY_US).unwrap();
        assert_eq!(e2, e1 + 1);
        assert_ne!(k.id(&mac), id1, "a new day, an unrelated id");
        // Until retired, the old day's key is on disk for a crash replay.
        assert!(keys.holds_previous());
        let reopened = Keys::open(Rotation::Days(1), &path, days()).unwrap();
        assert!(reopened.holds_previous());
        keys.retire(e2).unwrap();
        assert!(!keys.holds_previous());
        assert_eq!(fs::read(&path).unwrap().len(), 4 + ENTRY);
        let mut reopened = Keys::open(Rotation::Days(1), &path, days()).unwrap();
        assert!(!reopened.holds_previous());
        assert_eq!(
            reopened.at(T0 + DAY_US + 60).unwrap().1.id(&mac),
            keys.at(T0 + DAY_US + 60).unwrap().1.id(&mac)
        );
    }

    #[test]
    fn ephemeral_keys_rotate_on_the_clock_and_never_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let mac = Mac([0, 1, 2, 3, 4, 5]);
        let mut keys = Keys::open(Rotation::Seconds(300), &path, days()).unwrap();
        let a = keys.at(T0 + 10 * US_PER_S).unwrap().1.id(&mac);
        let b = keys.at(T0 + 299 * US_PER_S).unwrap().1.id(&mac);
        let c = keys.at(T0 + 300 * US_PER_S).unwrap().1.id(&mac);
        assert_eq!(a, b);
        assert_ne!(b, c);
        // A frame reordered across the rotation gets the current key.
        assert_eq!(keys.at(T0 + 299 * US_PER_S).unwrap().1.id(&mac), c);
        assert!(!path.exists());
        assert_eq!(
            epoch_start_us(Rotation::Seconds(300), &days(), keys.epoch().unwrap()),
            T0 + 300 * US_PER_S
        );
    }

    #[test]
    fn a_damaged_or_open_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, b"FFK1short").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Keys::open(Rotation::Days(1), &path, days())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("found 9"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keys::open(Rotation::Days(1), &path, days())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("readable by others"), "{err}");
    }
}
