//! The sled engine of `ReportStore`: the embedded default, one gateway on
//! one box.
//!
//! Layout: trees `windows` (key `store \0 agent \0 window_start as
//! 8-byte big-endian, sign bit flipped` so keys sort by time), `hours` (the
//! same key with the UTC hour a window starts in → the `Counts` of the
//! agent's windows that start in it and which they are: a campaign report
//! over a chain reads hours, not millions of windows), `hour_sketches` (the
//! same keys → those windows' visitor sketches merged: apart, so that what
//! only adds counts, such as a campaign's control stores, reads no sketch;
//! a campaign report from a cold page cache read 207 MB when they were
//! together). A window is added to its hour and its hour's sketch after it
//! is stored, and again whenever it is sent again, which adds it only where
//! it is missing: after a crash between the writes, the agent's resend
//! (nothing uncommitted was acked) mends them. (A sled transaction over the
//! trees cut ingest fourfold; so did a batch.) `day_windows` (the same key
//! with the UTC day → which windows of it are stored) tells whether a
//! kept `ChainDay` is out of date in one read per store-day instead of 24.
//! All three are rebuilt from windows on open when the `hours-built-3`
//! mark is missing. `local_days` (the same key with the local midnight, in
//! the zone the store's status names, → the sums of the agent's windows of
//! that local day and the zone's name) is what a campaign report reads:
//! some 4,600 values for 100 stores over its seven weeks, where hours were
//! 110,000 and took a second from a cold page cache. It is built from
//! windows on open when the `local-days-built-1` mark is missing; a store
//! whose zone changed reads its days from hours instead.
//! `days` (`store \0 agent \0 YYYY-MM-DD`), `agents` (`store \0 agent` → last status),
//! `dead` (8-byte sequence → dead letter). Values are sealed with
//! `footfall_report::codec` (version + CRC-32); the version says the
//! payload's format: 1 JSON, 2 postcard before SPEC §8 and 3 before
//! privacy modes (`legacy` reads both), 4 postcard. Reports are written as postcard
//! (a chain's campaign report reads half a million of them, and JSON was
//! most of its time); everything else as JSON. Reports stored as JSON by
//! an older gateway are read as they are. Postcard is positional: do not
//! reorder the fields of `WindowReport` or `DayReport`; add a version.
//!
//! After kill -9: sled recovers to the last flush. `commit` flushes before
//! anything is acked, so every acked report is on disk; reports received
//! but not committed were not acked, and the agent sends them again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use footfall_report::{codec, DayReport, Report, WindowReport};
use jiff::tz::TimeZone;
use serde::Serialize;

use super::hours::{StoredDayWindows, StoredHour, StoredHourSketch, StoredLocalDay};
use super::keys::{
    day_key, hour_key, local_day_key, prefix, split_key, store_prefix, time_key, HOURS_BUILT,
    LOCAL_DAYS_BUILT,
};
use super::legacy::Stored;
use super::{
    same_counts, AgentInfo, Campaign, ChainDay, DeadLetter, Hour, Purge, Purged, Put, Query,
    ReportStore, SketchPiece, StoreError,
};

mod purge;

/// Payload formats, by version byte.
const JSON: u8 = 1;
/// Postcard in the layout before SPEC §8's people estimates.
const POSTCARD_V2: u8 = 2;
/// Postcard in the layout before privacy modes made figures nullable.
const POSTCARD_V3: u8 = 3;
const POSTCARD: u8 = 4;

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    windows: sled::Tree,
    hours: sled::Tree,
    hour_sketches: sled::Tree,
    day_windows: sled::Tree,
    local_days: sled::Tree,
    days: sled::Tree,
    agents: sled::Tree,
    dead: sled::Tree,
    campaigns: sled::Tree,
    /// date → `ChainDay`: the chain's distinct visitors as last worked out.
    chain_days: sled::Tree,
    /// `store \0 agent` → newest window end (8 bytes BE): the stores list
    /// without scanning every window.
    seen: sled::Tree,
    /// Each store's zone as its statuses say (`calendar::timezones_of`):
    /// the zone `local_days` are cut in.
    zones: Mutex<BTreeMap<String, TimeZone>>,
}

/// Sums kept under a key of `hours` or `local_days`, as an `Hour` that
/// starts at the key's time, and that time.
fn sums_at(key: &[u8], counts: footfall_report::Counts) -> (i64, Hour) {
    let (store_id, agent_id, hour_start) = split_key(key).unwrap_or_default();
    (
        hour_start,
        Hour {
            store_id,
            agent_id,
            hour_start,
            counts,
        },
    )
}

fn seal_postcard<T: Serialize>(v: &T) -> Vec<u8> {
    codec::seal(
        POSTCARD,
        &postcard::to_stdvec(v).expect("in-memory values serialize"),
    )
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
        let store = SledStore {
            path: path.to_path_buf(),
            windows: tree("windows")?,
            hours: tree("hours")?,
            hour_sketches: tree("hour_sketches")?,
            day_windows: tree("day_windows")?,
            local_days: tree("local_days")?,
            days: tree("days")?,
            agents: tree("agents")?,
            dead: tree("dead")?,
            campaigns: tree("campaigns")?,
            chain_days: tree("chain_days")?,
            seen: tree("seen")?,
            zones: Mutex::new(BTreeMap::new()),
            db,
        };
        let zones = super::time::timezones_of(&store.agents()?);
        *store.zones.lock().unwrap_or_else(|p| p.into_inner()) = zones;
        store.build_hours()?;
        store.build_local_days()?;
        Ok(store)
    }

    /// Opens for `serve`. A command run while no gateway serves (`stores`,
    /// `report`) opens the store itself for a moment; one started just
    /// before `serve` would make it fail, so `serve` waits up to
    /// `patience` for the lock instead.
    pub fn open_waiting(
        path: &Path,
        cache_bytes: u64,
        patience: std::time::Duration,
    ) -> Result<SledStore, StoreError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match SledStore::open(path, cache_bytes) {
                Err(StoreError::Open {
                    source: sled::Error::Io(e),
                    ..
                }) if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Builds trees of sums from the stored windows, once: unless `mark`
    /// is set, empties `trees`, runs `build`, then sets the mark. Set last,
    /// so an interrupted build runs again from the start.
    fn build_once(
        &self,
        mark: &[u8],
        by: &str,
        trees: &[&sled::Tree],
        build: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.db.contains_key(mark).map_err(|e| self.err(e))? {
            return Ok(());
        }
        if !self.windows.is_empty() {
            tracing::info!(store = %self.path.display(), "summing stored windows by {by}, once (about 4 s per million windows)");
        }
        for t in trees {
            t.clear().map_err(|e| self.err(e))?;
        }
        build()?;
        self.db.insert(mark, &[1u8][..]).map_err(|e| self.err(e))?;
        self.commit()
    }

    /// Sums every stored window into `hours`, `hour_sketches` and
    /// `day_windows`: for a store written before they were kept.
    fn build_hours(&self) -> Result<(), StoreError> {
        let trees = [&self.hours, &self.hour_sketches, &self.day_windows];
        self.build_once(HOURS_BUILT, "hour", &trees, || self.sum_hours())
    }

    fn sum_hours(&self) -> Result<(), StoreError> {
        let mut day: Option<(Vec<u8>, StoredDayWindows)> = None;
        let mut day_batch = sled::Batch::default();
        // Keys sort by store, agent, then time: an hour's windows are
        // neighbours, so one hour is summed at a time.
        let mut current: Option<(Vec<u8>, StoredHour, StoredHourSketch)> = None;
        let (mut batch, mut sketches) = (sled::Batch::default(), sled::Batch::default());
        let mut pending = 0;
        for item in self.windows.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let w: WindowReport = self.decode("windows", &k, &v)?;
            let hk = hour_key(&k, w.window_start);
            if current.as_ref().is_none_or(|(key, ..)| *key != hk) {
                if let Some((key, hour, sketch)) =
                    current.replace((hk, StoredHour::default(), StoredHourSketch::default()))
                {
                    sketches.insert(key.clone(), seal_postcard(&sketch));
                    batch.insert(key, seal_postcard(&hour));
                    pending += 1;
                }
            }
            if let Some((_, hour, sketch)) = &mut current {
                hour.add(&w);
                sketch.add(&w);
            }
            let dk = day_key(&k, w.window_start);
            if day.as_ref().is_none_or(|(key, _)| *key != dk) {
                if let Some((key, d)) = day.replace((dk, StoredDayWindows::default())) {
                    day_batch.insert(key, seal_postcard(&d));
                }
            }
            if let Some((_, d)) = &mut day {
                d.add(&w);
            }
            if pending == 4096 {
                self.hours
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| self.err(e))?;
                self.hour_sketches
                    .apply_batch(std::mem::take(&mut sketches))
                    .map_err(|e| self.err(e))?;
                pending = 0;
            }
        }
        if let Some((key, hour, sketch)) = current {
            sketches.insert(key.clone(), seal_postcard(&sketch));
            batch.insert(key, seal_postcard(&hour));
        }
        self.hours.apply_batch(batch).map_err(|e| self.err(e))?;
        self.hour_sketches
            .apply_batch(sketches)
            .map_err(|e| self.err(e))?;
        if let Some((key, d)) = day {
            day_batch.insert(key, seal_postcard(&d));
        }
        self.day_windows
            .apply_batch(day_batch)
            .map_err(|e| self.err(e))
    }

    /// Sums every stored window into `local_days`: for a store written
    /// before local days were kept.
    fn build_local_days(&self) -> Result<(), StoreError> {
        let trees = [&self.local_days];
        self.build_once(LOCAL_DAYS_BUILT, "local day", &trees, || {
            self.sum_local_days()
        })
    }

    fn sum_local_days(&self) -> Result<(), StoreError> {
        // Keys sort by store, agent, then time, and local midnights follow
        // time: a day's windows are neighbours.
        let mut current: Option<(Vec<u8>, StoredLocalDay)> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for item in self.windows.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let w: WindowReport = self.decode("windows", &k, &v)?;
            let (midnight, zone) = self.local_day(&w);
            let dk = local_day_key(&k, midnight);
            if current.as_ref().is_none_or(|(key, _)| *key != dk) {
                if let Some((key, day)) = current.replace((dk, StoredLocalDay::new(&zone))) {
                    batch.insert(key, seal_postcard(&day));
                    pending += 1;
                }
            }
            if let Some((_, day)) = &mut current {
                day.add(&w, midnight, &zone);
            }
            if pending == 4096 {
                self.local_days
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| self.err(e))?;
                pending = 0;
            }
        }
        if let Some((key, day)) = current {
            batch.insert(key, seal_postcard(&day));
        }
        self.local_days.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// The local midnight a window's day starts at in its store's zone,
    /// and the zone's name.
    fn local_day(&self, w: &WindowReport) -> (i64, String) {
        let utc = TimeZone::UTC;
        let zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        let tz = zones.get(&w.store_id).unwrap_or(&utc);
        (
            super::time::local_midnight(w.window_start, tz),
            tz.iana_name().unwrap_or("UTC").to_string(),
        )
    }

    /// Adds a stored window to its local day unless the day has it.
    fn add_to_local_day(&self, key: &[u8], w: &WindowReport) -> Result<(), StoreError> {
        let (midnight, zone) = self.local_day(w);
        let dk = local_day_key(key, midnight);
        let mut d = match self.local_days.get(&dk).map_err(|e| self.err(e))? {
            Some(v) => self.decode::<StoredLocalDay>("local_days", &dk, &v)?,
            None => StoredLocalDay::new(&zone),
        };
        if d.add(w, midnight, &zone) {
            self.local_days
                .insert(dk, seal_postcard(&d))
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn decode<T: Stored>(&self, tree: &'static str, key: &[u8], v: &[u8]) -> Result<T, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.path.clone(),
            tree,
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            what,
        };
        match codec::open_any(v).map_err(corrupt)? {
            (JSON, body) => serde_json::from_slice(body).map_err(|e| corrupt(e.to_string())),
            (POSTCARD, body) => {
                postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
            }
            (POSTCARD_V3, body) => {
                T::from_v3(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
            }
            (POSTCARD_V2, body) => {
                T::from_v2(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
            }
            (other, _) => Err(corrupt(format!(
                "value version {other} is not {JSON}, {POSTCARD_V2}, {POSTCARD_V3} or {POSTCARD}; a newer gateway wrote it"
            ))),
        }
    }

    /// Stores `value` under `key` unless the key is taken; returns what is
    /// already stored there, if anything.
    fn insert_new<T: Stored>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
        value: &T,
    ) -> Result<Option<T>, StoreError> {
        match tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(seal_postcard(value)))
            .map_err(|e| self.err(e))?
        {
            Ok(()) => Ok(None),
            Err(e) => {
                let v = e
                    .current
                    .expect("compare_and_swap against None fails only on a value");
                self.decode(name, key, &v).map(Some)
            }
        }
    }

    /// Stores a window unless its key is taken; returns the window already
    /// stored under the key, if any. Either way the stored window is then
    /// in its hour and in `seen`, which mends both after a crash between
    /// the writes (see the module doc).
    fn put_window(&self, key: &[u8], w: &WindowReport) -> Result<Option<WindowReport>, StoreError> {
        let existing = self.insert_new(&self.windows, "windows", key, w)?;
        let stored = existing.as_ref().unwrap_or(w);
        let hour = hour_key(key, stored.window_start);
        let mut h = match self.hours.get(&hour).map_err(|e| self.err(e))? {
            Some(v) => self.decode::<StoredHour>("hours", &hour, &v)?,
            None => StoredHour::default(),
        };
        if h.add(stored) {
            self.hours
                .insert(&hour, seal_postcard(&h))
                .map_err(|e| self.err(e))?;
        }
        let mut k = match self.hour_sketches.get(&hour).map_err(|e| self.err(e))? {
            Some(v) => self.decode::<StoredHourSketch>("hour_sketches", &hour, &v)?,
            None => StoredHourSketch::default(),
        };
        if k.add(stored) {
            self.hour_sketches
                .insert(hour, seal_postcard(&k))
                .map_err(|e| self.err(e))?;
        }
        let dk = day_key(key, stored.window_start);
        let mut d = match self.day_windows.get(&dk).map_err(|e| self.err(e))? {
            Some(v) => self.decode::<StoredDayWindows>("day_windows", &dk, &v)?,
            None => StoredDayWindows::default(),
        };
        if d.add(stored) {
            self.day_windows
                .insert(dk, seal_postcard(&d))
                .map_err(|e| self.err(e))?;
        }
        self.add_to_local_day(key, stored)?;
        self.seen
            .fetch_and_update(&key[..key.len() - 9], |old| {
                let old = old
                    .and_then(|o| o.try_into().ok())
                    .map_or(i64::MIN, i64::from_be_bytes);
                Some(old.max(stored.window_end).to_be_bytes().to_vec())
            })
            .map_err(|e| self.err(e))?;
        Ok(existing)
    }

    /// The values of a tree keyed `store \0 agent \0 time` whose time is
    /// in the query's range, each made an item by `item` (key and value →
    /// time and item).
    fn ranged<V: Stored, T>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        q: &Query,
        mut item: impl FnMut(&[u8], V) -> (i64, T),
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut take = |k: &[u8], v: &[u8]| -> Result<(), StoreError> {
            let (t, it) = item(k, self.decode(name, k, v)?);
            if q.contains(t) {
                out.push(it);
            }
            Ok(())
        };
        if q.from_s.is_none() && q.to_s.is_none() {
            for kv in tree.scan_prefix(store_prefix(q)) {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                take(&k, &v)?;
            }
            return Ok(out);
        }
        // One range per agent reads only the asked-for times (a year of a
        // chain is millions of windows).
        for (store, agent, _) in self.reporting_agents()? {
            if q.store_id.as_ref().is_some_and(|s| *s != store) {
                continue;
            }
            let pre = prefix(&store, &agent);
            let mut lo = pre.clone();
            lo.extend_from_slice(&time_key(q.from_s.unwrap_or(i64::MIN)));
            let mut hi = pre;
            hi.extend_from_slice(&time_key(q.to_s.unwrap_or(i64::MAX)));
            for kv in tree.range(lo..hi) {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                take(&k, &v)?;
            }
        }
        Ok(out)
    }

    fn scan<T: Stored>(
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
        let existing = match report {
            Report::Window(w) => {
                let mut key = prefix(&w.store_id, &w.agent_id);
                key.extend_from_slice(&time_key(w.window_start));
                self.put_window(&key, w)?.map(Report::Window)
            }
            Report::Day(d) => {
                let mut key = prefix(&d.store_id, &d.agent_id);
                key.extend_from_slice(d.date.as_bytes());
                self.insert_new(&self.days, "days", &key, d)?
                    .map(Report::Day)
            }
        };
        Ok(match existing {
            None => Put::Inserted,
            Some(stored) if same_counts(report, &stored) => Put::Duplicate,
            Some(_) => Put::Conflict,
        })
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(|e| self.err(e))?;
        let value = codec::seal(JSON, &serde_json::to_vec(letter).expect("serializes"));
        self.dead
            .insert(id.to_be_bytes(), value)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn set_status(&self, info: &AgentInfo) -> Result<(), StoreError> {
        let mut key = prefix(&info.store_id, &info.agent_id);
        key.pop();
        let value = codec::seal(JSON, &serde_json::to_vec(info).expect("serializes"));
        self.agents.insert(key, value).map_err(|e| self.err(e))?;
        let zones = super::time::timezones_of(std::slice::from_ref(info));
        if let Some(tz) = zones.get(&info.store_id) {
            self.zones
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(info.store_id.clone(), tz.clone());
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError> {
        // Decoded as the struct, not as the untagged `Report`: serde buffers
        // an untagged enum's whole value before it picks the variant, where
        // callgrind put 41 % of the query bench's instructions.
        self.ranged(&self.windows, "windows", q, |_, w: WindowReport| {
            (w.window_start, w)
        })
    }

    fn hours(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        // Both trees hold the same keys, in the same order.
        Ok(super::with_sketches(self.hour_sums(q)?, self.sketches(q)?))
    }

    fn hour_sums(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        self.ranged(&self.hours, "hours", q, |k, StoredHour { counts, .. }| {
            sums_at(k, counts)
        })
    }

    /// From `local_days`; a store whose days were cut in another zone than
    /// `zones` names (its zone changed, or the caller asks another) is
    /// summed from its hours.
    fn day_sums(
        &self,
        q: &Query,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Vec<Hour>, StoreError> {
        let mut elsewhere: BTreeMap<String, TimeZone> = BTreeMap::new();
        let mut out = Vec::new();
        for store_id in zones.keys() {
            if q.store_id.as_ref().is_some_and(|one| one != store_id) {
                continue;
            }
            let one = Query {
                store_id: Some(store_id.clone()),
                ..q.clone()
            };
            let want = zones[store_id].iana_name().unwrap_or("UTC");
            let mut same = true;
            let days = self.ranged(
                &self.local_days,
                "local_days",
                &one,
                |k, StoredLocalDay { zone, counts, .. }| {
                    same &= zone == want;
                    sums_at(k, counts)
                },
            )?;
            if same {
                out.extend(days);
            } else {
                elsewhere.insert(store_id.clone(), zones[store_id].clone());
            }
        }
        for (store_id, tz) in &elsewhere {
            let one_q = Query {
                store_id: Some(store_id.clone()),
                ..q.clone()
            };
            let one = BTreeMap::from([(store_id.clone(), tz.clone())]);
            out.extend(super::days_of_hours(
                self.hour_sums(&super::day_wide(&one_q))?,
                &one_q,
                &one,
            ));
        }
        Ok(out)
    }

    fn sketches(&self, q: &Query) -> Result<Vec<SketchPiece>, StoreError> {
        self.ranged(
            &self.hour_sketches,
            "hour_sketches",
            q,
            |k, StoredHourSketch { sketch, .. }| {
                let (store_id, agent_id, start) = split_key(k).unwrap_or_default();
                (
                    start,
                    SketchPiece {
                        store_id,
                        agent_id,
                        start,
                        sketch,
                    },
                )
            },
        )
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
            let value = codec::seal(JSON, &serde_json::to_vec(c).expect("serializes"));
            batch.insert(c.campaign_id.as_bytes(), value);
        }
        self.campaigns.apply_batch(batch).map_err(|e| self.err(e))?;
        self.commit()
    }

    fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        self.scan(&self.campaigns, "campaigns", b"")
    }

    fn chain_days(&self, from: &str, to: &str) -> Result<Vec<ChainDay>, StoreError> {
        let mut out = Vec::new();
        for kv in self.chain_days.range(from.as_bytes()..=to.as_bytes()) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            out.push(self.decode("chain_days", &k, &v)?);
        }
        Ok(out)
    }

    /// From `day_windows`: each UTC day's windows count for every local
    /// date of its store's zone that the day overlaps (one or two).
    fn date_windows(
        &self,
        from: &str,
        to: &str,
        zones: &std::collections::BTreeMap<String, jiff::tz::TimeZone>,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let q = super::day_wide(&crate::store::time::dates_query(from, to));
        let mut out = std::collections::BTreeMap::new();
        let utc = jiff::tz::TimeZone::UTC;
        let days: Vec<(String, i64, usize)> = self.ranged(
            &self.day_windows,
            "day_windows",
            &q,
            |k, d: StoredDayWindows| {
                let (store, _, day) = split_key(k).unwrap_or_default();
                (day, (store, day, d.starts.len()))
            },
        )?;
        for (store, day, n) in days {
            let tz = zones.get(&store).unwrap_or(&utc);
            let first = crate::store::time::local_date(day, tz);
            let last = crate::store::time::local_date(day + 86_399, tz);
            for date in [first, last.filter(|l| Some(*l) != first)] {
                super::count_date(&mut out, date, (from, to), n as u64);
            }
        }
        Ok(out)
    }

    /// Not flushed here: a cache lost in a crash is worked out again.
    fn put_chain_days(&self, days: &[ChainDay]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for d in days {
            batch.insert(d.date.as_bytes(), seal_postcard(d));
        }
        self.chain_days.apply_batch(batch).map_err(|e| self.err(e))
    }

    fn purge(&self, p: &Purge) -> Result<Purged, StoreError> {
        self.purge_records(p)
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
#[cfg(test)]
mod tests {
    use super::*;
    use footfall_report::testing;
    use footfall_report::Counts;

    fn window(store: &str, start: i64, visits: u64, seq: u64) -> Report {
        let mut w = testing::window(store, "a", start, 900);
        w.seq = seq;
        w.frames = 10;
        w.detected = Some(5);
        w.visits = Some(visits);
        w.visitors = Some(visits);
        w.visitors_new = Some(visits);
        w.passersby = Some(1);
        Report::Window(w)
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
            vec![(-900, Some(1)), (900, Some(2))]
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

    /// A store written by a gateway that kept reports as JSON: its
    /// reports read back the same beside new postcard ones, and a report
    /// sent again is still a duplicate of the JSON one.
    #[test]
    fn reports_stored_as_json_by_an_older_gateway_are_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        let mut old = window("s1", 0, 4, 1);
        if let Report::Window(w) = &mut old {
            w.visitor_sketch.as_mut().unwrap().insert(7 << 64);
        }
        let mut day = testing::day("s1", "a", "1970-01-01");
        day.seq = 2;
        day.visits = Some(4);
        day.unique_visitors = Some(3);
        day.visitors_new = Some(3);
        let day = Report::Day(day);
        let json = |r: &Report| codec::seal(JSON, &serde_json::to_vec(r).unwrap());
        let mut k = prefix("s1", "a");
        k.extend_from_slice(&time_key(0));
        s.windows.insert(k, json(&old)).unwrap();
        let mut k = prefix("s1", "a");
        k.extend_from_slice(b"1970-01-01");
        s.days.insert(k, json(&day)).unwrap();

        let new = window("s1", 900, 5, 2);
        assert_eq!(s.put(&new).unwrap(), Put::Inserted);
        assert_eq!(s.put(&old).unwrap(), Put::Duplicate);
        assert_eq!(s.put(&day).unwrap(), Put::Duplicate);
        let got: Vec<Report> = s
            .windows(&Query::default())
            .unwrap()
            .into_iter()
            .map(Report::Window)
            .collect();
        assert_eq!(got, vec![old, new]);
        assert_eq!(
            s.days(&Query::default()).unwrap(),
            vec![match day {
                Report::Day(d) => d,
                _ => unreachable!(),
            }]
        );
    }

    /// A store written before SPEC §8 (postcard version 2): its windows,
    /// days and hours read back with no estimates (`null`), a resend of
    /// one is a duplicate, and an hour that gains a window with estimates
    /// still reports none (part of it had none).
    #[test]
    fn reports_stored_before_people_estimates_read_without_them() {
        use crate::store::legacy::write_v2;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        let Report::Window(old) = window("s1", 0, 4, 1) else {
            unreachable!()
        };
        let mut day = testing::day("s1", "a", "1970-01-01");
        day.visits = Some(4);
        let v2 = |b: Vec<u8>| codec::seal(POSTCARD_V2, &b);
        let mut k = prefix("s1", "a");
        k.extend_from_slice(&time_key(0));
        s.windows.insert(&k, v2(write_v2::window(&old))).unwrap();
        let mut hour = StoredHour::default();
        assert!(hour.add(&old));
        s.hours
            .insert(hour_key(&k, 0), v2(write_v2::hour(&hour)))
            .unwrap();
        let mut dk = prefix("s1", "a");
        dk.extend_from_slice(b"1970-01-01");
        s.days.insert(dk, v2(write_v2::day(&day))).unwrap();

        assert_eq!(s.put(&Report::Window(old.clone())).unwrap(), Put::Duplicate);
        assert_eq!(s.put(&Report::Day(day.clone())).unwrap(), Put::Duplicate);
        assert_eq!(s.windows(&Query::default()).unwrap(), vec![old.clone()]);
        assert_eq!(s.days(&Query::default()).unwrap(), vec![day]);
        let Report::Window(mut new) = window("s1", 900, 5, 2) else {
            unreachable!()
        };
        new.present_est = Some(3.0);
        new.present_lo = Some(2.0);
        new.present_hi = Some(4.0);
        new.entries_est = Some(1.0);
        assert_eq!(s.put(&Report::Window(new)).unwrap(), Put::Inserted);
        let hours = s.hours(&Query::default()).unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].counts.windows, 2);
        assert_eq!(hours[0].counts.visits, 9);
        assert_eq!(hours[0].counts.people(), None);
    }

    /// `hours` is `windows` summed by UTC hour, resent and conflicting
    /// windows not added twice; rebuilt from `windows` the same when the
    /// mark is missing (a store from before hours were kept).
    #[test]
    fn hours_are_the_windows_summed_and_rebuild_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let s = SledStore::open(&path, 1 << 20).unwrap();
        for store in ["s1", "s10"] {
            for q in -6..9 {
                let mut r = window(store, q * 900, q.unsigned_abs() % 4, 0);
                if let Report::Window(w) = &mut r {
                    w.visitor_sketch.as_mut().unwrap().insert((q as u128) << 70);
                }
                s.put(&r).unwrap();
                s.put(&r).unwrap();
            }
        }
        assert_eq!(s.put(&window("s1", 0, 9, 1)).unwrap(), Put::Conflict);
        s.commit().unwrap();
        let mut want: Vec<Hour> = Vec::new();
        for w in s.windows(&Query::default()).unwrap() {
            let start = w.window_start.div_euclid(3600) * 3600;
            match want.last_mut() {
                Some(h) if h.store_id == w.store_id && h.hour_start == start => {
                    h.counts.add(&Counts::of_window(&w))
                }
                _ => want.push(Hour {
                    store_id: w.store_id.clone(),
                    agent_id: w.agent_id.clone(),
                    hour_start: start,
                    counts: Counts::of_window(&w),
                }),
            }
        }
        assert_eq!(want.len(), 2 * 5);
        assert_eq!(want[1].counts.windows, 4);
        assert_eq!(s.hours(&Query::default()).unwrap(), want);
        let q = Query {
            store_id: Some("s10".into()),
            from_s: Some(0),
            to_s: Some(3600),
        };
        assert_eq!(s.hours(&q).unwrap(), want[7..8]);

        s.hours.clear().unwrap();
        s.hour_sketches.clear().unwrap();
        s.day_windows.clear().unwrap();
        s.db.remove(HOURS_BUILT).unwrap();
        s.commit().unwrap();
        drop(s);
        let s = reopen(&path);
        assert_eq!(s.hours(&Query::default()).unwrap(), want);
    }

    /// Opens a store just dropped: sled's flusher can hold the lock a
    /// moment after a drop.
    fn reopen(path: &Path) -> SledStore {
        let mut reopened = SledStore::open(path, 1 << 20);
        for _ in 0..100 {
            if !matches!(reopened, Err(StoreError::Open { .. })) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            reopened = SledStore::open(path, 1 << 20);
        }
        reopened.unwrap()
    }

    /// `local_days` are the windows summed by local day in the store's
    /// zone, read without hours while that zone holds: mended by a resend
    /// after a crash, rebuilt the same when the mark is missing, and read
    /// from hours once the store's zone changed.
    #[test]
    fn local_days_are_kept_mended_rebuilt_and_left_when_the_zone_moves() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let s = SledStore::open(&path, 1 << 20).unwrap();
        let status = |zone: &str| AgentInfo {
            store_id: "s1".into(),
            agent_id: "a".into(),
            last_seen_unix_s: 0,
            status: testing::online("s1", "a", zone),
        };
        s.set_status(&status("Europe/Berlin")).unwrap();
        let windows: Vec<Report> = (0..3 * 96)
            .map(|q| window("s1", q * 900, (q % 7) as u64, 0))
            .collect();
        for w in &windows {
            s.put(w).unwrap();
        }
        let zone = |name: &str| BTreeMap::from([("s1".to_string(), TimeZone::get(name).unwrap())]);
        let q = Query {
            store_id: None,
            from_s: Some(0),
            to_s: Some(3 * 86_400),
        };
        let by_hours = |s: &SledStore, zones: &BTreeMap<String, TimeZone>| {
            super::super::days_of_hours(
                s.hour_sums(&super::super::day_wide(&q)).unwrap(),
                &q,
                zones,
            )
        };
        let berlin = zone("Europe/Berlin");
        let want = by_hours(&s, &berlin);
        assert_eq!(
            want.len(),
            3,
            "the Berlin midnights in the first three UTC days"
        );
        assert_eq!(want[0].counts.windows, 96);
        assert_eq!(s.day_sums(&q, &berlin).unwrap(), want);
        let zones_kept = |s: &SledStore| -> Vec<String> {
            s.local_days
                .iter()
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    s.decode::<StoredLocalDay>("local_days", &k, &v)
                        .unwrap()
                        .zone
                })
                .collect()
        };
        assert_eq!(zones_kept(&s), vec!["Europe/Berlin"; 4]);

        // The windows stored, their local days lost: the resend mends them.
        s.local_days.clear().unwrap();
        for w in &windows {
            assert_eq!(s.put(w).unwrap(), Put::Duplicate);
        }
        assert_eq!(s.day_sums(&q, &berlin).unwrap(), want);

        // A store from before local days were kept.
        s.local_days.clear().unwrap();
        s.db.remove(LOCAL_DAYS_BUILT).unwrap();
        s.commit().unwrap();
        drop(s);
        let s = reopen(&path);
        assert_eq!(s.day_sums(&q, &berlin).unwrap(), want);
        assert_eq!(zones_kept(&s).len(), 4);

        // The store moves: a day cut in two zones with the same midnight
        // says so; and the store's days come from hours, in whichever
        // zone is asked for.
        s.set_status(&status("Europe/Paris")).unwrap();
        s.put(&window("s1", 86_400 + 450, 1, 0)).unwrap();
        assert!(zones_kept(&s).contains(&String::new()));
        s.set_status(&status("America/New_York")).unwrap();
        s.put(&window("s1", 3 * 86_400 + 3_600, 1, 0)).unwrap();
        let new_york = zone("America/New_York");
        assert_eq!(s.day_sums(&q, &new_york).unwrap(), by_hours(&s, &new_york));
        assert_eq!(s.day_sums(&q, &berlin).unwrap(), by_hours(&s, &berlin));
        assert_ne!(by_hours(&s, &new_york), by_hours(&s, &berlin));
    }

    /// A crash can keep a window without its hour, or (were sled to
    /// recover writes out of order) the hour without the window. The
    /// agent sends the window again, not being acked, and the hour is
    /// right after either.
    #[test]
    fn a_window_sent_again_mends_its_hour_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        // Each window with a visitor of its own, so sketches show a miss.
        let window = |q: i64| {
            let mut r = window("s1", q * 900, 2, 0);
            if let Report::Window(w) = &mut r {
                let id = (q as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                w.visitor_sketch.as_mut().unwrap().insert(id);
            }
            r
        };
        for q in 0..4 {
            s.put(&window(q)).unwrap();
        }
        let whole = s.hours(&Query::default()).unwrap();
        assert_eq!(whole[0].counts.windows, 4);
        assert_eq!(whole[0].counts.visits, 8);
        assert_eq!(whole[0].counts.visitor_sketch.estimate().round(), 4.0);

        // The window stored, its hour not.
        s.hours.clear().unwrap();
        s.put(&window(0)).unwrap();
        assert_eq!(s.hours(&Query::default()).unwrap()[0].counts.windows, 1);
        for q in 1..4 {
            assert_eq!(s.put(&window(q)).unwrap(), Put::Duplicate);
        }
        assert_eq!(s.hours(&Query::default()).unwrap(), whole);

        // The window and its hour stored, the hour's sketch not.
        s.hour_sketches.clear().unwrap();
        for q in 0..4 {
            assert_eq!(s.put(&window(q)).unwrap(), Put::Duplicate);
        }
        assert_eq!(s.hours(&Query::default()).unwrap(), whole);

        // The hour has it, the window was lost: stored, not added twice.
        let mut k = prefix("s1", "a");
        k.extend_from_slice(&time_key(900));
        s.windows.remove(&k).unwrap();
        assert_eq!(s.put(&window(1)).unwrap(), Put::Inserted);
        assert_eq!(s.hours(&Query::default()).unwrap(), whole);
    }

    #[test]
    fn a_damaged_or_unknown_value_names_its_tree_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        let mut k = prefix("s1", "a");
        k.extend_from_slice(&time_key(0));
        s.windows
            .insert(&k, codec::seal(9, b"from the future"))
            .unwrap();
        let err = s.windows(&Query::default()).unwrap_err().to_string();
        assert!(err.contains("tree `windows`, key s1/a/"), "{err}");
        assert!(err.contains("value version 9 is not 1, 2, 3 or 4"), "{err}");
        s.windows
            .insert(&k, codec::seal(POSTCARD, b"\xff\xff"))
            .unwrap();
        let err = s.windows(&Query::default()).unwrap_err().to_string();
        assert!(err.contains("cannot decode"), "{err}");
    }
}
