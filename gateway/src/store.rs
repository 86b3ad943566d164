//! Where the gateway keeps reports: the `ReportStore` trait, and its sled
//! implementation for a single gateway serving a chain of hundreds of
//! stores. A SQL engine implements the same trait when several gateways
//! share one MQTT subscription.
//!
//! Invariants: a report key (store, agent, window_start | date) is stored at
//! most once; the same key with other counts keeps the first and the second
//! goes to dead letters as a conflict (a report is never revised, SPEC §6).
//! Nothing is acked before `commit` returns.
//!
//! sled layout: trees `windows` (key `store \0 agent \0 window_start as
//! 8-byte big-endian, sign bit flipped` so keys sort by time), `days` (`store
//! \0 agent \0 YYYY-MM-DD`), `agents` (`store \0 agent` → last status),
//! `dead` (8-byte sequence → dead letter). Values are JSON sealed with
//! `footfall_report::codec` (version + CRC-32).
//!
//! After kill -9: sled recovers to the last flush. `commit` flushes before
//! anything is acked, so every acked report is on disk; reports received
//! but not committed were not acked, and the agent sends them again.

use std::path::{Path, PathBuf};

use footfall_report::{codec, DayReport, Report, WindowReport};
use serde::{Deserialize, Serialize};

const VALUE_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the gateway's store (is another footfall-gateway using it?)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("{path}: the gateway's store failed")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("{path}: tree `{tree}`, key {key}: {what}; restore the store from a backup")]
    Corrupt {
        path: PathBuf,
        tree: &'static str,
        key: String,
        what: String,
    },
}

/// What storing one report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Inserted,
    /// Same key, same counts: already stored.
    Duplicate,
    /// Same key, other counts: the first is kept.
    Conflict,
}

/// A payload the gateway would not store, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_unix_s: i64,
    /// MQTT topic, or `file:line` for `ingest`.
    pub source: String,
    pub reason: String,
    /// The first 4 KiB, as text.
    pub payload: String,
}

/// An agent as the gateway last heard of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub store_id: String,
    pub agent_id: String,
    pub last_seen_unix_s: i64,
    /// The last `status` payload (online with health figures, or offline).
    pub status: serde_json::Value,
}

/// A marketing campaign (SPEC §7), as imported from CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub name: String,
    pub channel: String,
    pub start: When,
    pub end: When,
    /// `None`: every store (`*`).
    pub stores: Option<Vec<String>>,
    pub impressions: u64,
    pub reach: u64,
    pub spend: f64,
}

/// A campaign bound: an instant, or a local date in each store's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum When {
    /// Unix seconds.
    At(i64),
    /// `YYYY-MM-DD`, midnight in the store's time zone.
    Date(String),
}

/// Which reports a query wants: a store (or all), and a time range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub store_id: Option<String>,
    /// Unix seconds, inclusive.
    pub from_s: Option<i64>,
    /// Unix seconds, exclusive.
    pub to_s: Option<i64>,
}

pub trait ReportStore: Send + Sync {
    fn put(&self, report: &Report) -> Result<Put, StoreError>;
    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    fn set_status(&self, info: &AgentInfo) -> Result<(), StoreError>;
    /// Makes everything before it durable. Implementations are shared
    /// between the MQTT loop and the HTTP API, so every method takes `&self`.
    fn commit(&self) -> Result<(), StoreError>;
    fn windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError>;
    fn days(&self, q: &Query) -> Result<Vec<DayReport>, StoreError>;
    fn agents(&self) -> Result<Vec<AgentInfo>, StoreError>;
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    /// Inserts or replaces campaigns by id, all or none.
    fn put_campaigns(&self, campaigns: &[Campaign]) -> Result<(), StoreError>;
    /// Every (store, agent) that has reported a window, with the end of
    /// its newest window (Unix seconds).
    fn reporting_agents(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;
}

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    windows: sled::Tree,
    days: sled::Tree,
    agents: sled::Tree,
    dead: sled::Tree,
    campaigns: sled::Tree,
    /// `store \0 agent` → newest window end (8 bytes BE): the stores list
    /// without scanning every window.
    seen: sled::Tree,
}

fn time_key(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn prefix(store: &str, agent: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + agent.len() + 10);
    k.extend_from_slice(store.as_bytes());
    k.push(0);
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k
}

/// The key prefix of the query's one store (store, then its 0 byte), or of
/// every store.
fn store_prefix(q: &Query) -> Vec<u8> {
    q.store_id
        .as_deref()
        .map(|s| prefix(s, "")[..s.len() + 1].to_vec())
        .unwrap_or_default()
}

/// Equal counts: everything but `seq`, which a recounting agent may change.
fn same_counts(a: &Report, b: &Report) -> bool {
    let mut a = a.clone();
    a.set_seq(b.seq());
    &a == b
}

impl SledStore {
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Sled {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(SledStore {
            path: path.to_path_buf(),
            windows: tree("windows")?,
            days: tree("days")?,
            agents: tree("agents")?,
            dead: tree("dead")?,
            campaigns: tree("campaigns")?,
            seen: tree("seen")?,
            db,
        })
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
        v: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.path.clone(),
            tree,
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            what,
        };
        let body = codec::open(VALUE_VERSION, v).map_err(corrupt)?;
        serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        pre: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in tree.scan_prefix(pre) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push(self.decode(name, &k, &v)?);
        }
        Ok(out)
    }
}

impl ReportStore for SledStore {
    fn put(&self, report: &Report) -> Result<Put, StoreError> {
        let (tree, name, key) = match report {
            Report::Window(w) => {
                let mut k = prefix(&w.store_id, &w.agent_id);
                k.extend_from_slice(&time_key(w.window_start));
                (&self.windows, "windows", k)
            }
            Report::Day(d) => {
                let mut k = prefix(&d.store_id, &d.agent_id);
                k.extend_from_slice(d.date.as_bytes());
                (&self.days, "days", k)
            }
        };
        let value = codec::seal(
            VALUE_VERSION,
            &serde_json::to_vec(report).expect("reports serialize"),
        );
        match tree
            .compare_and_swap(&key, None as Option<&[u8]>, Some(value))
            .map_err(|e| self.err(e))?
        {
            Ok(()) => {
                if let Report::Window(w) = report {
                    let mut k = prefix(&w.store_id, &w.agent_id);
                    k.pop();
                    self.seen
                        .fetch_and_update(k, |old| {
                            let old = old
                                .and_then(|o| o.try_into().ok())
                                .map_or(i64::MIN, i64::from_be_bytes);
                            Some(old.max(w.window_end).to_be_bytes().to_vec())
                        })
                        .map_err(|e| self.err(e))?;
                }
                Ok(Put::Inserted)
            }
            Err(existing) => {
                let current = existing
                    .current
                    .expect("compare_and_swap against None fails only on a value");
                let stored: Report = self.decode(name, &key, &current)?;
                Ok(if same_counts(report, &stored) {
                    Put::Duplicate
                } else {
                    Put::Conflict
                })
            }
        }
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(|e| self.err(e))?;
        let value = codec::seal(
            VALUE_VERSION,
            &serde_json::to_vec(letter).expect("serializes"),
        );
        self.dead
            .insert(id.to_be_bytes(), value)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn set_status(&self, info: &AgentInfo) -> Result<(), StoreError> {
        let mut key = prefix(&info.store_id, &info.agent_id);
        key.pop();
        let value = codec::seal(
            VALUE_VERSION,
            &serde_json::to_vec(info).expect("serializes"),
        );
        self.agents.insert(key, value).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError> {
        // Decoded as the struct, not as the untagged `Report`: serde buffers
        // an untagged enum's whole value before it picks the variant, where
        // callgrind put 41 % of the query bench's instructions.
        let all: Vec<WindowReport> = if q.from_s.is_some() || q.to_s.is_some() {
            // Keys are store, agent, then time: one range per agent reads
            // only the asked-for windows (a year of a chain is millions).
            let mut out = Vec::new();
            for (store, agent, _) in self.reporting_agents()? {
                if q.store_id.as_ref().is_some_and(|s| *s != store) {
                    continue;
                }
                let pre = prefix(&store, &agent);
                let mut lo = pre.clone();
                lo.extend_from_slice(&time_key(q.from_s.unwrap_or(i64::MIN)));
                let mut hi = pre;
                hi.extend_from_slice(&time_key(q.to_s.unwrap_or(i64::MAX)));
                for item in self.windows.range(lo..hi) {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    out.push(self.decode("windows", &k, &v)?);
                }
            }
            out
        } else {
            self.scan(&self.windows, "windows", &store_prefix(q))?
        };
        Ok(all
            .into_iter()
            .filter(|w| {
                q.from_s.is_none_or(|f| w.window_start >= f)
                    && q.to_s.is_none_or(|t| w.window_start < t)
            })
            .collect())
    }

    fn days(&self, q: &Query) -> Result<Vec<DayReport>, StoreError> {
        self.scan(&self.days, "days", &store_prefix(q))
    }

    fn agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        self.scan(&self.agents, "agents", b"")
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.scan(&self.dead, "dead", b"")
    }

    fn put_campaigns(&self, campaigns: &[Campaign]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for c in campaigns {
            let value = codec::seal(VALUE_VERSION, &serde_json::to_vec(c).expect("serializes"));
            batch.insert(c.campaign_id.as_bytes(), value);
        }
        self.campaigns.apply_batch(batch).map_err(|e| self.err(e))?;
        self.commit()
    }

    fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        self.scan(&self.campaigns, "campaigns", b"")
    }

    fn reporting_agents(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.seen.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let (store, agent) = key.split_once('\0').unwrap_or((&key, ""));
            let end = v.as_ref().try_into().map_or(0, i64::from_be_bytes);
            out.push((store.to_string(), agent.to_string(), end));
        }
        Ok(out)
    }
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_report::{Sketch, DWELL_EDGES_S, WINDOW_SCHEMA};

    fn window(store: &str, start: i64, visits: u64, seq: u64) -> Report {
        Report::Window(WindowReport {
            schema: WINDOW_SCHEMA.into(),
            store_id: store.into(),
            agent_id: "a".into(),
            seq,
            window_start: start,
            window_end: start + 900,
            frames: 10,
            frames_no_signal: 0,
            detected: 5,
            visits,
            visitors: visits,
            visitors_new: visits,
            visitors_returning: 0,
            visitors_randomized: 0,
            passersby: 1,
            residents: 0,
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts: vec![0; 6],
            dwell_sum_s: 0,
            visitor_sketch: Sketch::new(),
            agent_version: "t".into(),
            params_hash: "p".into(),
        })
    }

    #[test]
    fn each_key_is_stored_once_and_conflicts_keep_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        assert_eq!(s.put(&window("s1", 900, 2, 1)).unwrap(), Put::Inserted);
        assert_eq!(s.put(&window("s1", 900, 2, 1)).unwrap(), Put::Duplicate);
        // A recount with another seq but the same counts is the same report.
        assert_eq!(s.put(&window("s1", 900, 2, 9)).unwrap(), Put::Duplicate);
        assert_eq!(s.put(&window("s1", 900, 3, 2)).unwrap(), Put::Conflict);
        assert_eq!(s.put(&window("s1", -900, 1, 3)).unwrap(), Put::Inserted);
        assert_eq!(s.put(&window("s10", 900, 1, 1)).unwrap(), Put::Inserted);
        s.commit().unwrap();
        let w = s
            .windows(&Query {
                store_id: Some("s1".into()),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(
            w.iter()
                .map(|w| (w.window_start, w.visits))
                .collect::<Vec<_>>(),
            vec![(-900, 1), (900, 2)]
        );
        assert_eq!(s.windows(&Query::default()).unwrap().len(), 3);
    }

    #[test]
    fn a_time_range_reads_the_same_windows_as_a_full_scan_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for store in ["s1", "s10", "s2"] {
            for i in -3..5 {
                s.put(&window(store, i * 900, i.unsigned_abs(), 0)).unwrap();
            }
        }
        s.commit().unwrap();
        let key = |w: &WindowReport| (w.store_id.clone(), w.window_start);
        for (store, from, to) in [
            (None, Some(-900), Some(1800)),
            (Some("s1"), Some(0), None),
            (Some("s10"), None, Some(0)),
            (None, Some(10_000), None),
        ] {
            let q = Query {
                store_id: store.map(String::from),
                from_s: from,
                to_s: to,
            };
            let mut got: Vec<_> = s.windows(&q).unwrap().iter().map(key).collect();
            let mut want: Vec<_> = s
                .windows(&Query {
                    store_id: q.store_id.clone(),
                    ..Query::default()
                })
                .unwrap()
                .iter()
                .filter(|w| {
                    from.is_none_or(|f| w.window_start >= f)
                        && to.is_none_or(|t| w.window_start < t)
                })
                .map(key)
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{q:?}");
        }
        assert_eq!(
            s.windows(&Query {
                store_id: Some("s1".into()),
                from_s: Some(0),
                to_s: Some(1800)
            })
            .unwrap()
            .len(),
            2
        );
    }
}
