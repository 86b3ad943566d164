//! Issue 18's privacy modes on disk, through the binary: what `daily` and
//! `ephemeral` leave in the files the agent writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use footfall_agent::config::Config;
use footfall_agent::privacy::{Keyer, KEY_LEN};
use footfall_agent::store::{Identity, Store};
use footfall_agent::wire::ieee80211::Mac;
use footfall_report::Report;

use crate::audit::{files_under, find_bytes, find_mac, transmitters};
use crate::cli::kill_9_at_random;

const BIN: &str = env!("CARGO_BIN_EXE_footfall-agent");

fn agent(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("FOOTFALL_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn simulate(dir: &Path, name: &str, start: &str, days: &str) -> PathBuf {
    agent(
        &[
            "simulate",
            "--out",
            name,
            "--days",
            days,
            "--seed",
            "5",
            "--start",
            start,
            "--timezone",
            "Europe/Prague",
            "--visitors-per-day",
            "200",
        ],
        dir,
    );
    dir.join(name)
}

fn config(dir: &Path, name: &str, mode: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nstore_id = \"shop-1\"\nagent_id = \"door\"\ntimezone = \"Europe/Prague\"\n\
             [storage]\npath = \"{name}-state\"\n\
             [privacy]\nmode = \"{mode}\"\nkey_file = \"{name}.key\"\n"
        ),
    )
    .unwrap();
    path
}

fn replay(dir: &Path, config: &Path, emit: &str, capture: &Path) {
    agent(
        &[
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--emit",
            emit,
            capture.to_str().unwrap(),
        ],
        dir,
    );
}

/// Every form a device id could take in a file: its 16 bytes either way
/// round, as postcard writes a u128, and (through `find_bytes`) as hex.
fn id_forms(key: &[u8; KEY_LEN], macs: &HashSet<[u8; 6]>) -> HashSet<Vec<u8>> {
    let keyer = Keyer::new(key);
    let mut forms = HashSet::new();
    for mac in macs {
        let id = keyer.id(&Mac(*mac)).0;
        forms.insert(id.to_be_bytes().to_vec());
        forms.insert(id.to_le_bytes().to_vec());
        forms.insert(postcard::to_stdvec(&id).unwrap());
    }
    forms
}

/// Where any of `forms` is in a file under `dir`.
fn found_in(dir: &Path, forms: &HashSet<Vec<u8>>) -> Vec<String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .iter()
        .filter_map(|f| {
            let bytes = std::fs::read(f).ok()?;
            find_bytes(&bytes, forms).map(|w| format!("{}: {w}", f.display()))
        })
        .collect()
}

/// The current key of a rotating key file (`FFK1`, epoch, key, ...).
fn rotating_key(path: &Path) -> (i64, [u8; KEY_LEN], usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"FFK1");
    let epoch = i64::from_le_bytes(bytes[4..12].try_into().unwrap());
    let key = bytes[12..12 + KEY_LEN].try_into().unwrap();
    (epoch, key, (bytes.len() - 4) / (8 + KEY_LEN))
}

/// `daily`: the ids of one day are HMACs under a key that is gone the
/// next day, with every device state of that day. The test computes the
/// first day's ids itself and searches every file for them; the same
/// search over a `loyalty` state finds them, so it would see them.
#[test]
fn daily_leaves_nothing_on_disk_that_names_a_device_of_the_day_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The same seed on two days: the same staff and regulars' MACs.
    let day1 = simulate(d, "day1.pcap", "2026-10-20", "1");
    let day2 = simulate(d, "day2.pcap", "2026-10-21", "1");
    let macs1 = transmitters(&day1).unwrap();
    let both: HashSet<[u8; 6]> = macs1
        .intersection(&transmitters(&day2).unwrap())
        .copied()
        .collect();
    assert!(both.len() >= 3, "MACs seen on both days: {}", both.len());

    let cfg = config(d, "daily", "daily");
    replay(d, &cfg, "daily1.jsonl", &day1);
    let (epoch1, key1, _) = rotating_key(&d.join("daily.key"));
    let yesterday = id_forms(&key1, &macs1);
    replay(d, &cfg, "daily2.jsonl", &day2);
    let (epoch2, key2, entries) = rotating_key(&d.join("daily.key"));
    assert_eq!(epoch2, epoch1 + 1);
    assert_eq!(entries, 1, "the first day's key is gone from the key file");
    // Unrelated ids for the MACs seen on both days.
    let (k1, k2) = (Keyer::new(&key1), Keyer::new(&key2));
    for mac in &both {
        assert_ne!(k1.id(&Mac(*mac)), k2.id(&Mac(*mac)));
    }
    let hits = found_in(d, &yesterday);
    assert!(hits.is_empty(), "the first day's ids on disk: {hits:?}");

    // Never a returning visitor, and no resident by history: null.
    let mut visitors = 0;
    for line in std::fs::read_to_string(d.join("daily2.jsonl"))
        .unwrap()
        .lines()
    {
        match serde_json::from_str::<Report>(line).unwrap() {
            Report::Day(r) => {
                assert_eq!((r.visitors_returning, r.residents), (None, None));
                visitors += r.unique_visitors.unwrap();
            }
            Report::Window(w) => assert_eq!(w.visitors_returning, None),
        }
    }
    assert!(visitors > 50, "{visitors} visitors on the second day");

    // The control: the same search finds a loyalty state's ids.
    let loyal = tempfile::tempdir().unwrap();
    let l = loyal.path();
    let cfg = config(l, "loyalty", "loyalty");
    replay(l, &cfg, "l.jsonl", &day1);
    replay(l, &cfg, "l2.jsonl", &day2);
    let key: [u8; KEY_LEN] = std::fs::read(l.join("loyalty.key"))
        .unwrap()
        .try_into()
        .unwrap();
    assert!(
        !found_in(l, &id_forms(&key, &macs1)).is_empty(),
        "the search finds ids where they are kept"
    );
}

/// `ephemeral`: at random moments, and after kill -9 at each, the state
/// on disk holds no device id or fingerprint and no device history, and
/// no file holds a MAC. Counting goes on after every restart: each window
/// is reported once, with the frames of an uninterrupted run.
#[test]
fn ephemeral_keeps_no_device_on_disk_even_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let capture = simulate(d, "store.pcap", "2026-10-20", "3");
    let macs = transmitters(&capture).unwrap();
    let reference_cfg = config(d, "reference", "ephemeral");
    let started = std::time::Instant::now();
    replay(d, &reference_cfg, "reference.jsonl", &capture);
    let run_ms = started.elapsed().as_millis() as u64;
    let frames = |path: &Path| -> Vec<(i64, u64)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| match serde_json::from_str::<Report>(l).unwrap() {
                Report::Window(w) => {
                    assert_eq!(w.visits, None);
                    assert_eq!(w.visitor_sketch, None);
                    Some((w.window_start, w.frames))
                }
                Report::Day(_) => None,
            })
            .collect()
    };
    let reference = frames(&d.join("reference.jsonl"));
    assert!(reference.len() > 200);

    let cfg = config(d, "crashy", "ephemeral");
    let config = Config::load(&cfg).unwrap();
    let identity = Identity::new("shop-1", "door", &config.counting_hash());
    let (kills, finished) = kill_9_at_random(
        d,
        &[
            "replay",
            "--config",
            cfg.to_str().unwrap(),
            "--emit",
            "crashy.jsonl",
            capture.to_str().unwrap(),
        ],
        (run_ms / 4 + 1, 6, 30),
        || {
            let mut store = Store::open(&config.storage_path, 1 << 20, &identity).unwrap();
            if let Some(cp) = store.load_checkpoint(usize::MAX).unwrap() {
                assert_eq!(cp.counter.device_ids(), 0, "ids in the checkpoint");
            }
            assert_eq!(store.device_records().unwrap(), 0, "device histories");
            drop(store);
            let mut files = Vec::new();
            files_under(d, &mut files);
            for f in files
                .iter()
                .filter(|f| f.extension().is_none_or(|e| e != "pcap"))
            {
                let bytes = std::fs::read(f).unwrap();
                assert_eq!(find_mac(&bytes, &macs), None, "a MAC in {}", f.display());
            }
            // sled's lock outlives the process by a moment.
            std::thread::sleep(Duration::from_millis(50));
        },
    );
    assert!(finished, "replay never finished");
    assert!(kills >= 3, "only {kills} kills landed mid-run");
    let mut crashy = frames(&d.join("crashy.jsonl"));
    crashy.sort();
    crashy.dedup();
    assert_eq!(crashy, reference, "frames per window after {kills} kills");
}
