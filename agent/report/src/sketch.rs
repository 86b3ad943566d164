//! `visitor_sketch` (SPEC §4): a HyperLogLog of device ids that the gateway
//! merges across windows, agents and stores to count distinct visitors over
//! any period.
//!
//! Device ids are HMAC-SHA-256 output (SPEC §2), already uniform, so the top
//! 64 bits of an id are the hash: no second hash is needed, and every agent
//! of a deployment maps a device to the same register. Agents with different
//! keys see unrelated ids, which is what makes chain-wide merges honest only
//! within one deployment key.
//!
//! Wire form (versioned so a later encoding can coexist):
//! `{"v":1,"p":14,"enc":"sparse","regs":"<base64>"}` where sparse `regs` is
//! sorted (u16 BE index, u8 rank) triples, or `"enc":"dense"` with one rank
//! byte per register. A window with a handful of visitors costs a few bytes;
//! a chain-year merge costs 16 KiB.
//!
//! Binary serde formats (the gateway stores reports as postcard) get the
//! same fields as one byte string, `[v, p, enc, registers...]` with enc 0
//! sparse and 1 dense: base64 inside a binary value would only cost.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Encoding version written in `v`.
pub const VERSION: u8 = 1;
/// Precision: 2^14 registers, standard error 1.04 / sqrt(16384) = 0.81 %.
pub const PRECISION: u8 = 14;
const M: usize = 1 << PRECISION;

/// Relative standard error of an estimate: 1.04 / sqrt(m).
pub fn standard_error() -> f64 {
    1.04 / (M as f64).sqrt()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SketchError {
    #[error("visitor_sketch version {0} is not supported (expected {VERSION})")]
    Version(u8),
    #[error("visitor_sketch precision {0} is not supported (expected {PRECISION})")]
    Precision(u8),
    #[error("visitor_sketch encoding {0:?} is unknown (expected \"sparse\" or \"dense\")")]
    Encoding(String),
    #[error("visitor_sketch registers are not valid base64")]
    Base64,
    #[error("visitor_sketch registers: {0}")]
    Registers(&'static str),
}

/// A HyperLogLog with registers kept sparse until that stops paying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sketch {
    /// Non-zero registers as (index, rank), sorted by index, indices unique.
    Sparse(Vec<(u16, u8)>),
    /// One rank per register.
    Dense(Box<[u8]>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::Sparse(Vec::new())
    }

    /// Adds a device id (the 128-bit keyed id of SPEC §2).
    pub fn insert(&mut self, device_id: u128) {
        let hash = (device_id >> 64) as u64;
        let index = (hash >> (64 - PRECISION)) as u16;
        let rest = hash << PRECISION;
        // Rank of the first 1 bit in the remaining 50 bits, 1-based; all
        // zero gives the maximum rank.
        let rank = (rest.leading_zeros().min(64 - u32::from(PRECISION)) + 1) as u8;
        self.set_max(index, rank);
    }

    fn set_max(&mut self, index: u16, rank: u8) {
        match self {
            Sketch::Dense(regs) => {
                let r = &mut regs[usize::from(index)];
                *r = (*r).max(rank);
            }
            Sketch::Sparse(pairs) => {
                match pairs.binary_search_by_key(&index, |&(i, _)| i) {
                    Ok(pos) => pairs[pos].1 = pairs[pos].1.max(rank),
                    Err(pos) => pairs.insert(pos, (index, rank)),
                }
                // Sparse costs 3 bytes a register; go dense when that is more.
                if pairs.len() * 3 > M {
                    self.densify();
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Sketch::Sparse(pairs) = self {
            let mut regs = vec![0u8; M].into_boxed_slice();
            for &(i, r) in pairs.iter() {
                regs[usize::from(i)] = r;
            }
            *self = Sketch::Dense(regs);
        }
    }

    /// An empty sketch, dense: for accumulating many sketches. Merging
    /// into the sparse form moves its sorted list on every new register,
    /// which was a third of a campaign report's time (callgrind).
    pub fn new_dense() -> Sketch {
        Sketch::Dense(vec![0u8; M].into_boxed_slice())
    }

    /// Register-wise max: the sketch of the union of both sets.
    pub fn merge(&mut self, other: &Sketch) {
        match other {
            Sketch::Sparse(pairs) => {
                for &(i, r) in pairs {
                    self.set_max(i, r);
                }
            }
            Sketch::Dense(theirs) => {
                self.densify();
                if let Sketch::Dense(ours) = self {
                    for (a, b) in ours.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Sketch::Sparse(p) => p.is_empty(),
            Sketch::Dense(r) => r.iter().all(|&x| x == 0),
        }
    }

    /// Estimated number of distinct ids: HyperLogLog with linear counting
    /// for small cardinalities (Flajolet et al. 2007; Heule et al. 2013).
    pub fn estimate(&self) -> f64 {
        let m = M as f64;
        let (mut sum, mut zeros) = (0.0f64, 0usize);
        let mut add = |r: u8| {
            sum += 2f64.powi(-i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        };
        match self {
            Sketch::Sparse(pairs) => {
                for &(_, r) in pairs {
                    add(r);
                }
                for _ in pairs.len()..M {
                    add(0);
                }
            }
            Sketch::Dense(regs) => regs.iter().for_each(|&r| add(r)),
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    p: u8,
    enc: String,
    regs: String,
}

impl Serialize for Sketch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            let mut b = vec![
                VERSION,
                PRECISION,
                u8::from(matches!(self, Sketch::Dense(_))),
            ];
            match self {
                Sketch::Sparse(pairs) => {
                    for &(i, r) in pairs {
                        b.extend_from_slice(&i.to_be_bytes());
                        b.push(r);
                    }
                }
                Sketch::Dense(regs) => b.extend_from_slice(regs),
            }
            return s.serialize_bytes(&b);
        }
        let (enc, bytes) = match self {
            Sketch::Sparse(pairs) => {
                let mut b = Vec::with_capacity(pairs.len() * 3);
                for &(i, r) in pairs {
                    b.extend_from_slice(&i.to_be_bytes());
                    b.push(r);
                }
                ("sparse", b)
            }
            Sketch::Dense(regs) => ("dense", regs.to_vec()),
        };
        Wire {
            v: VERSION,
            p: PRECISION,
            enc: enc.to_string(),
            regs: B64.encode(bytes),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sketch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return d.deserialize_bytes(BinaryVisitor);
        }
        let w = Wire::deserialize(d)?;
        let bytes = B64
            .decode(w.regs.as_bytes())
            .map_err(|_| serde::de::Error::custom(SketchError::Base64))?;
        Sketch::from_parts(w.v, w.p, &w.enc, &bytes).map_err(serde::de::Error::custom)
    }
}

struct BinaryVisitor;

impl serde::de::Visitor<'_> for BinaryVisitor {
    type Value = Sketch;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("visitor_sketch bytes: version, precision, encoding, registers")
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Sketch, E> {
        let [v, p, enc, regs @ ..] = b else {
            return Err(E::custom(SketchError::Registers("shorter than its header")));
        };
        let enc = match enc {
            0 => "sparse",
            1 => "dense",
            _ => "unknown binary encoding",
        };
        Sketch::from_parts(*v, *p, enc, regs).map_err(E::custom)
    }
}

impl Sketch {
    fn from_parts(v: u8, p: u8, enc: &str, bytes: &[u8]) -> Result<Sketch, SketchError> {
        if v != VERSION {
            return Err(SketchError::Version(v));
        }
        if p != PRECISION {
            return Err(SketchError::Precision(p));
        }
        let max_rank = 64 - PRECISION + 1;
        match enc {
            "sparse" => {
                if !bytes.len().is_multiple_of(3) {
                    return Err(SketchError::Registers(
                        "sparse length is not a multiple of 3",
                    ));
                }
                let mut pairs = Vec::with_capacity(bytes.len() / 3);
                for c in bytes.chunks_exact(3) {
                    let (i, r) = (u16::from_be_bytes([c[0], c[1]]), c[2]);
                    if usize::from(i) >= M {
                        return Err(SketchError::Registers("register index out of range"));
                    }
                    if r == 0 || r > max_rank {
                        return Err(SketchError::Registers("rank out of range"));
                    }
                    if pairs.last().is_some_and(|&(last, _)| last >= i) {
                        return Err(SketchError::Registers(
                            "sparse indices not strictly increasing",
                        ));
                    }
                    pairs.push((i, r));
                }
                Ok(Sketch::Sparse(pairs))
            }
            "dense" => {
                if bytes.len() != M {
                    return Err(SketchError::Registers("dense length is not 2^p"));
                }
                if bytes.iter().any(|&r| r > max_rank) {
                    return Err(SketchError::Registers("rank out of range"));
                }
                Ok(Sketch::Dense(bytes.into()))
            }
            other => Err(SketchError::Encoding(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spreads a counter over 128 bits the way HMAC output would be spread.
    fn id(n: u64) -> u128 {
        let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (u128::from(x) << 64) | u128::from(n)
    }

    #[test]
    fn estimates_are_within_four_standard_errors() {
        for &n in &[1u64, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let mut s = Sketch::new();
            for i in 0..n {
                s.insert(id(i));
            }
            let est = s.estimate();
            let err = (est - n as f64).abs() / n as f64;
            assert!(
                err < 4.0 * standard_error() + 1e-9,
                "n={n} est={est} err={err}"
            );
        }
    }

    #[test]
    fn merge_equals_sketch_of_union() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 0..20_000 {
            if i % 3 == 0 {
                a.insert(id(i));
            } else {
                b.insert(id(i));
            }
            all.insert(id(i));
        }
        a.merge(&b);
        let mut dense_all = all.clone();
        dense_all.densify();
        let mut dense_a = a.clone();
        dense_a.densify();
        assert_eq!(dense_a, dense_all);
    }

    /// Many small sketches merged one by one, as a period's windows are:
    /// the very registers and representation of one sketch of them all,
    /// sparse while that is smaller and dense after.
    #[test]
    fn merging_small_sketches_equals_one_sketch_of_all() {
        for n in [10u64, 1_000, 8_000] {
            let (mut merged, mut all) = (Sketch::new(), Sketch::new());
            for chunk in (0..n).collect::<Vec<_>>().chunks(12) {
                let mut w = Sketch::new();
                for &i in chunk {
                    w.insert(id(i));
                    all.insert(id(i));
                }
                merged.merge(&w);
            }
            assert_eq!(merged, all, "{n} ids");
        }
    }

    #[test]
    fn foreign_versions_are_refused() {
        let bad = r#"{"v":2,"p":14,"enc":"sparse","regs":""}"#;
        let err = serde_json::from_str::<Sketch>(bad).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        let bad = r#"{"v":1,"p":14,"enc":"sparse","regs":"AAAA"}"#;
        assert!(serde_json::from_str::<Sketch>(bad).is_err());
    }

    #[test]
    fn damaged_binary_sketches_are_refused() {
        let mut s = Sketch::new();
        s.insert(id(1));
        let good = postcard::to_stdvec(&s).unwrap();
        // [length, v, p, enc, registers...]
        for (at, to, what) in [
            (1, 2, "version 2"),
            (2, 12, "precision 12"),
            (3, 7, "encoding"),
        ] {
            let mut bad = good.clone();
            bad[at] = to;
            let err = postcard::from_bytes::<Sketch>(&bad).unwrap_err();
            // postcard keeps only the kind of a custom error.
            assert_eq!(err, postcard::Error::SerdeDeCustom, "{what}");
        }
        assert!(postcard::from_bytes::<Sketch>(&good[..good.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn wire_round_trip(ids in proptest::collection::vec(any::<u128>(), 0..7000)) {
            let mut s = Sketch::new();
            for i in ids { s.insert(i); }
            let json = serde_json::to_string(&s).unwrap();
            let back: Sketch = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &s);
            let binary = postcard::to_stdvec(&s).unwrap();
            let back: Sketch = postcard::from_bytes(&binary).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
