//! Sorted arrays of ids: finding one in a few probes, and merging new
//! ones in.

use std::ops::Range;

use super::DeviceId;

/// About this many ids of a slice share a run of leading bits.
const RUN: usize = 8;

/// Where each run of ids sharing their leading bits starts in a sorted
/// slice. The ids are HMAC outputs, evenly spread, so a run is a few ids
/// and a lookup touches a cache line or two; a binary search over the
/// whole of a crowd's hundreds of thousands was a cache miss a step, a
/// twentieth of the counting thread (issue 20, perf).
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    /// Ids whose leading `bits` bits are `b` are at `starts[b]..starts[b + 1]`.
    starts: Vec<u32>,
    bits: u32,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            starts: vec![0, 0],
            bits: 0,
        }
    }
}

impl Runs {
    /// The runs of `ids`, ascending.
    pub(crate) fn of(ids: impl ExactSizeIterator<Item = DeviceId>) -> Runs {
        let len = ids.len();
        let bits = (len / RUN).max(1).ilog2().min(24);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        for (at, id) in ids.enumerate() {
            let run = Runs::run(bits, id);
            while starts.len() <= run {
                starts.push(at as u32);
            }
        }
        starts.resize((1 << bits) + 1, len as u32);
        Runs { starts, bits }
    }

    fn run(bits: u32, id: DeviceId) -> usize {
        if bits == 0 {
            0
        } else {
            (id.0 >> (128 - bits)) as usize
        }
    }

    /// Where `id` is in the slice if it is there.
    pub(crate) fn range(&self, id: DeviceId) -> Range<usize> {
        let run = Runs::run(self.bits, id);
        self.starts[run] as usize..self.starts[run + 1] as usize
    }
}

/// Sorts `new` and merges it into `sorted` (ascending by `id`), in place:
/// from the back, so no second copy of `sorted` is ever made.
pub(crate) fn merge_in<T: Copy>(sorted: &mut Vec<T>, mut new: Vec<T>, id: impl Fn(&T) -> DeviceId) {
    new.sort_unstable_by_key(&id);
    let Some(&last) = new.last() else {
        return;
    };
    let old = sorted.len();
    sorted.resize(old + new.len(), last);
    let (mut i, mut j) = (old, new.len());
    for k in (0..sorted.len()).rev() {
        if j == 0 {
            break;
        }
        if i > 0 && id(&sorted[i - 1]) > id(&new[j - 1]) {
            sorted[k] = sorted[i - 1];
            i -= 1;
        } else {
            sorted[k] = new[j - 1];
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_in_its_range_and_no_other() {
        for n in [0usize, 1, 7, 8, 100, 5000] {
            let mut ids: Vec<DeviceId> = (0..n as u128)
                .map(|i| DeviceId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
                .collect();
            ids.sort_unstable();
            let runs = Runs::of(ids.iter().copied());
            for (at, &id) in ids.iter().enumerate() {
                assert!(runs.range(id).contains(&at), "{n} ids, id {at}");
            }
            // An id not there gets a range in bounds all the same.
            let r = runs.range(DeviceId(u128::MAX));
            assert!(r.start <= r.end && r.end == n);
        }
    }
}
