//! The store's known-error and crash tests: one per torn, corrupt or
//! half-moved case, and the round trips of every tree.

use super::migrate::CheckpointV2;
use super::*;
use crate::count::{HistoryStore, Horizon};
use crate::privacy::DeviceId;

fn ident() -> Identity {
    Identity::new("s1", "a1", "p1")
}

/// Opens again in the same process. sled's flusher thread can hold the
/// lock a moment after the previous handle is dropped (a real restart
/// is a new process), so a held lock is retried for up to 5 s.
fn reopen(path: &Path, identity: &Identity) -> Result<Store, StoreError> {
    for _ in 0..100 {
        match Store::open(path, 1 << 20, identity) {
            Err(StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
    Store::open(path, 1 << 20, identity)
}

#[test]
fn checkpoint_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        let mut cp = Checkpoint {
            next_seq: 42,
            ..Checkpoint::default()
        };
        s.save(DeviceId(7), &History::default());
        s.commit(&mut cp, &[]).unwrap();
    }
    let mut s = reopen(&path, &ident()).unwrap();
    assert_eq!(s.load_checkpoint(usize::MAX).unwrap().unwrap().next_seq, 42);
    assert_eq!(s.load(DeviceId(7)).unwrap(), Some(History::default()));
    assert_eq!(s.load(DeviceId(8)).unwrap(), None);
}

#[test]
fn foreign_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    drop(Store::open(&path, 1 << 20, &ident()).unwrap());
    let err = reopen(&path, &Identity::new("s2", "a1", "p1"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("belongs to store \"s1\""), "{err}");
    let err = reopen(&path, &Identity::new("s1", "a1", "p2"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("params_hash p1"), "{err}");
}

#[test]
fn damaged_value_is_an_error_naming_tree_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        // Flip one payload byte behind the store's back.
        let mut v = s.state.get(CHECKPOINT_KEY).unwrap().unwrap().to_vec();
        v[1] ^= 0xff;
        s.state.insert(CHECKPOINT_KEY, v).unwrap();
        s.flush().unwrap();
    }
    let mut s = reopen(&path, &ident()).unwrap();
    let err = s.load_checkpoint(usize::MAX).unwrap_err().to_string();
    assert!(
        err.contains("tree `state`, key checkpoint-5: checksum mismatch"),
        "{err}"
    );
}

/// A checkpoint as format 3 wrote it (key `checkpoint`, no people
/// observations) opens with its counts; the next commit writes
/// `checkpoint-4` and removes the old key in the same transaction.
#[test]
fn a_checkpoint_from_before_people_estimates_is_upgraded() {
    use super::checkpoint::CheckpointV3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let s = Store::open(&path, 1 << 20, &ident()).unwrap();
        let old = CheckpointV3 {
            next_seq: 41,
            ..CheckpointV3::default()
        };
        s.state.insert(CHECKPOINT_V3_KEY, encode(&old)).unwrap();
        s.flush().unwrap();
    }
    let mut s = reopen(&path, &ident()).unwrap();
    let mut cp = s.load_checkpoint(usize::MAX).unwrap().unwrap();
    assert_eq!(cp.next_seq, 41);
    s.commit(&mut cp, &[]).unwrap();
    assert!(s.state.get(CHECKPOINT_V3_KEY).unwrap().is_none());
    assert_eq!(s.load_checkpoint(usize::MAX).unwrap().unwrap().next_seq, 41);
}

#[test]
fn prune_keeps_only_histories_that_can_change_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("state"), 1 << 20, &ident()).unwrap();
    let at = |day: i32, randomized: bool| History {
        day,
        visited: 1,
        visitor_day: day,
        randomized,
        ..History::default()
    };
    s.save(DeviceId(1), &at(100, false)); // within loyalty: kept
    s.save(DeviceId(2), &at(60, false)); // older than the horizon: pruned
    s.save(DeviceId(3), &at(99, true)); // randomized, its day reported: pruned
    s.save(DeviceId(4), &at(101, true)); // randomized, its day pending: kept
    s.commit(&mut Checkpoint::default(), &[]).unwrap();
    let horizon = Horizon {
        next_day: 101,
        keep_from: 71,
    };
    assert_eq!(
        s.prune(horizon).unwrap(),
        Pruned {
            removed: 2,
            kept: 2
        }
    );
    assert_eq!(s.device_records().unwrap(), 2);
    assert!(s.load(DeviceId(1)).unwrap().is_some());
    assert!(s.load(DeviceId(2)).unwrap().is_none());
    assert!(s.load(DeviceId(4)).unwrap().is_some());
}

/// A history of one visit on `day`.
fn at(day: i32) -> History {
    History {
        day,
        visited: 1,
        visitor_day: day,
        ..History::default()
    }
}

/// The filter of ids with a history (`Present`) answers for histories
/// saved after it was built, for those it was built from, and after a
/// prune rebuilt it, for histories saved but not yet committed.
#[test]
fn histories_are_found_whenever_the_filter_was_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    // Ids in one bucket and in others, low bits alike and not.
    let ids: Vec<DeviceId> = (0..64u128)
        .map(|i| DeviceId((i << 112) | (i * 0x9e37_79b9) | 5))
        .collect();
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        assert_eq!(s.load(ids[0]).unwrap(), None); // builds it, empty
        for &id in &ids[..32] {
            s.save(id, &at(100));
        }
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        for &id in &ids[..32] {
            assert_eq!(s.load(id).unwrap(), Some(at(100)), "{}", { id.0 });
        }
    }
    let mut s = reopen(&path, &ident()).unwrap();
    for &id in &ids[..32] {
        assert_eq!(s.load(id).unwrap(), Some(at(100)), "after reopening");
    }
    let missing = ids[32..]
        .iter()
        .filter(|&&id| s.load(id).unwrap().is_none());
    assert_eq!(missing.count(), 32);
    // Saved, pruned (the filter is rebuilt), then committed.
    s.save(ids[40], &at(100));
    let horizon = Horizon {
        next_day: 101,
        keep_from: 71,
    };
    s.prune(horizon).unwrap();
    s.commit(&mut Checkpoint::default(), &[]).unwrap();
    assert_eq!(
        s.load(ids[40]).unwrap(),
        Some(at(100)),
        "saved before a prune"
    );
    assert_eq!(s.load(ids[0]).unwrap(), Some(at(100)), "kept by the prune");
}

/// Under a day key, the buckets pruning rewrites stay sealed: a history
/// kept beside one pruned is never written in the clear.
#[test]
fn pruned_buckets_stay_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("state"), 1 << 20, &ident()).unwrap();
    s.seal_under(Some(Sealer::new(100, &[7; 32])));
    // One bucket (the same first 16 bits): one kept, one pruned.
    s.save(DeviceId(1), &at(100));
    s.save(DeviceId(2), &at(60));
    s.commit(&mut Checkpoint::default(), &[]).unwrap();
    let horizon = Horizon {
        next_day: 101,
        keep_from: 71,
    };
    assert_eq!(s.prune(horizon).unwrap().removed, 1);
    for item in s.histories.iter() {
        let (_, v) = item.unwrap();
        assert_eq!(seal::epoch_of(&v), Some(100), "a bucket in the clear");
    }
    assert!(s.load(DeviceId(1)).unwrap().is_some());
}

/// A state as format 2 left it (an agent upgraded in the field): it
/// opens, randomized visitors move into the checkpoint, nothing else
/// changes, and opening again finds it v3.
#[test]
fn a_v2_state_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let v2 = |v: &[u8]| codec::seal(V2, v);
    {
        let db = sled::open(&path).unwrap();
        let tree = |n: &str| db.open_tree(n).unwrap();
        tree("meta")
            .insert(IDENTITY_KEY, v2(&postcard::to_stdvec(&ident()).unwrap()))
            .unwrap();
        let cp = CheckpointV2 {
            next_seq: 7,
            ..CheckpointV2::default()
        };
        tree("state")
            .insert(CHECKPOINT_V3_KEY, v2(&postcard::to_stdvec(&cp).unwrap()))
            .unwrap();
        let history = |randomized| History {
            day: 100,
            visited: 1,
            visitor_day: 100,
            randomized,
            ..History::default()
        };
        for (id, randomized) in [(1u128, false), (2, true)] {
            tree("devices")
                .insert(
                    id.to_be_bytes(),
                    v2(&postcard::to_stdvec(&history(randomized)).unwrap()),
                )
                .unwrap();
        }
        let report = serde_json::to_vec(&serde_json::json!({"x": 1})).unwrap();
        tree("outbox")
            .insert(
                6u64.to_be_bytes(),
                v2(&postcard::to_stdvec(&report).unwrap()),
            )
            .unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let mut s = reopen(&path, &ident()).unwrap();
        let cp = s.load_checkpoint(usize::MAX).unwrap().unwrap();
        assert_eq!(cp.next_seq, 7);
        assert_eq!(cp.counter.randomized_visitors(), 1);
        assert_eq!(
            s.device_records().unwrap(),
            1,
            "the randomized history left the store"
        );
        assert_eq!(s.load(DeviceId(1)).unwrap().unwrap().visitor_day, 100);
        assert_eq!(s.outbox_seqs(), vec![6]);
        assert!(s.outbox_payload(6).unwrap().is_some());
        drop(s);
    }
}

/// A format 3 state (one `devices` key per history) opens with its
/// histories in buckets, also when a crash stopped an earlier open after
/// it had moved only part of them; removing a history afterwards leaves
/// the rest of its bucket.
#[test]
fn per_device_histories_move_into_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let history = |day| History {
        day,
        visited: 1,
        visitor_day: day,
        ..History::default()
    };
    let devices = [
        (1u128 << 120 | 1, 10),
        (1 << 120 | 2, 11),
        (2 << 120, 12),
        (u128::MAX, 13),
    ];
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        let (moved, left) = devices.split_at(1);
        s.save(DeviceId(moved[0].0), &history(moved[0].1));
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        for &(id, day) in left {
            s.devices
                .insert(id.to_be_bytes(), encode(&history(day)))
                .unwrap();
        }
        s.flush().unwrap();
    }
    let mut s = reopen(&path, &ident()).unwrap();
    assert!(s.devices.is_empty());
    assert_eq!(s.device_records().unwrap(), 4);
    assert_eq!(s.histories.len(), 3, "ids 1 and 2 share a bucket");
    for (id, day) in devices {
        assert_eq!(s.load(DeviceId(id)).unwrap(), Some(history(day)));
    }
    s.remove(DeviceId(devices[0].0));
    s.commit(&mut Checkpoint::default(), &[]).unwrap();
    assert_eq!(s.load(DeviceId(devices[0].0)).unwrap(), None);
    assert_eq!(s.load(DeviceId(devices[1].0)).unwrap(), Some(history(11)));
    assert_eq!(s.device_records().unwrap(), 3);
}

#[test]
fn values_of_another_version_are_refused() {
    let mut v = encode(&5u32);
    assert!(decode_raw(&v).is_ok());
    v[0] = 9;
    let n = v.len();
    let crc = crc32fast::hash(&v[..n - 4]);
    v[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_raw(&v).unwrap_err(),
        format!("value version 9 is not {VALUE_VERSION}")
    );
}

/// Ids spread over the buckets, as HMAC outputs are.
fn spread_id(i: u128) -> DeviceId {
    DeviceId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

/// issue 20: histories below the write threshold are committed in the
/// checkpoint's parts, not the tree; they are found before and after a
/// restart, and a commit that reaches the threshold writes them all.
#[test]
fn histories_ride_in_the_parts_until_a_commit_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let id = spread_id;
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        s.set_write_at(100);
        for i in 0..10 {
            s.save(id(i), &at(100));
        }
        s.remove(id(99));
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        assert_eq!(s.device_records().unwrap(), 0, "not in the tree yet");
        assert_eq!(s.pending_histories(), 11);
        assert_eq!(s.load(id(3)).unwrap(), Some(at(100)));
    }
    let mut s = reopen(&path, &ident()).unwrap();
    s.set_write_at(100);
    let mut cp = s.load_checkpoint(usize::MAX).unwrap().unwrap();
    assert_eq!(s.pending_histories(), 11, "back from the parts");
    for i in 0..10 {
        assert_eq!(s.load(id(i)).unwrap(), Some(at(100)), "after a restart");
    }
    for i in 10..100 {
        s.save(id(i), &at(101));
    }
    s.commit(&mut cp, &[]).unwrap();
    assert_eq!(s.pending_histories(), 0);
    assert_eq!(s.device_records().unwrap(), 100, "written at the threshold");
    drop(s);
    // That commit's parts still hold them: a restart writes them again,
    // which changes nothing.
    let mut s = reopen(&path, &ident()).unwrap();
    s.load_checkpoint(usize::MAX).unwrap().unwrap();
    assert_eq!(s.load(id(50)).unwrap(), Some(at(101)));
    assert_eq!(s.load(id(5)).unwrap(), Some(at(100)));
    s.write_histories().unwrap();
    assert_eq!(s.device_records().unwrap(), 100);
}

/// issue 20: histories a thread is writing are read from memory and held
/// by every commit's parts until one finds them written; a thread that
/// fails hands them back.
#[test]
fn histories_in_flight_ride_in_the_parts_until_written() {
    use super::histories::Gate;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let id = spread_id;
    {
        let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
        s.set_write_at(5);
        let gate = s.gate_next_flight();
        for i in 0..10 {
            s.save(id(i), &at(100));
        }
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        assert_eq!(s.pending_histories(), 0, "all handed to the thread");
        assert!(s.writing_histories());
        assert_eq!(
            s.load(id(3)).unwrap(),
            Some(at(100)),
            "read while in flight"
        );
        s.save(id(3), &at(101));
        s.save(id(10), &at(101));
        // The thread is still held: this commit must hold its histories.
        s.commit(&mut Checkpoint::default(), &[]).unwrap();
        assert_eq!(s.load(id(3)).unwrap(), Some(at(101)), "the newer one");
        // A crash: the thread never wrote.
        gate.send(Gate::Vanish).unwrap();
    }
    let mut s = reopen(&path, &ident()).unwrap();
    s.set_write_at(5);
    let mut cp = s.load_checkpoint(usize::MAX).unwrap().unwrap();
    assert_eq!(s.pending_histories(), 11, "from the parts, once each");
    assert_eq!(s.device_records().unwrap(), 0);
    assert_eq!(s.load(id(3)).unwrap(), Some(at(101)));
    assert_eq!(s.load(id(7)).unwrap(), Some(at(100)));

    // A thread that fails hands its histories back, under newer ones.
    let gate = s.gate_next_flight();
    s.commit(&mut cp, &[]).unwrap();
    s.save(id(7), &at(102));
    gate.send(Gate::Fail).unwrap();
    while s.writing_histories() {
        std::thread::yield_now();
    }
    let err = s.commit(&mut cp, &[]).unwrap_err();
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("failed on purpose"), "{err}");
    assert_eq!(s.pending_histories(), 11);
    assert_eq!(s.load(id(7)).unwrap(), Some(at(102)));
    assert_eq!(s.load(id(3)).unwrap(), Some(at(101)));

    // Written before a commit: that commit's parts hold none of them.
    s.commit(&mut cp, &[]).unwrap();
    while s.writing_histories() {
        std::thread::yield_now();
    }
    s.commit(&mut cp, &[]).unwrap();
    drop(s);
    let mut s = reopen(&path, &ident()).unwrap();
    s.load_checkpoint(usize::MAX).unwrap().unwrap();
    assert_eq!(s.pending_histories(), 0);
    assert_eq!(s.device_records().unwrap(), 11);
    assert_eq!(s.load(id(7)).unwrap(), Some(at(102)));
    assert_eq!(s.load(id(10)).unwrap(), Some(at(101)));
}
