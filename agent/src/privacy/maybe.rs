//! A Bloom filter of one 64-bit word per key: a check reads one cache
//! line, whose address the key gives by arithmetic alone, so that a
//! caller can ask the CPU for it ahead of time (`prefetch`). Used where a
//! crowd asks millions of times for ids that are not there: the spill's
//! index and the day's randomized visitors (issue 20, perf).

/// Bits per key a filter is sized for: a key not there passes it once in
/// about twenty.
const BITS: usize = 8;

#[derive(Debug, Clone, Default)]
pub(crate) struct Maybe {
    words: Vec<u64>,
}

impl Maybe {
    /// A filter for `n` keys, with those of `keys` in it.
    pub(crate) fn of(n: usize, keys: impl Iterator<Item = u64>) -> Maybe {
        let mut m = Maybe {
            words: vec![0; (n * BITS).div_ceil(64).max(1)],
        };
        keys.for_each(|k| m.insert(k));
        m
    }

    /// How many keys it was made for (`of`'s `n`, to a word's keys); none
    /// for the default, which holds nothing.
    pub(crate) fn room(&self) -> usize {
        self.words.len() * 64 / BITS
    }

    /// Bytes it holds (a metric).
    pub(crate) fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The word of `key` (its high bits, scaled), and three of its bits
    /// (its low bits, six each): keys are HMAC outputs, already uniform.
    fn at(&self, key: u64) -> (usize, u64) {
        let word = ((u128::from(key) * self.words.len() as u128) >> 64) as usize;
        let bits = 1 << (key & 63) | 1 << (key >> 6 & 63) | 1 << (key >> 12 & 63);
        (word, bits)
    }

    pub(crate) fn insert(&mut self, key: u64) {
        let (word, bits) = self.at(key);
        if let Some(w) = self.words.get_mut(word) {
            *w |= bits;
        }
    }

    pub(crate) fn prefetch(&self, key: u64) {
        if let Some(w) = self.words.get(self.at(key).0) {
            super::prefetch(w);
        }
    }

    /// False: `key` is surely not in it.
    pub(crate) fn may_hold(&self, key: u64) -> bool {
        let (word, bits) = self.at(key);
        self.words.get(word).is_some_and(|w| w & bits == bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_key_put_and_lets_few_others_through() {
        let key = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut m = Maybe::of(1000, (0..500).map(key));
        (500..1000).for_each(|n| m.insert(key(n)));
        assert!((0..1000).all(|n| m.may_hold(key(n))));
        let passed = (1000..11_000).filter(|&n| m.may_hold(key(n))).count();
        assert!(passed < 1_000, "{passed} of 10,000 keys not put passed");
        assert!(!Maybe::default().may_hold(key(1)));
        assert_eq!(Maybe::default().room(), 0);
    }
}
