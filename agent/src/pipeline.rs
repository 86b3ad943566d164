//! The agent's pipeline state, shared by `replay` and `run`: the store, the
//! counter and the input files' progress, opened from a config, and the
//! checkpoint that numbers final reports and commits them with the state.
//!
//! Invariants: a report gets its `seq` here, once, in the order it became
//! final; a checkpoint commits the counter's state, the files' progress,
//! the next `seq` and the new reports in one store transaction, so after
//! kill -9 the state and the outbox agree. The checkpoint policy (when to
//! take one) is the constants below, used by both commands.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use footfall_report::Report;
use sha2::{Digest, Sha256};

use crate::config::{Config, Rotation};
use crate::count::{Counter, ReportMeta};
use crate::days::LocalDays;
use crate::detect::Detector;
use crate::privacy::{load_opt_out, Keys};
use crate::store::{Checkpoint, FileProgress, Identity, Sealer, Store};
use crate::wire::linktype::LinkType;

/// Checkpoint when this long has passed with reports waiting, or when this
/// many reports wait, whichever comes first. Never per frame; a crash
/// re-reads at most what came after the last checkpoint.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
pub const CHECKPOINT_REPORTS: usize = 96;
/// A replay waits this many times as long as its last checkpoint took
/// before the next one that only reports wait for: checkpoints stay under
/// a twentieth of its time, and a crash re-reads a few seconds at most.
pub const CHECKPOINT_COST_SHARE: u32 = 20;
/// Device histories handed to the store before a checkpoint is taken even
/// with no report waiting: the commit writes them to the store's tree
/// (`Store::commit`), which bounds what the store holds.
pub const CHECKPOINT_HISTORIES: usize = crate::store::WRITE_HISTORIES_AT;
/// Randomized visitors added or taken back since the last commit past
/// which a checkpoint is taken, reports or not. Until a commit merges them
/// into the day's parts they are held in memory, an id set and its filter
/// at 20 to 40 bytes each; checkpoints otherwise come by the clock, and a
/// slow commit spaces them out (`CHECKPOINT_COST_SHARE`). A replay of the
/// 100 k crowd added up to 78,000 between two (issue 20): this bounds
/// them at about 5 MiB whatever the commits cost.
pub const CHECKPOINT_RANDOMIZED: usize = 1 << 17;

/// Identifies an input file by its first 64 KiB: the same capture is found
/// again under another name, and a capture that grew keeps its identity.
pub fn fingerprint(path: &Path) -> Result<[u8; 32]> {
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Sha256::digest(&head).into())
}

/// The detector a config asks for: SPEC §1's thresholds, the opt-out
/// list, and `keys` (the deployment's; `evaluate` keys that never leave
/// memory).
pub fn detector(config: &Config, keys: Keys) -> Result<Detector> {
    let opt_out = match &config.opt_out_file {
        Some(p) => load_opt_out(p)?,
        None => Default::default(),
    };
    let c = &config.counting;
    Ok(Detector::new(
        LinkType::Radiotap,
        keys,
        opt_out,
        c.rssi_floor_dbm as i8,
        c.visit_rssi_dbm as i8,
    ))
}

/// The deployment's keys, as the config's privacy mode keeps them.
pub fn keys(config: &Config) -> Result<Keys> {
    Ok(Keys::open(
        config.privacy.rotation,
        &config.key_file,
        LocalDays::new(config.timezone.clone()),
    )?)
}

/// The agent's state, opened from a config: shared by `replay` and `run`.
pub struct Agent {
    pub store: Store,
    pub counter: Counter,
    pub files: Vec<FileProgress>,
    pub next_seq: u64,
    /// Day-rotating modes: the key file the state's sealer keys are in.
    sealed_by: Option<PathBuf>,
    /// Tells the detector which key epoch is committed (`Keys::retire`).
    committed_epoch: Arc<AtomicI64>,
    /// `CHECKPOINT_RANDOMIZED`, lower in tests.
    randomized_due: usize,
}

impl Agent {
    /// What it holds per device against its budgets, for `/metrics` and
    /// the retained status.
    pub fn memory(&self) -> footfall_report::Memory {
        let (entries, observed) = self.counter.held_per_device();
        let state = &self.counter.state;
        let (randomized_in_memory, filter_bytes) = state.randomized_in_memory();
        footfall_report::Memory {
            devices_in_memory: self.counter.devices_in_memory() as u64,
            device_budget: self.counter.device_budget() as u64,
            devices_spilled: crate::count::HistoryStore::spilled(&self.store) as u64,
            spill_bytes: self.store.spill_bytes(),
            window_entries: entries as u64,
            people_observations: observed as u64,
            people_budget: self.counter.people_budget() as u64,
            checkpoint_bulk_bytes: self.store.bulk_bytes(),
            randomized_visitors: state.randomized_visitors() as u64,
            randomized_in_memory: randomized_in_memory as u64,
            randomized_filter_bytes: filter_bytes as u64,
        }
    }

    /// Opens the state and makes the detector (key and opt-out loaded).
    pub fn open(config: &Config) -> Result<(Agent, Detector)> {
        let mut detector = detector(config, keys(config)?)?;
        let params_hash = config.params_hash();
        // The state depends on the device rules only: a new calibration
        // changes the reports' params_hash, not whose state this is.
        let identity = Identity::new(&config.store_id, &config.agent_id, &config.counting_hash());
        let mut store = Store::open(&config.storage_path, config.cache_bytes, &identity)?;
        let sealed_by =
            matches!(config.privacy.rotation, Rotation::Days(_)).then(|| config.key_file.clone());
        if let (Some(path), Some(epoch)) = (&sealed_by, store.checkpoint_epoch()?) {
            store.seal_under(Some(sealer(path, epoch)?));
        }
        let cp = store
            .load_checkpoint(config.device_budget)?
            .unwrap_or_default();
        if let Some(e) = store.sealed_epoch() {
            // The state is of epoch `e`: a key older than that, kept for a
            // crash before the rotation was committed, is not needed.
            detector.committed_epoch().store(e, Ordering::Relaxed);
            detector.retire_committed();
        }
        let meta = ReportMeta {
            store_id: config.store_id.clone(),
            agent_id: config.agent_id.clone(),
            agent_version: crate::VERSION.to_string(),
            params_hash,
        };
        let counter = Counter::new(&config.counting, config.timezone.clone(), meta, cp.counter)
            .with_people(config.people.clone())
            .with_privacy(config.privacy)
            .with_device_budget(config.device_budget)
            .with_people_budget(config.people_budget);
        let agent = Agent {
            store,
            counter,
            files: cp.files,
            next_seq: cp.next_seq,
            sealed_by,
            committed_epoch: detector.committed_epoch(),
            randomized_due: CHECKPOINT_RANDOMIZED,
        };
        Ok((agent, detector))
    }

    /// The progress entry of an input file, added if new.
    pub fn file_progress(&mut self, path: &Path) -> Result<usize> {
        let fp = fingerprint(path)?;
        Ok(match self.files.iter().position(|f| f.fingerprint == fp) {
            Some(i) => i,
            None => {
                self.files.push(FileProgress {
                    fingerprint: fp,
                    frames: 0,
                    done: false,
                });
                self.files.len() - 1
            }
        })
    }

    /// Whether enough device histories wait for a checkpoint to take one
    /// now, reports or not. Not while a thread still writes the last ones:
    /// the commit could not start writing these, only copy them into its
    /// parts again; they wait, up to `HistoryStore::full`. Or whether
    /// enough randomized visitors wait in memory (`CHECKPOINT_RANDOMIZED`).
    pub fn checkpoint_due(&self) -> bool {
        (self.store.pending_histories() >= CHECKPOINT_HISTORIES && !self.store.writing_histories())
            || self.counter.state.randomized_held() >= self.randomized_due
    }

    /// Numbers the reports that became final and commits them with the
    /// counter's state; returns them for delivery.
    pub fn checkpoint(&mut self) -> Result<Vec<Report>> {
        let mut reports = self.counter.drain_reports();
        for r in &mut reports {
            r.set_seq(self.next_seq);
            self.next_seq += 1;
        }
        self.commit(&reports)?;
        // Devices the store had no room for (a crowd leaving at once):
        // their histories written a bounded share at a time (no frame has
        // come since the commit, which `write_histories` needs), then the
        // state without them committed.
        if self.counter.has_deferred() {
            while self.counter.has_deferred() {
                self.counter.evict_deferred(&mut self.store)?;
                self.store.write_histories()?;
            }
            self.commit(&[])?;
        }
        // Once a day, after the commit (so that a crash before it still
        // finds every history the state it restarts from needs): a new day
        // report means a day left the horizon.
        if reports.iter().any(|r| matches!(r, Report::Day(_))) {
            if let Some(h) = self.counter.history_horizon() {
                let pruned = self.store.prune(h)?;
                tracing::debug!(
                    pruned = pruned.removed,
                    kept = pruned.kept,
                    "pruned device histories"
                );
            }
        }
        Ok(reports)
    }

    /// Commits the counter's state with `reports`, sealed under the
    /// counter's key epoch.
    fn commit(&mut self, reports: &[Report]) -> Result<()> {
        let epoch = self.counter.key_epoch();
        if let (Some(path), Some(e)) = (&self.sealed_by, epoch) {
            if self.store.sealed_epoch() != Some(e) {
                let sealer = match crate::privacy::keys::stored_key(path, e)? {
                    Some(key) => Some(Sealer::new(e, &key)),
                    // Live, the clock ended the day before any frame of the
                    // new one made its key: nothing of the epoch to seal.
                    None if self.counter.state.device_ids() == 0
                        && self.store.pending_histories() == 0 =>
                    {
                        None
                    }
                    None => sealer(path, e).map(Some)?,
                };
                self.store.seal_under(sealer);
            }
        }
        let mut cp = Checkpoint {
            counter: std::mem::take(&mut self.counter.state),
            files: self.files.clone(),
            next_seq: self.next_seq,
        };
        let result = self.store.commit(&mut cp, reports);
        self.counter.state = cp.counter;
        result?;
        if let Some(e) = epoch {
            self.committed_epoch.store(e, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The sealer of key epoch `epoch`, from the key file at `path`.
fn sealer(path: &Path, epoch: i64) -> Result<Sealer> {
    match crate::privacy::keys::stored_key(path, epoch)? {
        Some(key) => Ok(Sealer::new(epoch, &key)),
        None => anyhow::bail!(
            "{}: holds no key for key epoch {epoch}, which the state is sealed under; \
             was the key file replaced? Move the state away to start over",
            path.display()
        ),
    }
}

/// The checkpoint and the outbox without MQTT: what a crash or a restart
/// between checkpoint and delivery leaves behind.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Detection;
    use crate::privacy::DeviceId;

    /// 2026-03-02T00:00:00Z, window-aligned.
    const T0: i64 = 1_772_409_600 * 1_000_000;

    fn config(dir: &Path) -> Config {
        let path = dir.join("agent.toml");
        let text = "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\ntimezone = \"UTC\"\n\
                    [storage]\npath = \"state\"\n[privacy]\nmode = \"loyalty\"\nkey_file = \"k.key\"\n";
        Config::parse(&path, text).expect("a valid config")
    }

    /// Opens again in the same process; sled's flusher thread can hold the
    /// lock a moment after the last handle is dropped (a real restart is a
    /// new process), so a held lock is retried for up to 5 s.
    fn reopen(config: &Config) -> Agent {
        for _ in 0..100 {
            match Agent::open(config) {
                Ok((agent, _)) => return agent,
                Err(e) if format!("{e:#}").contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e:#}"),
            }
        }
        panic!("the store stayed locked")
    }

    /// A strong detection of the one device these tests follow, `t_s`
    /// after T0, with its id made in key epoch `epoch`.
    fn detection(t_s: i64, epoch: i64) -> Detection {
        Detection {
            t_us: T0 + t_s * 1_000_000,
            device: DeviceId(7),
            randomized: false,
            strong: true,
            no_signal: false,
            seq: 0,
            fingerprint: 0,
            rssi_dbm: None,
            epoch,
        }
    }

    fn feed(agent: &mut Agent, from_s: i64, to_s: i64) {
        for t in (from_s..to_s).step_by(60) {
            let d = detection(t, 0);
            agent.counter.detection(&d, &mut agent.store).unwrap();
        }
    }

    #[test]
    fn checkpoint_numbers_in_order_and_a_restart_continues() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let first = {
            let (mut agent, _) = Agent::open(&config).unwrap();
            feed(&mut agent, 0, 3 * 3600);
            let reports = agent.checkpoint().unwrap();
            assert!(reports.len() >= 2, "{} reports", reports.len());
            let seqs: Vec<u64> = reports.iter().map(Report::seq).collect();
            assert_eq!(seqs, (0..reports.len() as u64).collect::<Vec<_>>());
            // Nothing acked: the outbox holds each, in seq order.
            assert_eq!(agent.store.outbox_seqs(), seqs);
            // A second checkpoint with nothing new numbers nothing.
            assert!(agent.checkpoint().unwrap().is_empty());
            agent.store.flush().unwrap();
            reports
        };
        let mut agent = reopen(&config);
        assert_eq!(agent.next_seq, first.len() as u64);
        assert_eq!(agent.store.outbox().unwrap(), first);
        // The open session survived: detections an hour on extend it, and
        // the window they close reports one visit, not a new device's.
        feed(&mut agent, 3 * 3600, 4 * 3600);
        agent.counter.finish(&mut agent.store).unwrap();
        let more = agent.checkpoint().unwrap();
        assert_eq!(more[0].seq(), first.len() as u64);
        let visits: u64 = first
            .iter()
            .chain(&more)
            .filter_map(|r| match r {
                Report::Window(w) => w.visits,
                Report::Day(_) => None,
            })
            .sum();
        assert_eq!(visits, 1, "one session of four hours is one visit");
    }

    /// Live under daily keys the wall clock can end the day before any
    /// frame of the next one has made its key: the checkpoint then has
    /// nothing of the new day to seal, commits, and the state reopens;
    /// the first frame of the new day makes its key and seals again.
    #[test]
    fn a_day_ended_by_the_clock_commits_before_the_new_key_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let text = "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\ntimezone = \"UTC\"\n\
                    [storage]\npath = \"state\"\n[privacy]\nmode = \"daily\"\nkey_file = \"k.key\"\n";
        let config = Config::parse(&path, text).unwrap();
        let day = |t_us: i64| t_us.div_euclid(86_400 * 1_000_000);
        let det = |t_s: i64, keys: &mut Keys| {
            let epoch = keys.advance(T0 + t_s * 1_000_000).unwrap();
            detection(t_s, epoch)
        };
        {
            let (mut agent, _) = Agent::open(&config).unwrap();
            let mut keys = keys(&config).unwrap();
            for m in 0..20 {
                let d = det(10 * 3600 + m * 60, &mut keys);
                assert_eq!(d.epoch, day(T0));
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
            agent.checkpoint().unwrap();
            assert_eq!(agent.store.sealed_epoch(), Some(day(T0)));
            // The next day, by the wall clock only.
            agent
                .counter
                .advance(T0 + (86_400 + 60) * 1_000_000, &mut agent.store)
                .unwrap();
            let reports = agent.checkpoint().unwrap();
            assert!(reports.iter().any(|r| matches!(r, Report::Day(_))));
            assert_eq!(agent.counter.state.device_ids(), 0);
            assert_eq!(agent.store.sealed_epoch(), None);
            agent.store.flush().unwrap();
        }
        let mut agent = reopen(&config);
        let mut keys = keys(&config).unwrap();
        let d = det(86_400 + 3600, &mut keys);
        assert_eq!(d.epoch, day(T0) + 1);
        agent.counter.detection(&d, &mut agent.store).unwrap();
        agent.checkpoint().unwrap();
        assert_eq!(agent.store.sealed_epoch(), Some(day(T0) + 1));
    }

    #[test]
    fn delivered_reports_leave_the_outbox_and_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let all = {
            let (mut agent, _) = Agent::open(&config).unwrap();
            feed(&mut agent, 0, 3600);
            agent.counter.finish(&mut agent.store).unwrap();
            let all: Vec<u64> = agent
                .checkpoint()
                .unwrap()
                .iter()
                .map(Report::seq)
                .collect();
            // An ack for some, one of them twice, and one for a seq never
            // sent (a gateway restored from an older backup).
            agent
                .store
                .remove_delivered([all[0], all[2], all[0], 999])
                .unwrap();
            assert_eq!(agent.store.outbox_payload(all[0]).unwrap(), None);
            assert!(agent.store.outbox_payload(all[1]).unwrap().is_some());
            agent.store.flush().unwrap();
            all
        };
        let agent = reopen(&config);
        let left: Vec<u64> = all
            .iter()
            .copied()
            .filter(|s| *s != all[0] && *s != all[2])
            .collect();
        assert_eq!(agent.store.outbox_seqs(), left);
        assert_eq!(agent.store.outbox_size().0, left.len());
    }

    /// A crowd: 10,000 devices detected over the first ten minutes, so that
    /// the state's bulk (devices, entries, observations) is several parts.
    fn crowd(agent: &mut Agent) {
        crowd_of(agent, 10_000);
    }

    fn crowd_of(agent: &mut Agent, devices: u128) {
        for t in (0..600).step_by(120) {
            for dev in 0..devices {
                let d = Detection {
                    device: DeviceId(1000 + dev),
                    seq: (dev as u16).wrapping_mul(7).wrapping_add(t as u16),
                    fingerprint: (dev % 13) as u64,
                    rssi_dbm: Some(-60),
                    ..detection(t, 0)
                };
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
        }
    }

    /// issue 20: the bulk is written in parts beside the checkpoint. A
    /// restart in the middle of a crowd counts what an uninterrupted run
    /// counts, report for report.
    #[test]
    fn a_crowd_checkpointed_in_parts_restarts_where_it_was() {
        let run = |restart: bool| {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let (mut agent, _) = Agent::open(&config).unwrap();
            crowd(&mut agent);
            let mut reports = agent.checkpoint().unwrap();
            assert!(agent.counter.devices_in_memory() == 10_000);
            if restart {
                let file = agent.store.bulk_dir().join("1.parts");
                assert!(
                    std::fs::metadata(file).unwrap().len() > 500_000,
                    "the bulk is in its file"
                );
                drop(agent);
                agent = reopen(&config);
                assert!(agent.counter.devices_in_memory() == 10_000);
            }
            feed(&mut agent, 600, 3 * 3600);
            agent.counter.finish(&mut agent.store).unwrap();
            reports.extend(agent.checkpoint().unwrap());
            reports
        };
        let (straight, restarted) = (run(false), run(true));
        assert!(straight.len() > 8);
        assert_eq!(straight, restarted);
    }

    /// issue 20: the randomized visitors gone from memory (a crowd of
    /// rotating MACs leaves hundreds of thousands a day) are written in
    /// parts, not in the checkpoint's one value, and come back from them:
    /// those that return the same day are not counted again.
    #[test]
    fn randomized_visitors_are_checkpointed_in_parts() {
        let randomized = |t_s: i64, dev: u128| Detection {
            device: DeviceId(100_000 + dev),
            randomized: true,
            ..detection(t_s, 0)
        };
        let run = |restart: bool| {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let (mut agent, _) = Agent::open(&config).unwrap();
            // 6,000 visits of ten minutes, then an hour of one device.
            for t in (0..=600).step_by(60) {
                for dev in 0..6_000 {
                    let d = randomized(t, dev);
                    agent.counter.detection(&d, &mut agent.store).unwrap();
                }
            }
            feed(&mut agent, 660, 3600);
            let mut reports = agent.checkpoint().unwrap();
            let gone = agent.counter.state.randomized_visitors();
            assert_eq!(gone, 6_000, "the visitors left memory");
            let (in_memory, filters) = agent.counter.state.randomized_in_memory();
            assert_eq!(
                in_memory, 0,
                "the committed visitors are read from the parts"
            );
            assert!(filters < 6_000 * 5 / 2, "{filters} bytes find them there");
            let value = agent.store.checkpoint_value_bytes().unwrap();
            assert!(value < 20_000, "{value} bytes in the checkpoint's value");
            if restart {
                drop(agent);
                agent = reopen(&config);
                assert_eq!(agent.counter.state.randomized_visitors(), gone);
            }
            // Half of them come back the same day.
            for dev in (0..6_000).step_by(2) {
                let d = randomized(3600 + dev as i64 / 10, dev);
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
            agent.counter.finish(&mut agent.store).unwrap();
            reports.extend(agent.checkpoint().unwrap());
            reports
        };
        let (straight, restarted) = (run(false), run(true));
        let day = straight
            .iter()
            .find_map(|r| match r {
                Report::Day(d) => Some(d.clone()),
                _ => None,
            })
            .expect("a day report");
        assert_eq!(day.visitors_randomized, Some(6_000));
        assert_eq!(straight, restarted);
    }

    /// Randomized visitors who left wait in memory until a commit, and
    /// enough of them make a checkpoint due with nothing else waiting;
    /// the checkpoint takes them out of memory.
    #[test]
    fn randomized_visitors_waiting_in_memory_make_a_checkpoint_due() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _) = Agent::open(&config(dir.path())).unwrap();
        // 1,000 visits of ten minutes, then an hour of one device.
        for t in (0..=600).step_by(60) {
            for dev in 0..1_000 {
                let d = Detection {
                    device: DeviceId(100_000 + dev),
                    randomized: true,
                    ..detection(t, 0)
                };
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
        }
        feed(&mut agent, 660, 3600);
        let held = agent.counter.state.randomized_held();
        assert_eq!(held, 1_000, "the visitors who left wait in memory");
        agent.randomized_due = held + 1;
        assert!(!agent.checkpoint_due(), "nothing else waits");
        agent.randomized_due = held;
        assert!(agent.checkpoint_due());
        agent.checkpoint().unwrap();
        assert_eq!(agent.counter.state.randomized_held(), 0);
        assert!(!agent.checkpoint_due());
    }

    /// A part of randomized visitors damaged on disk after its commit is
    /// an error naming the file when a visitor comes back, not a visitor
    /// counted again.
    #[test]
    fn a_damaged_part_of_randomized_visitors_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (mut agent, _) = Agent::open(&config).unwrap();
        let randomized = |t_s: i64, dev: u128| Detection {
            device: DeviceId(100_000 + dev),
            randomized: true,
            ..detection(t_s, 0)
        };
        // Visits of ten minutes, then an hour of one device.
        for t in (0..=600).step_by(60) {
            for dev in 0..500 {
                let d = randomized(t, dev);
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
        }
        feed(&mut agent, 660, 3600);
        agent.checkpoint().unwrap();
        assert_eq!(agent.counter.state.randomized_visitors(), 500);
        assert_eq!(agent.counter.state.randomized_in_memory().0, 0);
        let file = std::fs::read_dir(agent.store.bulk_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parts"))
            .expect("the commit's parts");
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::write(&file, vec![0u8; len as usize]).unwrap();
        let e = agent
            .counter
            .detection(&randomized(3700, 7), &mut agent.store)
            .unwrap_err();
        let name = file.display().to_string();
        assert!(e.0.contains(&name), "{e}");
    }

    /// issue 20: with budgets below the crowd, the coldest devices are
    /// spilled, memory stays within the budget, a restart spills what the
    /// checkpoint holds beyond it and keeps each window's share of MACs
    /// observed; every device count is the one an unbounded run makes.
    #[test]
    fn a_crowd_over_the_device_budget_spills_and_counts_the_same() {
        let run = |budget: Option<usize>, restart: bool| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path());
            if let Some(b) = budget {
                config.device_budget = b;
                config.people_budget = b;
            }
            let (mut agent, _) = Agent::open(&config).unwrap();
            crowd_of(&mut agent, 1_500);
            let mut reports = agent.checkpoint().unwrap();
            let memory = agent.memory();
            if let Some(b) = budget {
                assert!(memory.devices_in_memory <= b as u64, "{memory:?}");
                assert!(memory.devices_spilled >= 1_000, "{memory:?}");
                assert!(memory.spill_bytes > 20_000, "{memory:?}");
                assert_eq!(memory.device_budget, b as u64);
            }
            if restart {
                drop(agent);
                agent = reopen(&config);
                let again = agent.memory();
                assert_eq!(
                    again.devices_in_memory + again.devices_spilled,
                    memory.devices_in_memory + memory.devices_spilled
                );
                assert!(again.devices_in_memory <= budget.unwrap_or(usize::MAX) as u64);
            }
            feed(&mut agent, 600, 3 * 3600);
            agent.counter.finish(&mut agent.store).unwrap();
            reports.extend(agent.checkpoint().unwrap());
            assert_eq!(agent.memory().devices_spilled, 0, "every device came back");
            reports
        };
        let unbounded = run(None, false);
        assert!(unbounded.len() > 8);
        let bounded = run(Some(250), false);
        assert_eq!(run(Some(250), true), bounded);
        // Device counts are exact; people estimates observed a share of
        // the phone models, and differ, which `params_hash` says.
        let counts = |reports: &[Report]| -> Vec<serde_json::Value> {
            reports
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap();
                    for k in [
                        "present_est",
                        "present_lo",
                        "present_hi",
                        "entries_est",
                        "person_hours_est",
                        "params_hash",
                    ] {
                        v.as_object_mut().unwrap().remove(k);
                    }
                    v
                })
                .collect()
        };
        assert_eq!(counts(&bounded), counts(&unbounded));
        assert_ne!(bounded, unbounded);
        let hash = |r: &Report| serde_json::to_value(r).unwrap()["params_hash"].clone();
        assert_ne!(hash(&bounded[0]), hash(&unbounded[0]));
    }

    /// issue 20: MACs heard in one burst (phones that rotate them),
    /// spilled over the budget, leave their window's entries and the
    /// window counts them; those heard again come back and are entered
    /// again (one becomes a visit), and a checkpoint taken meanwhile keeps
    /// them in parts of their own, entered again as they load. Every
    /// report is the one an unbounded run makes, with or without a restart
    /// from that checkpoint.
    #[test]
    fn rotating_macs_over_the_budget_are_counted_by_their_window() {
        // MAC i heard at i s and 5 s later; every 7th again after 320 s
        // (a visit), every 11th after 900 s (the next window).
        let mut heard: Vec<(i64, u128)> = Vec::new();
        for i in 0..2_700u128 {
            let t = i as i64;
            heard.extend([(t, i), (t + 5, i)]);
            if i % 7 == 0 {
                heard.push((t + 320, i));
            }
            if i % 11 == 0 {
                heard.push((t + 900, i));
            }
        }
        heard.sort_unstable();
        let run = |budget: Option<usize>, restart: bool| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path());
            if let Some(b) = budget {
                config.device_budget = b;
            }
            let (mut agent, _) = Agent::open(&config).unwrap();
            let mut reports = Vec::new();
            let mut counted = 0;
            for &(t, i) in &heard {
                if t == 1_500 && reports.is_empty() {
                    counted = agent.counter.counted_inert();
                    reports = agent.checkpoint().unwrap();
                    if restart {
                        drop(agent);
                        agent = reopen(&config);
                        assert_eq!(agent.counter.counted_inert(), 0, "entries again");
                    }
                }
                let d = Detection {
                    device: DeviceId(200_000 + i),
                    randomized: true,
                    rssi_dbm: Some(-60),
                    ..detection(t, 0)
                };
                agent.counter.detection(&d, &mut agent.store).unwrap();
            }
            agent.counter.finish(&mut agent.store).unwrap();
            reports.extend(agent.checkpoint().unwrap());
            assert_eq!(agent.memory().devices_spilled, 0);
            (reports, counted)
        };
        let (unbounded, none) = run(None, false);
        assert_eq!(none, 0);
        let window = |r: &Report| match r {
            Report::Window(w) => Some((
                w.detected.unwrap_or(0),
                w.visits.unwrap_or(0),
                w.passersby.unwrap_or(0),
            )),
            _ => None,
        };
        let windows: Vec<_> = unbounded.iter().filter_map(window).collect();
        assert!(
            windows.iter().any(|w| w.0 > 1_000 && w.1 > 50),
            "{windows:?}"
        );
        let (bounded, counted) = run(Some(250), false);
        assert!(counted > 500, "{counted} counted by their window");
        assert_eq!(bounded, unbounded);
        assert_eq!(run(Some(250), true).0, unbounded);
    }

    /// issue 20: a crowd leaving at once is handed to the store a bounded
    /// share a commit, the rest kept until the commit. Nothing of it
    /// changes a report or what the store ends with, even across a restart
    /// from a commit taken while devices waited (some of them spilled,
    /// which no window names any more).
    #[test]
    fn a_crowd_leaving_at_once_reaches_the_store_a_share_a_commit() {
        let run = |max_pending: Option<usize>, restart: bool| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path());
            if restart {
                config.device_budget = 250;
            }
            let (mut agent, _) = Agent::open(&config).unwrap();
            if let Some(n) = max_pending {
                agent.store.set_max_pending(n);
            }
            crowd_of(&mut agent, 1_500);
            let mut reports = agent.checkpoint().unwrap();
            feed(&mut agent, 600, 3 * 3600);
            if let Some(n) = max_pending {
                assert!(agent.counter.has_deferred(), "the crowd waits");
                assert!(agent.store.pending_histories() <= n);
            }
            if restart {
                // A crash inside `checkpoint`: after the commit with
                // devices waiting and one share of their histories written.
                let mut waiting = agent.counter.drain_reports();
                for r in &mut waiting {
                    r.set_seq(agent.next_seq);
                    agent.next_seq += 1;
                }
                agent.commit(&waiting).unwrap();
                reports.extend(waiting);
                assert!(agent.memory().devices_spilled > 0);
                let stored = agent.store.device_records().unwrap();
                agent.counter.evict_deferred(&mut agent.store).unwrap();
                agent.store.write_histories().unwrap();
                assert!(agent.store.device_records().unwrap() > stored);
                drop(agent);
                agent = reopen(&config);
                agent.store.set_max_pending(max_pending.unwrap());
                assert!(
                    agent.counter.has_deferred(),
                    "spilled devices no window names"
                );
            }
            reports.extend(agent.checkpoint().unwrap());
            assert!(!agent.counter.has_deferred());
            agent.counter.finish(&mut agent.store).unwrap();
            reports.extend(agent.checkpoint().unwrap());
            let memory = agent.memory();
            assert_eq!(
                (memory.devices_in_memory, memory.devices_spilled),
                (0, 0),
                "every device went to the store"
            );
            (reports, agent.store.device_records().unwrap())
        };
        let (straight, stored) = run(None, false);
        assert!(straight.len() > 8);
        assert!(stored > 1_000, "{stored}");
        assert_eq!(run(Some(100), false), (straight.clone(), stored));
        assert_eq!(run(Some(100), true), (straight, stored));
    }

    /// A file of parts cut short is an error naming it; the file a crash
    /// left of an unfinished commit is ignored and removed.
    #[test]
    fn a_short_file_of_parts_is_an_error_and_a_crashed_commits_parts_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (mut agent, _) = Agent::open(&config).unwrap();
        crowd(&mut agent);
        agent.checkpoint().unwrap();
        let bulk = agent.store.bulk_dir().to_path_buf();
        let files = |d: &Path| -> Vec<PathBuf> {
            let mut f: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            f.sort();
            f
        };
        let committed = files(&bulk);
        assert_eq!(committed.len(), 1, "{committed:?}");
        // An unfinished commit of the next generation.
        let orphan = bulk.join("2.parts");
        std::fs::write(&orphan, b"torn").unwrap();
        drop(agent);
        let agent = reopen(&config);
        assert_eq!(agent.counter.devices_in_memory(), 10_000);
        assert_eq!(files(&bulk), committed, "the orphan is removed");
        drop(agent);
        let bytes = std::fs::read(&committed[0]).unwrap();
        let refused = |what: &str| loop {
            match Agent::open(&config) {
                Err(e) if format!("{e:#}").contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => break format!("{e:#}"),
                Ok(_) => panic!("a state with its parts {what} opened"),
            }
        };
        std::fs::write(&committed[0], &bytes[..bytes.len() - 100]).unwrap();
        let err = refused("cut short");
        assert!(err.contains("bulk/1.parts"), "{err}");
        assert!(err.contains("the state is damaged"), "{err}");
        // A length no part can have is an error, not an allocation.
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&committed[0], &huge).unwrap();
        let err = refused("of 4 GB");
        assert!(err.contains("more than a part can be"), "{err}");
    }
}
