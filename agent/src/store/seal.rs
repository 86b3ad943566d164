//! Sealing the state under the key epoch (issue 18): where the privacy mode
//! rotates its key by day, the checkpoint and the device histories are
//! encrypted (ChaCha20-Poly1305) under a key derived from that epoch's
//! device key, which the key file drops at rotation.
//!
//! Why: sled is log-structured, so a deleted or overwritten value stays in
//! its files until sled happens to reuse the space. Deleting a day's device
//! states is not enough to say nothing on disk names those devices; once
//! the day's key is gone, what is left of them there is ciphertext nobody
//! can open (crypto-shredding).
//!
//! A sealed value is `SEALED`, the epoch (i64 LE), a random 12-byte nonce,
//! then the ciphertext of the value as it would be stored unsealed.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use crate::privacy::KEY_LEN;

/// First byte of a sealed value; unsealed values start with their format
/// version (2 or 3).
pub(super) const SEALED: u8 = 0xfe;
const HEADER: usize = 1 + 8 + 12;

/// The cipher of one key epoch.
pub struct Sealer {
    epoch: i64,
    cipher: ChaCha20Poly1305,
}

/// What a stored value turned out to be.
pub(super) enum Opened<'a> {
    Plain(&'a [u8]),
    Unsealed(Vec<u8>),
    /// Sealed under another epoch's key: ids that are never seen again.
    OtherEpoch(i64),
}

impl Sealer {
    /// The sealer of `epoch`, from that epoch's device key (never the key
    /// itself: a separate domain of the same secret).
    pub fn new(epoch: i64, device_key: &[u8; KEY_LEN]) -> Sealer {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(device_key)
            .expect("HMAC takes keys of any length");
        mac.update(b"footfall/state/1\0");
        let key = mac.finalize().into_bytes();
        Sealer {
            epoch,
            cipher: ChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key"),
        }
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    pub(super) fn seal(&self, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let body = self
            .cipher
            .encrypt(&Nonce::from(nonce), value)
            .expect("encryption in memory does not fail");
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.push(SEALED);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }
}

/// Opens a stored value with `sealer` (`None`: the mode seals nothing).
pub(super) fn open<'a>(sealer: Option<&Sealer>, value: &'a [u8]) -> Result<Opened<'a>, String> {
    if value.first() != Some(&SEALED) {
        return Ok(Opened::Plain(value));
    }
    if value.len() < HEADER {
        return Err("a sealed value shorter than its header".into());
    }
    let epoch = i64::from_le_bytes(value[1..9].try_into().expect("8 bytes"));
    let Some(s) = sealer.filter(|s| s.epoch == epoch) else {
        return Ok(Opened::OtherEpoch(epoch));
    };
    let nonce: [u8; 12] = value[9..HEADER].try_into().expect("12 bytes");
    s.cipher
        .decrypt(&Nonce::from(nonce), &value[HEADER..])
        .map(Opened::Unsealed)
        .map_err(|_| format!("sealed under key epoch {epoch}, but does not open with its key (damaged, or the key file was replaced)"))
}

/// The epoch a sealed value names, if it is sealed.
pub(super) fn epoch_of(value: &[u8]) -> Option<i64> {
    (value.first() == Some(&SEALED) && value.len() >= HEADER)
        .then(|| i64::from_le_bytes(value[1..9].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_under_its_epoch_and_hides_its_bytes() {
        let s = Sealer::new(20_000, &[7; 32]);
        let secret = b"0123456789abcdef device id bytes";
        let sealed = s.seal(secret);
        assert!(!sealed.windows(16).any(|w| w == &secret[..16]));
        assert_eq!(epoch_of(&sealed), Some(20_000));
        match open(Some(&s), &sealed).unwrap() {
            Opened::Unsealed(v) => assert_eq!(v, secret),
            _ => panic!("opens"),
        }
        let next = Sealer::new(20_001, &[8; 32]);
        assert!(matches!(
            open(Some(&next), &sealed).unwrap(),
            Opened::OtherEpoch(20_000)
        ));
        // The same epoch under another key (the key file was replaced).
        let wrong = Sealer::new(20_000, &[9; 32]);
        assert!(open(Some(&wrong), &sealed)
            .err()
            .unwrap()
            .contains("does not open"));
        assert!(matches!(
            open(None, b"\x03plain").unwrap(),
            Opened::Plain(_)
        ));
    }
}
