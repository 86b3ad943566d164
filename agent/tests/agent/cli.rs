//! The `footfall-agent` binary end to end: crash safety under kill -9,
//! idempotent replay, clear errors on bad files, and privacy (no MAC in
//! anything the agent writes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::audit::{element_bytes, files_under, find_bytes, find_mac, transmitters};

const BIN: &str = env!("CARGO_BIN_EXE_footfall-agent");

fn agent(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("FOOTFALL_LOG", "debug")
        .output()
        .unwrap()
}

fn write_config(dir: &Path, state: &str) -> PathBuf {
    let path = dir.join(format!("{state}.toml"));
    std::fs::write(
        &path,
        format!("[store]\nstore_id = \"shop-1\"\nagent_id = \"door\"\ntimezone = \"Europe/Prague\"\n\n[storage]\npath = \"{state}\"\n\n[privacy]\nmode = \"loyalty\"\nkey_file = \"footfall.key\"\n"),
    )
    .unwrap();
    path
}

fn simulate(dir: &Path, name: &str, days: &str, seed: &str) -> PathBuf {
    simulate_with(dir, name, days, seed, "300")
}

fn simulate_with(dir: &Path, name: &str, days: &str, seed: &str, visitors: &str) -> PathBuf {
    let out = agent(
        &[
            "simulate",
            "--out",
            name,
            "--days",
            days,
            "--seed",
            seed,
            "--timezone",
            "Europe/Prague",
            "--start",
            "2026-10-20",
            "--visitors-per-day",
            visitors,
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(name)
}

/// Emit file lines by report key; panics if a key has two contents.
/// Runs `args` again and again, killing it with -9 after pseudo-random
/// delays below `max_ms`, `kills_wanted` times, then lets a run finish
/// (`tries` runs at most); `after` looks at what each run left behind.
/// Returns the kills that landed mid-run and whether a run finished.
pub fn kill_9_at_random(
    dir: &Path,
    args: &[&str],
    (max_ms, kills_wanted, tries): (u64, u32, u32),
    mut after: impl FnMut(),
) -> (u32, bool) {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let (mut kills, mut finished) = (0, false);
    for _ in 0..tries {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = if kills < kills_wanted {
            seed % max_ms
        } else {
            600_000
        };
        let mut waited = 0;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if waited >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
            waited += 5;
        };
        match status {
            Some(s) => {
                assert!(s.success(), "run failed after {kills} kills");
                finished = true;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        after();
        if finished {
            break;
        }
    }
    (kills, finished)
}

fn by_key(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let key = format!(
            "{}/{}/{}{}",
            v["store_id"], v["agent_id"], v["window_start"], v["date"]
        );
        v.as_object_mut().unwrap().remove("seq");
        let content = v.to_string();
        if let Some(prev) = out.insert(key.clone(), content.clone()) {
            assert_eq!(prev, content, "key {key} appeared with two contents");
        }
    }
    out
}

#[test]
fn kill_9_at_random_points_changes_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Several days (residents, returning visitors, a DST change on 25
    // October) and enough traffic that a run takes a while.
    let capture = simulate_with(d, "store.pcap", "8", "11", "1500");
    let reference_cfg = write_config(d, "reference");
    let started = std::time::Instant::now();
    let out = agent(
        &[
            "replay",
            "--config",
            reference_cfg.to_str().unwrap(),
            "--emit",
            "reference.jsonl",
            "store.pcap",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_ms = started.elapsed().as_millis() as u64;
    let reference = by_key(&d.join("reference.jsonl"));
    assert!(reference.len() > 500);

    // Kill after pseudo-random delays until a run finishes on its own.
    // A sixth of a run at most: a kill then lands before the end even when
    // a resumed run starts near it (with a third, replay on two threads
    // sometimes finished after four kills).
    let cfg = write_config(d, "crashy");
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
        (run_ms / 6 + 1, 12, 40),
        || {},
    );
    assert!(finished, "replay never finished");
    assert!(kills >= 5, "only {kills} kills landed mid-run");
    let crashy = by_key(&d.join("crashy.jsonl"));
    assert_eq!(crashy.len(), reference.len());
    for (k, v) in &reference {
        assert_eq!(
            crashy.get(k),
            Some(v),
            "report {k} differs after {kills} kills"
        );
    }
    println!(
        "{kills} kills -9; all {} reports identical to the uninterrupted run",
        reference.len()
    );
}

#[test]
fn replaying_counted_files_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate(d, "a.pcap", "2", "1");
    simulate(d, "b.pcap", "1", "2");
    let cfg = write_config(d, "state");
    let cfg = cfg.to_str().unwrap();
    let first = agent(
        &["replay", "--config", cfg, "--emit", "r.jsonl", "a.pcap"],
        d,
    );
    assert!(first.status.success());
    let before = std::fs::read(d.join("r.jsonl")).unwrap();
    let again = agent(
        &["replay", "--config", cfg, "--emit", "r.jsonl", "a.pcap"],
        d,
    );
    assert!(again.status.success());
    assert_eq!(std::fs::read(d.join("r.jsonl")).unwrap(), before);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already counted; skipped"));
}

/// A device or a pipe cannot be synced: reports to one are written and
/// the replay goes on (a file's sync failing is still an error).
#[test]
fn replay_can_emit_to_dev_null() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate(d, "a.pcap", "2", "1");
    let cfg = write_config(d, "state");
    let out = agent(
        &[
            "replay",
            "--config",
            cfg.to_str().unwrap(),
            "--emit",
            "/dev/null",
            "a.pcap",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("replay done"));
}

#[test]
fn a_bad_file_stops_replay_with_its_name_and_keeps_what_was_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = simulate(d, "good.pcap", "2", "5");
    // A copy cut in the middle of a record.
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(d.join("cut.pcap"), &bytes[..bytes.len() / 2 + 7]).unwrap();
    let cfg = write_config(d, "state");
    let cfg = cfg.to_str().unwrap();
    let out = agent(
        &["replay", "--config", cfg, "--emit", "r.jsonl", "cut.pcap"],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.pcap: after") && err.contains("truncated"),
        "{err}"
    );
    assert!(
        err.contains("everything before this point is counted and saved"),
        "{err}"
    );
    let counted = by_key(&d.join("r.jsonl")).len();
    assert!(counted > 50, "{counted} reports kept");

    let out = agent(
        &["replay", "--config", cfg, "--emit", "r.jsonl", "nope.pcap"],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.pcap: cannot open"));
}

#[test]
fn check_config_lists_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "[store]\nstore_id = \"a/b\"\nagent_id = \"x\"\n[counting]\nmin_dwell_s = 999999\n[storage]\npath = \"s\"\n").unwrap();
    let out = agent(&["check-config", "--config", "bad.toml"], d);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2: store_id = \"a/b\""), "{err}");
    assert!(
        err.contains("bad.toml:5: min_dwell_s = 999999: must be 0..86400"),
        "{err}"
    );
    write_config(d, "ok");
    let out = agent(&["check-config", "--config", "ok.toml"], d);
    assert!(out.status.success());
}

/// SPEC §2 and §8: no MAC, no SSID and no information-element bytes in
/// anything the agent writes: state, reports, logs, the evaluation's
/// picture and table, a calibration.
#[test]
fn no_mac_ssid_or_element_reaches_any_file_the_agent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let capture = simulate(d, "store.pcap", "4", "3");
    let out = agent(
        &[
            "simulate",
            "--out",
            "truth.pcap",
            "--days",
            "1",
            "--seed",
            "9",
            "--staff",
            "0",
            "--truth",
            "truth.occupancy.tsv",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let macs = transmitters(&capture).unwrap();
    assert!(macs.len() > 1000, "{} MACs fed", macs.len());
    let mut elements = element_bytes(&capture).unwrap();
    elements.extend(element_bytes(&d.join("truth.pcap")).unwrap());
    let ssids = elements.iter().filter(|e| e.starts_with(b"home-")).count();
    assert!(
        ssids > 100 && elements.len() > ssids + 4,
        "{ssids} SSIDs of {} element bodies fed",
        elements.len()
    );
    // Opt out a few devices: the list holds MACs, which must not spread.
    let opt: Vec<String> = macs
        .iter()
        .take(3)
        .map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    std::fs::write(d.join("optout.txt"), opt.join("\n")).unwrap();
    let cfg = write_config(d, "state");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += "opt_out_file = \"optout.txt\"\n";
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();

    let mut logs = Vec::new();
    for args in [
        vec!["check-config", "--config", cfg],
        vec!["inspect", "store.pcap"],
        vec!["inspect", "--json", "store.pcap"],
        vec![
            "replay",
            "--config",
            cfg,
            "--emit",
            "reports.jsonl",
            "store.pcap",
        ],
        vec!["replay", "--config", cfg, "--emit", "-", "store.pcap"],
        vec!["evaluate", "--svg", "e.svg", "truth.pcap"],
        vec!["evaluate", "--json", "--svg", "e2.svg", "truth.pcap"],
        vec!["calibrate", "--out", "cal.toml", "truth.pcap"],
    ] {
        let out = agent(&args, d);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        logs.push(out.stdout);
        logs.push(out.stderr);
    }
    let mut files = Vec::new();
    files_under(d, &mut files);
    let written: Vec<_> = files
        .iter()
        .filter(|p| {
            !p.ends_with("store.pcap") && !p.ends_with("truth.pcap") && !p.ends_with("optout.txt")
        })
        .collect();
    assert!(written.iter().any(|p| p.ends_with("reports.jsonl")));
    assert!(written.iter().any(|p| p.ends_with("e.svg")));
    assert!(written.iter().any(|p| p.ends_with("cal.toml")));
    assert!(written.iter().any(|p| p.starts_with(d.join("state"))));
    for p in written {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(
            find_mac(&bytes, &macs),
            None,
            "a fed MAC is in {}",
            p.display()
        );
        assert_eq!(
            find_bytes(&bytes, &elements),
            None,
            "an SSID or element is in {}",
            p.display()
        );
    }
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(
            find_mac(log, &macs),
            None,
            "a fed MAC is in the output of command {}",
            i / 2
        );
        assert_eq!(
            find_bytes(log, &elements),
            None,
            "an SSID or element is in the output of command {}",
            i / 2
        );
    }
    // And finds element bytes when they are there, raw or as hex.
    let e = elements.iter().next().unwrap().clone();
    let hex: String = e.iter().map(|b| format!("{b:02x}")).collect();
    assert!(find_bytes(&[b"x".to_vec(), e, b"y".to_vec()].concat(), &elements).is_some());
    assert!(find_bytes(hex.as_bytes(), &elements).is_some());
    // The search itself finds a MAC when there is one.
    let one = *macs.iter().next().unwrap();
    assert!(find_mac(&one, &macs).is_some());
    let text = one
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-");
    assert!(find_mac(format!("x {text} y").as_bytes(), &macs).is_some());
}

/// Live capture on an interface that is not in monitor mode (loopback):
/// `run` stops with a message saying what is wrong and what to do.
#[test]
fn run_on_a_non_monitor_interface_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("lo.toml"),
        "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[capture]\ninterface = \"lo\"\n[storage]\npath = \"state\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = agent(&["run", "--config", "lo.toml"], d);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") || err.contains("permission") {
        println!("skipped the link-type check: capturing needs CAP_NET_RAW ({err})");
        assert!(
            err.contains("lo: cannot capture") && err.contains("CAP_NET_RAW"),
            "{err}"
        );
        return;
    }
    assert!(
        err.contains("lo: link type 1 (Ethernet) is not 802.11"),
        "{err}"
    );
    assert!(err.contains("capture in monitor mode"), "{err}");
}

/// `doctor` names each problem it can see on this machine, and what to do.
#[test]
fn doctor_finds_what_is_wrong_with_a_box() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("footfall.key"), [7u8; 32]).unwrap();
    std::fs::set_permissions(
        d.join("footfall.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("a.toml"),
        format!(
            "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[capture]\ninterface = \"nosuch0\"\n[storage]\npath = \"/proc/footfall-state\"\n\
             [privacy]\nkey_file = \"footfall.key\"\n[mqtt]\nurl = \"mqtts://127.0.0.1:{port}\"\nca_file = \"missing-ca.crt\"\n"
        ),
    )
    .unwrap();
    // Columns are padded; compare with single spaces.
    let squeeze = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = agent(&["doctor", "--config", "a.toml", "--listen-s", "1"], d);
    assert_eq!(out.status.code(), Some(1));
    let text = squeeze(&out.stdout);
    for want in [
        "FAIL interface nosuch0 does not exist: run `firmware-config/monitor-mode",
        "FAIL key file footfall.key is readable by others (mode 0644): chmod 600",
        "FAIL state directory /proc",
        "FAIL TLS files [mqtt] ca_file missing-ca.crt cannot be read",
        "ok config",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    // Loopback: exists but is no monitor interface; no broker listening.
    std::fs::write(
        d.join("b.toml"),
        format!("[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[capture]\ninterface = \"lo\"\n[storage]\npath = \"state\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let out = agent(&["doctor", "--config", "b.toml", "--listen-s", "1"], d);
    let text = squeeze(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ok interface lo exists"), "{text}");
    assert!(
        text.contains("FAIL monitor mode lo is not in monitor mode (ARPHRD type 772)"),
        "{text}"
    );
    assert!(text.contains("ok state directory"), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL broker mqtt://127.0.0.1:{port}: I/O: Connection refused"
        )),
        "{text}"
    );
}
