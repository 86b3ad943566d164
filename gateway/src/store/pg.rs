//! The PostgreSQL engine of `ReportStore` (issue 19): for a chain, where
//! several gateways share one database. `[storage] url = "postgres://…"`
//! selects it; `path` keeps sled.
//!
//! Layout: one table per kind (`footfall_windows`, `footfall_days`,
//! `footfall_agents`, `footfall_dead_letters`, `footfall_campaigns`), each
//! report's figures in columns of their own (what BI tools read; `null`
//! where the report's privacy mode could not count), its visitor sketch as
//! postcard bytes. Text keys sort as bytes (`COLLATE "C"`), as sled's do.
//!
//! Invariants: the schema is versioned (`footfall_schema`) and migrated at
//! open under an advisory lock, so gateways starting together migrate
//! once. A report key is inserted at most once (`ON CONFLICT DO NOTHING`);
//! a second with other counts is a conflict and the first is kept. Writes
//! go into one transaction that `commit` commits (one WAL flush a batch),
//! and the gateway acks only after `commit`, so an ack never names an
//! uncommitted report; a failed write rolls the transaction back, and the
//! batch is stored again from its start.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use footfall_report::campaign::CampaignReport;
use footfall_report::{
    Counts, DayCounts, DayReport, PrivacyMode, Report, Sketch, WindowReport, DAY_SCHEMA,
    DWELL_EDGES_S, WINDOW_SCHEMA,
};
use jiff::tz::TimeZone;
use postgres::{Client, NoTls, Row};

use super::{
    same_counts, AgentInfo, Campaign, ChainDay, DeadLetter, Hour, Purge, Purged, Put, Query,
    ReportStore, SketchPiece, StoreError, StoreRange,
};

/// Held while migrating: the same number for every footfall gateway.
const MIGRATION_LOCK: i64 = 0x666f_6f74_6661_6c6c;

/// The schema, one step per version. Never edit a step that shipped: add
/// one.
const MIGRATIONS: &[&str] = &[
    // 1: the tables.
    r#"
    CREATE TABLE footfall_windows (
        store_id text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        window_start bigint NOT NULL,
        window_end bigint NOT NULL,
        seq bigint NOT NULL,
        frames bigint NOT NULL,
        frames_no_signal bigint NOT NULL,
        detected bigint,
        visits bigint,
        visitors bigint,
        visitors_new bigint,
        visitors_returning bigint,
        visitors_randomized bigint,
        passersby bigint,
        residents bigint,
        dwell_counts bigint[],
        dwell_sum_s bigint,
        visitor_sketch bytea,
        present_est double precision,
        present_lo double precision,
        present_hi double precision,
        entries_est double precision,
        privacy_mode text NOT NULL,
        agent_version text NOT NULL,
        params_hash text NOT NULL,
        PRIMARY KEY (store_id, agent_id, window_start)
    );
    CREATE INDEX footfall_windows_by_time ON footfall_windows (window_start);
    CREATE TABLE footfall_days (
        store_id text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        date text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        visits bigint,
        unique_visitors bigint,
        visitors_new bigint,
        visitors_returning bigint,
        visitors_randomized bigint,
        residents bigint,
        person_hours_est double precision,
        entries_est double precision,
        privacy_mode text NOT NULL,
        agent_version text NOT NULL,
        params_hash text NOT NULL,
        PRIMARY KEY (store_id, agent_id, date)
    );
    CREATE TABLE footfall_agents (
        store_id text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        info text NOT NULL,
        PRIMARY KEY (store_id, agent_id)
    );
    CREATE TABLE footfall_dead_letters (
        id bigserial PRIMARY KEY,
        received_unix_s bigint NOT NULL,
        source text NOT NULL,
        reason text NOT NULL,
        payload text NOT NULL
    );
    CREATE TABLE footfall_campaigns (
        campaign_id text COLLATE "C" PRIMARY KEY,
        campaign text NOT NULL
    );
    "#,
    // 2: views for BI tools (docs/bi.md): stable names, timestamps, and
    // sums that are null as soon as one summed row is (a privacy mode that
    // does not count a figure must not read as 0).
    r#"
    CREATE FUNCTION footfall_whole(total numeric, counted bigint, rows bigint)
        RETURNS numeric LANGUAGE sql IMMUTABLE
        AS 'SELECT CASE WHEN counted = rows THEN total END';
    CREATE VIEW footfall_windows_v AS
        SELECT store_id, agent_id,
               to_timestamp(window_start) AS window_start,
               to_timestamp(window_end) AS window_end,
               frames, frames_no_signal, detected, visits, visitors, visitors_new,
               visitors_returning, visitors_randomized, passersby, residents,
               dwell_sum_s, present_est, present_lo, present_hi, entries_est,
               present_est * (window_end - window_start) / 3600.0 AS person_hours_est,
               privacy_mode
        FROM footfall_windows;
    CREATE VIEW footfall_hours_v AS
        SELECT store_id, date_trunc('hour', window_start) AS hour_start,
               count(*) AS windows,
               sum(frames) AS frames,
               footfall_whole(sum(visits), count(visits), count(*)) AS visits,
               footfall_whole(sum(visitors), count(visitors), count(*)) AS visitors,
               footfall_whole(sum(passersby), count(passersby), count(*)) AS passersby,
               footfall_whole(sum(detected), count(detected), count(*)) AS detected,
               footfall_whole(sum(dwell_sum_s), count(dwell_sum_s), count(*)) AS dwell_sum_s,
               footfall_whole(sum(person_hours_est)::numeric, count(person_hours_est), count(*)) AS person_hours_est,
               footfall_whole(sum(entries_est)::numeric, count(entries_est), count(*)) AS entries_est,
               footfall_whole(avg(present_est)::numeric, count(present_est), count(*)) AS present_est
        FROM footfall_windows_v GROUP BY store_id, date_trunc('hour', window_start);
    CREATE VIEW footfall_days_v AS
        SELECT store_id, agent_id, date::date AS date, visits, unique_visitors,
               visitors_new, visitors_returning, visitors_randomized, residents,
               person_hours_est, entries_est, privacy_mode
        FROM footfall_days;
    CREATE VIEW footfall_weeks_v AS
        SELECT store_id, date_trunc('week', date)::date AS week_start,
               count(*) AS days,
               footfall_whole(sum(visits), count(visits), count(*)) AS visits,
               footfall_whole(sum(unique_visitors), count(unique_visitors), count(*)) AS unique_visitors_daysum,
               footfall_whole(sum(person_hours_est)::numeric, count(person_hours_est), count(*)) AS person_hours_est,
               footfall_whole(sum(entries_est)::numeric, count(entries_est), count(*)) AS entries_est
        FROM footfall_days_v GROUP BY store_id, date_trunc('week', date);
    CREATE VIEW footfall_chain_days_v AS
        SELECT date, count(DISTINCT store_id) AS stores,
               footfall_whole(sum(visits), count(visits), count(*)) AS visits,
               footfall_whole(sum(person_hours_est)::numeric, count(person_hours_est), count(*)) AS person_hours_est,
               footfall_whole(sum(entries_est)::numeric, count(entries_est), count(*)) AS entries_est
        FROM footfall_days_v GROUP BY date;
    CREATE VIEW footfall_chain_weeks_v AS
        SELECT week_start, count(DISTINCT store_id) AS stores,
               footfall_whole(sum(visits), count(visits), count(*)) AS visits,
               footfall_whole(sum(person_hours_est), count(person_hours_est), count(*)) AS person_hours_est,
               footfall_whole(sum(entries_est), count(entries_est), count(*)) AS entries_est
        FROM footfall_weeks_v GROUP BY week_start;
    CREATE VIEW footfall_campaigns_v AS
        SELECT campaign_id,
               campaign::jsonb ->> 'name' AS name,
               campaign::jsonb ->> 'channel' AS channel,
               campaign::jsonb -> 'start' AS start,
               campaign::jsonb -> 'end' AS "end",
               campaign::jsonb -> 'stores' AS stores,
               (campaign::jsonb ->> 'impressions')::bigint AS impressions,
               (campaign::jsonb ->> 'reach')::bigint AS reach,
               (campaign::jsonb ->> 'spend')::double precision AS spend
        FROM footfall_campaigns;
    "#,
];

/// Every step: the fixed ones, then those whose text is built from the
/// code's own lists (privacy modes, dwell edges).
fn migrations() -> Vec<String> {
    let mut steps: Vec<String> = MIGRATIONS.iter().map(|s| s.to_string()).collect();
    // 3: each store's windows summed by local day (a campaign report over
    // a thousand stores reads these, not millions of windows), built from
    // the windows stored so far in each store's zone as its statuses say.
    steps.push(format!(
        r#"
    CREATE TABLE footfall_local_days (
        store_id text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        day_start bigint NOT NULL,
        tz text NOT NULL,
        windows bigint NOT NULL, window_s bigint NOT NULL, frames bigint NOT NULL,
        frames_no_signal bigint NOT NULL, detected bigint NOT NULL, visits bigint NOT NULL,
        visitors bigint NOT NULL, visitors_new bigint NOT NULL,
        visitors_returning bigint NOT NULL, visitors_randomized bigint NOT NULL,
        passersby bigint NOT NULL, residents bigint NOT NULL,
        dwell_1 bigint NOT NULL, dwell_2 bigint NOT NULL, dwell_3 bigint NOT NULL,
        dwell_4 bigint NOT NULL, dwell_5 bigint NOT NULL, dwell_6 bigint NOT NULL,
        dwell_sum_s bigint NOT NULL, people_windows bigint NOT NULL,
        present_sum double precision NOT NULL, present_lo_sum double precision NOT NULL,
        present_hi_sum double precision NOT NULL, entries_sum double precision NOT NULL,
        visit_windows bigint NOT NULL, across_day_windows bigint NOT NULL,
        day_scoped_windows bigint NOT NULL,
        PRIMARY KEY (store_id, agent_id, day_start)
    );
    INSERT INTO footfall_local_days ({LOCAL_DAY_COLUMNS})
        SELECT store_id, agent_id,
               extract(epoch FROM date_trunc('day', to_timestamp(window_start), z.tz))::bigint AS start,
               z.tz, {sums}
        FROM footfall_windows
        JOIN (SELECT s.store_id, coalesce(
                  (SELECT a.info::jsonb #>> '{{status,health,timezone}}' FROM footfall_agents a
                   WHERE a.store_id = s.store_id
                     AND a.info::jsonb #>> '{{status,health,timezone}}' IN (SELECT name FROM pg_timezone_names)
                   ORDER BY a.agent_id DESC LIMIT 1), 'UTC') AS tz
              FROM (SELECT DISTINCT store_id FROM footfall_windows) s) z USING (store_id)
        GROUP BY store_id, agent_id, start, z.tz;
    "#,
        sums = PgStore::sums_columns()
    ));
    // 4: the chain's distinct visitors by local date, as last worked out
    // (`ChainDay`).
    steps.push(
        r#"
    CREATE TABLE footfall_chain_days (
        date text COLLATE "C" PRIMARY KEY,
        windows bigint NOT NULL,
        zones bigint NOT NULL,
        sketch bytea,
        note text
    );
    "#
        .to_string(),
    );
    // 5: campaign reports as the gateway last worked them out (SPEC §7,
    // small counts withheld as `[privacy] min_count` says), for SQL tools:
    // the whole report as JSON, and its figures as columns.
    steps.push(
        r#"
    CREATE TABLE footfall_campaign_reports (
        campaign_id text COLLATE "C" PRIMARY KEY,
        computed_at timestamptz NOT NULL,
        report jsonb NOT NULL
    );
    CREATE FUNCTION footfall_campaign_figures(r jsonb) RETURNS TABLE (
        FIGURES_DECL
    ) LANGUAGE sql IMMUTABLE AS $$
        SELECT FIGURES_COLS
    $$;
    CREATE VIEW footfall_campaign_reports_v AS
        SELECT c.campaign_id, c.report ->> 'name' AS name, c.report ->> 'channel' AS channel,
               c.report ->> 'start' AS start, c.report ->> 'end' AS "end",
               (c.report ->> 'impressions')::bigint AS impressions,
               (c.report ->> 'reach')::bigint AS reach,
               (c.report ->> 'spend')::double precision AS spend,
               f.*, c.report -> 'control_stores' AS control_stores,
               c.report -> 'warnings' AS warnings, c.computed_at
        FROM footfall_campaign_reports c, footfall_campaign_figures(c.report) f;
    CREATE VIEW footfall_campaign_store_reports_v AS
        SELECT c.campaign_id, s ->> 'store_id' AS store_id, f.*, c.computed_at
        FROM footfall_campaign_reports c,
             jsonb_array_elements(c.report -> 'stores') s,
             footfall_campaign_figures(s) f;
    CREATE VIEW footfall_campaign_days_v AS
        SELECT c.campaign_id, (d ->> 'day')::int AS day, (d ->> 'date')::date AS date,
               (d ->> 'visits')::bigint AS visits,
               (d ->> 'baseline_visits')::double precision AS baseline_visits, c.computed_at
        FROM footfall_campaign_reports c, jsonb_array_elements(c.report -> 'daily') d;
    "#
        .replace(
            "FIGURES_DECL",
            &FIGURES
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
        .replace(
            "FIGURES_COLS",
            &FIGURES
                .iter()
                .map(|(n, t)| format!("(r ->> '{n}')::{t}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    // 6: each store's visitor sketch of a local day, worked out from its
    // windows when a campaign report first merges it, kept while the day's
    // window count (in `footfall_local_days`) is what it was then.
    steps.push(
        r#"
    CREATE TABLE footfall_day_sketches (
        store_id text COLLATE "C" NOT NULL,
        agent_id text COLLATE "C" NOT NULL,
        day_start bigint NOT NULL,
        windows bigint NOT NULL,
        sketch bytea NOT NULL,
        PRIMARY KEY (store_id, agent_id, day_start)
    );
    "#
        .to_string(),
    );
    // 7: how far a day's kept sketch reaches (the latest window merged),
    // so that the day in progress merges only the windows since
    // (`date_sketches`); and the local days of a date found by index.
    steps.push(
        r#"
    ALTER TABLE footfall_day_sketches ADD COLUMN through bigint;
    CREATE INDEX footfall_local_days_by_day ON footfall_local_days (day_start);
    "#
        .to_string(),
    );
    steps
}

/// The figures of a campaign report (and of each of its stores) that the
/// campaign views give as columns, with their SQL types.
const FIGURES: &[(&str, &str)] = &[
    ("visits", "bigint"),
    ("visitors", "bigint"),
    ("passersby", "bigint"),
    ("baseline_visits", "double precision"),
    ("baseline_weeks_used", "bigint"),
    ("lift", "double precision"),
    ("incremental_visits", "double precision"),
    ("visits_per_1k_impressions", "double precision"),
    ("cost_per_incremental_visit", "double precision"),
    ("capture_rate", "double precision"),
    ("did_lift", "double precision"),
    ("entries_est", "double precision"),
    ("baseline_entries_est", "double precision"),
    ("entries_lift", "double precision"),
    ("incremental_entries_est", "double precision"),
    ("entries_did_lift", "double precision"),
    ("person_hours_est", "double precision"),
    ("unique_visitors_est", "bigint"),
    ("dwell_sum_s", "bigint"),
];

/// A local day: store, agent, its midnight (Unix seconds).
type DayKey = (String, String, i64);

/// A local day's visitor sketch as `day_sketches_since` worked it out.
struct DaySketch {
    key: DayKey,
    /// The zone the day was cut in.
    tz: String,
    /// Whether every window of the day counted visits (has a sketch).
    sketched: bool,
    /// `None` when a window came in before the kept sketch's latest.
    sketch: Option<Sketch>,
    /// How many windows the sketch merges, and the latest's start.
    windows: i64,
    through: Option<i64>,
    /// Whether it differs from what is kept.
    changed: bool,
}

/// A day sketch to keep: store, agent, midnight, windows merged, the
/// latest window's start (`None`: not known), the sketch.
type KeptDay<'a> = (&'a str, &'a str, i64, i64, Option<i64>, &'a Sketch);

/// Windows summed by local day, with the zone they were cut in.
type DayDeltas = BTreeMap<DayKey, (String, Counts)>;

/// The columns of `footfall_local_days`, in `counts_of` order after the
/// key and zone.
const LOCAL_DAY_COLUMNS: &str = "store_id, agent_id, day_start, tz, windows, window_s, frames, \
    frames_no_signal, detected, visits, visitors, visitors_new, visitors_returning, \
    visitors_randomized, passersby, residents, dwell_1, dwell_2, dwell_3, dwell_4, dwell_5, \
    dwell_6, dwell_sum_s, people_windows, present_sum, present_lo_sum, present_hi_sum, \
    entries_sum, visit_windows, across_day_windows, day_scoped_windows";
// `footfall_local_days` has a column per dwell bucket.
const _: () = assert!(DWELL_EDGES_S.len() == 6);

const WINDOW_COLUMNS: &str = "store_id, agent_id, window_start, window_end, seq, frames, \
    frames_no_signal, detected, visits, visitors, visitors_new, visitors_returning, \
    visitors_randomized, passersby, residents, dwell_counts, dwell_sum_s, visitor_sketch, \
    present_est, present_lo, present_hi, entries_est, privacy_mode, agent_version, params_hash";

const DAY_COLUMNS: &str = "store_id, agent_id, date, seq, visits, unique_visitors, \
    visitors_new, visitors_returning, visitors_randomized, residents, person_hours_est, \
    entries_est, privacy_mode, agent_version, params_hash";

pub struct PgStore {
    /// Each store's zone as its statuses say (`calendar::timezones_of`):
    /// the local day a window is summed into at ingest.
    zones: Mutex<BTreeMap<String, TimeZone>>,
    /// The URL without its password, for error messages.
    name: String,
    /// To connect again after the connection is lost.
    url: String,
    /// Ingest's connection: its batch transaction stays open from the
    /// first write to `commit`.
    client: Mutex<Conn>,
    /// Everything else's (the API, campaigns, purges, the caches queries
    /// keep): a query of minutes (a chain's first year of days) does not
    /// stop ingest, nor does it read inside ingest's open batch.
    reader: Mutex<Conn>,
}

/// The connection and whether a write transaction is open on it: writes
/// go into one transaction until `commit`, one fsync for a batch instead
/// of one per report.
struct Conn {
    /// `None` until first used, and while dropping (see `Drop`).
    client: Option<Client>,
    in_tx: bool,
}

impl Drop for PgStore {
    /// Closing a connection blocks on the driver's runtime too.
    fn drop(&mut self) {
        let take =
            |m: &mut Mutex<Conn>| m.get_mut().unwrap_or_else(|p| p.into_inner()).client.take();
        let clients = [take(&mut self.client), take(&mut self.reader)];
        blocking(move || drop(clients));
    }
}

/// The connection, locked: one statement at a time on it.
struct ClientGuard<'a>(std::sync::MutexGuard<'a, Conn>);

impl std::ops::Deref for ClientGuard<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0
            .client
            .as_ref()
            .expect("the connection lives as long as the store")
    }
}

impl std::ops::DerefMut for ClientGuard<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.0
            .client
            .as_mut()
            .expect("the connection lives as long as the store")
    }
}

/// PostgreSQL's text cannot hold NUL, which junk payloads do: shown as
/// U+FFFD, as other bytes that are not text already are.
fn no_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

/// i64 of a u64 count; counts never come near 2^63.
fn big(v: Option<u64>) -> Option<i64> {
    v.map(|x| x as i64)
}

fn count(v: Option<i64>) -> Option<u64> {
    v.map(|x| x.max(0) as u64)
}

impl PgStore {
    /// Connects and brings the schema up to date.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::unconnected(url);
        store.migrate()?;
        store.load_zones()?;
        Ok(store)
    }

    /// A store whose connections are made when first used: one that
    /// never ingests (`background`) never holds ingest's.
    fn unconnected(url: &str) -> PgStore {
        let conn = || {
            Mutex::new(Conn {
                client: None,
                in_tx: false,
            })
        };
        PgStore {
            zones: Mutex::new(BTreeMap::new()),
            name: crate::config::redact(url),
            url: url.to_string(),
            client: conn(),
            reader: conn(),
        }
    }

    fn load_zones(&self) -> Result<(), StoreError> {
        let zones = crate::store::time::timezones_of(&self.agents_now()?);
        *self.zones.lock().unwrap_or_else(|p| p.into_inner()) = zones;
        Ok(())
    }

    fn err(&self, what: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        let what = format!("{}: {what}", self.name);
        move |source| StoreError::Postgres {
            what: what.clone(),
            source,
        }
    }

    /// Ingest's connection (see `connection`).
    fn client(&self) -> Result<ClientGuard<'_>, StoreError> {
        self.connection(&self.client)
    }

    /// The connection for all but ingest (see `connection`), after
    /// committing ingest's open batch: a caller reads what it stored, as
    /// on sled, without waiting for the batch to end.
    fn reader(&self) -> Result<ClientGuard<'_>, StoreError> {
        self.finish()?;
        self.connection(&self.reader)
    }

    /// A connection, connecting again when it was lost (the database
    /// restarted): a statement that failed on the old one failed, the
    /// next one gets a new connection or the reason there is none.
    fn connection<'a>(&self, conn: &'a Mutex<Conn>) -> Result<ClientGuard<'a>, StoreError> {
        // A panic while holding the lock leaves the connection as usable
        // as any: every statement commits on its own.
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.client.as_ref().is_none_or(Client::is_closed) {
            // What the lost connection had not committed is gone with it.
            let lost_batch = std::mem::take(&mut guard.in_tx);
            let again = guard.client.is_some();
            let mut c =
                Client::connect(&self.url, NoTls).map_err(|source| StoreError::Postgres {
                    what: format!("{}: cannot connect", self.name),
                    source,
                })?;
            // The planner's estimate of a day's sketches (thousands of
            // index probes) made PostgreSQL compile it: 0.79 s of JIT for
            // a statement that runs in 0.1 s. A gateway's reads are meant
            // to answer within a second, where compiling does not pay.
            c.batch_execute("SET jit = off")
                .map_err(self.err("turning off JIT compilation"))?;
            if again {
                tracing::info!(database = %self.name, "connected to the database again");
            }
            guard.client = Some(c);
            // Its writes went without an error to the caller that made
            // them: committing the rest would ack them too.
            if lost_batch {
                return Err(StoreError::Lost {
                    what: format!(
                        "{}: the connection was lost with a batch of writes open; \
                         the batch is stored again",
                        self.name
                    ),
                });
            }
        }
        Ok(ClientGuard(guard))
    }

    /// Runs a write inside the open transaction, opening one if none is;
    /// a failed write rolls it back (the caller retries the whole batch,
    /// which is idempotent by key).
    fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut c = self.client()?;
        let result = (|| {
            if !c.0.in_tx {
                c.batch_execute("BEGIN")?;
                c.0.in_tx = true;
            }
            f(&mut c)
        })();
        if result.is_err() && c.0.in_tx {
            let _ = c.batch_execute("ROLLBACK");
            c.0.in_tx = false;
        }
        result.map_err(self.err(what))
    }

    /// Commits the open transaction, if any.
    fn finish(&self) -> Result<(), StoreError> {
        if !self.client.lock().unwrap_or_else(|p| p.into_inner()).in_tx {
            return Ok(());
        }
        let mut c = self.client()?;
        if c.0.in_tx {
            c.0.in_tx = false;
            c.batch_execute("COMMIT").map_err(self.err("committing"))?;
        }
        Ok(())
    }

    /// Applies the migrations this database lacks, under an advisory lock.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client()?;
        let e = self.err("migrating the schema");
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(&e)?;
        let result = (|| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS footfall_schema (version integer NOT NULL)",
            )?;
            let version: i32 = c
                .query_opt("SELECT max(version) FROM footfall_schema", &[])?
                .and_then(|r| r.get::<_, Option<i32>>(0))
                .unwrap_or(0);
            for (i, step) in migrations().iter().enumerate().skip(version as usize) {
                let mut t = c.transaction()?;
                t.batch_execute(step)?;
                t.execute(
                    "INSERT INTO footfall_schema (version) VALUES ($1)",
                    &[&(i as i32 + 1)],
                )?;
                t.commit()?;
            }
            Ok::<i32, postgres::Error>(version)
        })();
        c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .map_err(&e)?;
        let found = result.map_err(&e)?;
        if found as usize > migrations().len() {
            return Err(StoreError::Schema {
                what: format!(
                    "{}: schema version {found} is newer than this gateway's {}; run the newer gateway",
                    self.name,
                    migrations().len()
                ),
            });
        }
        Ok(())
    }

    fn window_of(row: &Row) -> Result<WindowReport, String> {
        let sketch: Option<Vec<u8>> = row.get("visitor_sketch");
        let visitor_sketch = sketch
            .map(|b| postcard::from_bytes::<Sketch>(&b).map_err(|e| e.to_string()))
            .transpose()?;
        let mode: String = row.get("privacy_mode");
        let dwell: Option<Vec<i64>> = row.get("dwell_counts");
        Ok(WindowReport {
            schema: WINDOW_SCHEMA.into(),
            store_id: row.get("store_id"),
            agent_id: row.get("agent_id"),
            seq: row.get::<_, i64>("seq") as u64,
            window_start: row.get("window_start"),
            window_end: row.get("window_end"),
            frames: row.get::<_, i64>("frames") as u64,
            frames_no_signal: row.get::<_, i64>("frames_no_signal") as u64,
            detected: count(row.get("detected")),
            visits: count(row.get("visits")),
            visitors: count(row.get("visitors")),
            visitors_new: count(row.get("visitors_new")),
            visitors_returning: count(row.get("visitors_returning")),
            visitors_randomized: count(row.get("visitors_randomized")),
            passersby: count(row.get("passersby")),
            residents: count(row.get("residents")),
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts: dwell.map(|d| d.into_iter().map(|x| x.max(0) as u64).collect()),
            dwell_sum_s: count(row.get("dwell_sum_s")),
            visitor_sketch,
            present_est: row.get("present_est"),
            present_lo: row.get("present_lo"),
            present_hi: row.get("present_hi"),
            entries_est: row.get("entries_est"),
            privacy_mode: mode.parse()?,
            agent_version: row.get("agent_version"),
            params_hash: row.get("params_hash"),
        })
    }

    fn day_of(row: &Row) -> Result<DayReport, String> {
        let mode: String = row.get("privacy_mode");
        Ok(DayReport {
            schema: DAY_SCHEMA.into(),
            store_id: row.get("store_id"),
            agent_id: row.get("agent_id"),
            seq: row.get::<_, i64>("seq") as u64,
            date: row.get("date"),
            visits: count(row.get("visits")),
            unique_visitors: count(row.get("unique_visitors")),
            visitors_new: count(row.get("visitors_new")),
            visitors_returning: count(row.get("visitors_returning")),
            visitors_randomized: count(row.get("visitors_randomized")),
            residents: count(row.get("residents")),
            person_hours_est: row.get("person_hours_est"),
            entries_est: row.get("entries_est"),
            privacy_mode: mode.parse::<PrivacyMode>()?,
            agent_version: row.get("agent_version"),
            params_hash: row.get("params_hash"),
        })
    }

    fn corrupt(&self, table: &'static str, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.name.clone().into(),
            tree: table,
            key: String::new(),
            what,
        }
    }

    /// Inserts windows that are not stored yet, in one statement of one
    /// array per column (`unnest`): the statement's text is the same for
    /// any number of rows and short to parse, and a batch of any size
    /// goes in one statement; returns the keys it inserted.
    fn insert_windows(
        c: &mut Client,
        windows: &[&WindowReport],
    ) -> Result<HashSet<(String, String, i64)>, postgres::Error> {
        let text = |f: &dyn Fn(&WindowReport) -> String| -> Vec<String> {
            windows.iter().map(|w| f(w)).collect()
        };
        let int = |f: &dyn Fn(&WindowReport) -> i64| -> Vec<i64> {
            windows.iter().map(|w| f(w)).collect()
        };
        let count = |f: &dyn Fn(&WindowReport) -> Option<u64>| -> Vec<Option<i64>> {
            windows.iter().map(|w| big(f(w))).collect()
        };
        let real = |f: &dyn Fn(&WindowReport) -> Option<f64>| -> Vec<Option<f64>> {
            windows.iter().map(|w| f(w)).collect()
        };
        // A column of arrays does not unnest (a 2-D array flattens): the
        // histogram goes as its text, cast back to bigint[] by the server.
        let dwell: Vec<Option<String>> = windows
            .iter()
            .map(|w| {
                w.dwell_counts.as_ref().map(|d| {
                    let items: Vec<String> = d.iter().map(u64::to_string).collect();
                    format!("{{{}}}", items.join(","))
                })
            })
            .collect();
        let sketch: Vec<Option<Vec<u8>>> = windows
            .iter()
            .map(|w| {
                w.visitor_sketch
                    .as_ref()
                    .map(|s| postcard::to_stdvec(s).expect("sketches serialize"))
            })
            .collect();
        let statement = format!(
            "INSERT INTO footfall_windows ({WINDOW_COLUMNS}) \
             SELECT s, a, ws, we, seq, fr, fns, det, vis, vtr, vnew, vret, vrnd, pas, res, \
                    dw::bigint[], dws, sk, pe, pl, ph, ee, pm, av, ph2 \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
                         $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
                         $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], \
                         $16::text[], $17::int8[], $18::bytea[], $19::float8[], $20::float8[], \
                         $21::float8[], $22::float8[], $23::text[], $24::text[], $25::text[]) \
                  AS u(s, a, ws, we, seq, fr, fns, det, vis, vtr, vnew, vret, vrnd, pas, res, \
                       dw, dws, sk, pe, pl, ph, ee, pm, av, ph2) \
             ON CONFLICT DO NOTHING RETURNING store_id, agent_id, window_start"
        );
        let rows = c.query(
            &statement,
            &[
                &text(&|w| w.store_id.clone()),
                &text(&|w| w.agent_id.clone()),
                &int(&|w| w.window_start),
                &int(&|w| w.window_end),
                &int(&|w| w.seq as i64),
                &int(&|w| w.frames as i64),
                &int(&|w| w.frames_no_signal as i64),
                &count(&|w| w.detected),
                &count(&|w| w.visits),
                &count(&|w| w.visitors),
                &count(&|w| w.visitors_new),
                &count(&|w| w.visitors_returning),
                &count(&|w| w.visitors_randomized),
                &count(&|w| w.passersby),
                &count(&|w| w.residents),
                &dwell,
                &count(&|w| w.dwell_sum_s),
                &sketch,
                &real(&|w| w.present_est),
                &real(&|w| w.present_lo),
                &real(&|w| w.present_hi),
                &real(&|w| w.entries_est),
                &text(&|w| w.privacy_mode.as_str().to_string()),
                &text(&|w| w.agent_version.clone()),
                &text(&|w| w.params_hash.clone()),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Windows summed by store, agent and local day in each store's zone,
    /// with the zone's name: what `upsert_local_days` adds.
    fn local_day_deltas(&self, windows: &[&WindowReport]) -> DayDeltas {
        let zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = DayDeltas::new();
        let utc = TimeZone::UTC;
        for w in windows {
            let tz = zones.get(&w.store_id).unwrap_or(&utc);
            let day = crate::store::time::local_midnight(w.window_start, tz);
            let (_, counts) = out
                .entry((w.store_id.clone(), w.agent_id.clone(), day))
                .or_insert_with(|| {
                    (
                        tz.iana_name().unwrap_or("UTC").to_string(),
                        Counts::default(),
                    )
                });
            counts.add(&Counts::of_window(w));
        }
        out
    }

    /// Adds sums to their local days, in key order (two gateways adding to
    /// the same days lock them in the same order, so neither deadlocks). A
    /// day summed in two zones (a store's zone changed) keeps the zone ""
    /// and is read from its windows instead.
    fn upsert_local_days(
        c: &mut impl postgres::GenericClient,
        deltas: &DayDeltas,
    ) -> Result<(), postgres::Error> {
        if deltas.is_empty() {
            return Ok(());
        }
        type Row<'a> = (&'a DayKey, &'a (String, Counts));
        let rows: Vec<Row> = deltas.iter().collect();
        let text = |f: &dyn Fn(&DayKey, &(String, Counts)) -> String| -> Vec<String> {
            rows.iter().map(|(k, v)| f(k, v)).collect()
        };
        let int = |f: &dyn Fn(&Counts) -> u64| -> Vec<i64> {
            rows.iter().map(|(_, (_, c))| f(c) as i64).collect()
        };
        let real = |f: &dyn Fn(&Counts) -> f64| -> Vec<f64> {
            rows.iter().map(|(_, (_, c))| f(c)).collect()
        };
        let columns: Vec<&str> = LOCAL_DAY_COLUMNS.split(", ").map(str::trim).collect();
        let types = [
            "text", "text", "int8", "text", "int8", "int8", "int8", "int8", "int8", "int8", "int8",
            "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8",
            "int8", "int8", "float8", "float8", "float8", "float8", "int8", "int8", "int8",
        ];
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", i + 1))
            .collect();
        let adds: Vec<String> = columns[4..]
            .iter()
            .filter(|c| **c != "window_s")
            .map(|c| format!("{c} = d.{c} + excluded.{c}"))
            .collect();
        let statement = format!(
            "INSERT INTO footfall_local_days AS d ({LOCAL_DAY_COLUMNS}) \
             SELECT * FROM unnest({}) \
             ON CONFLICT (store_id, agent_id, day_start) DO UPDATE SET \
             tz = CASE WHEN d.tz = excluded.tz THEN d.tz ELSE '' END, {}",
            arrays.join(", "),
            adds.join(", ")
        );
        let dwell = |i: usize| int(&move |c: &Counts| c.dwell_counts[i]);
        c.execute(
            &statement,
            &[
                &text(&|k, _| k.0.clone()),
                &text(&|k, _| k.1.clone()),
                &rows.iter().map(|(k, _)| k.2).collect::<Vec<i64>>(),
                &text(&|_, v| v.0.clone()),
                &int(&|c| c.windows),
                &rows
                    .iter()
                    .map(|(_, (_, c))| c.window_s)
                    .collect::<Vec<i64>>(),
                &int(&|c| c.frames),
                &int(&|c| c.frames_no_signal),
                &int(&|c| c.detected),
                &int(&|c| c.visits),
                &int(&|c| c.visitors),
                &int(&|c| c.visitors_new),
                &int(&|c| c.visitors_returning),
                &int(&|c| c.visitors_randomized),
                &int(&|c| c.passersby),
                &int(&|c| c.residents),
                &dwell(0),
                &dwell(1),
                &dwell(2),
                &dwell(3),
                &dwell(4),
                &dwell(5),
                &int(&|c| c.dwell_sum_s),
                &int(&|c| c.people_windows),
                &real(&|c| c.present_sum),
                &real(&|c| c.present_lo_sum),
                &real(&|c| c.present_hi_sum),
                &real(&|c| c.entries_sum),
                &int(&|c| c.visit_windows),
                &int(&|c| c.across_day_windows),
                &int(&|c| c.day_scoped_windows),
            ],
        )?;
        Ok(())
    }

    fn insert_day(c: &mut Client, d: &DayReport) -> Result<u64, postgres::Error> {
        c.execute(
            &format!(
                "INSERT INTO footfall_days ({DAY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING"
            ),
            &[
                &d.store_id,
                &d.agent_id,
                &d.date,
                &(d.seq as i64),
                &big(d.visits),
                &big(d.unique_visitors),
                &big(d.visitors_new),
                &big(d.visitors_returning),
                &big(d.visitors_randomized),
                &big(d.residents),
                &d.person_hours_est,
                &d.entries_est,
                &d.privacy_mode.as_str(),
                &d.agent_version,
                &d.params_hash,
            ],
        )
    }

    /// `WHERE` clauses and parameters of a query over `time_column`.
    fn filter(
        q: &Query,
        time_column: &str,
    ) -> (String, Vec<Box<dyn postgres::types::ToSql + Sync>>) {
        let mut clauses = Vec::new();
        let mut params: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
        if let Some(s) = &q.store_id {
            params.push(Box::new(s.clone()));
            clauses.push(format!("store_id = ${}", params.len()));
        }
        if let Some(f) = q.from_s {
            params.push(Box::new(f));
            clauses.push(format!("{time_column} >= ${}", params.len()));
        }
        if let Some(t) = q.to_s {
            params.push(Box::new(t));
            clauses.push(format!("{time_column} < ${}", params.len()));
        }
        let sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        (sql, params)
    }

    /// The select list of `Counts` summed over a group of windows (as
    /// `Counts::of_window` and `Counts::add` sum them, but for the sketch),
    /// after `store_id, agent_id, <start>`; read back by `counts_of`.
    fn sums_columns() -> String {
        let dwell: Vec<String> = (1..=DWELL_EDGES_S.len())
            .map(|i| format!("sum(coalesce(dwell_counts[{i}], 0))::bigint"))
            .collect();
        let day_scoped: Vec<String> = PrivacyMode::ALL
            .iter()
            .filter(|m| m.sketches_day_scoped())
            .map(|m| format!("'{}'", m.as_str()))
            .collect();
        format!(
            "count(*), min(window_end - window_start), sum(frames)::bigint, \
             sum(frames_no_signal)::bigint, sum(coalesce(detected, 0))::bigint, \
             sum(coalesce(visits, 0))::bigint, sum(coalesce(visitors, 0))::bigint, \
             sum(coalesce(visitors_new, 0))::bigint, sum(coalesce(visitors_returning, 0))::bigint, \
             sum(coalesce(visitors_randomized, 0))::bigint, sum(coalesce(passersby, 0))::bigint, \
             sum(coalesce(residents, 0))::bigint, {}, sum(coalesce(dwell_sum_s, 0))::bigint, \
             count(present_est), coalesce(sum(present_est), 0), coalesce(sum(present_lo), 0), \
             coalesce(sum(present_hi), 0), coalesce(sum(entries_est), 0), count(visits), \
             count(residents), count(*) FILTER (WHERE privacy_mode IN ({}))",
            dwell.join(", "),
            if day_scoped.is_empty() {
                "NULL".to_string()
            } else {
                day_scoped.join(", ")
            }
        )
    }

    /// A row of `sums_columns` (or of `footfall_local_days`) from column
    /// `at` on, as `Counts` with an empty sketch.
    fn counts_of(row: &Row, at: usize) -> Counts {
        let n = |i: usize| row.get::<_, i64>(at + i).max(0) as u64;
        let mut dwell_counts = [0; DWELL_EDGES_S.len()];
        for (k, d) in dwell_counts.iter_mut().enumerate() {
            *d = n(12 + k);
        }
        let e = at + 12 + DWELL_EDGES_S.len();
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Counts {
            windows: n(at),
            window_s: row.get(at + 1),
            frames: n(at + 2),
            frames_no_signal: n(at + 3),
            detected: n(at + 4),
            visits: n(at + 5),
            visitors: n(at + 6),
            visitors_new: n(at + 7),
            visitors_returning: n(at + 8),
            visitors_randomized: n(at + 9),
            passersby: n(at + 10),
            residents: n(at + 11),
            dwell_counts,
            dwell_sum_s: n(e),
            visitor_sketch: Sketch::new(),
            people_windows: n(e + 1),
            present_sum: row.get(e + 2),
            present_lo_sum: row.get(e + 3),
            present_hi_sum: row.get(e + 4),
            entries_sum: row.get(e + 5),
            visit_windows: n(e + 6),
            across_day_windows: n(e + 7),
            day_scoped_windows: n(e + 8),
        }
    }

    /// Windows in `q` summed in the database by store, agent and `start`
    /// (an SQL expression over the windows and `extra`'s columns).
    fn sums(
        &self,
        q: &Query,
        start: &str,
        extra: &str,
        extra_params: Vec<Box<dyn postgres::types::ToSql + Sync>>,
    ) -> Result<Vec<Hour>, StoreError> {
        let (filter, mut params) = PgStore::filter(q, "window_start");
        let first = params.len();
        params.extend(extra_params);
        let extra = (1..=params.len() - first).fold(extra.to_string(), |sql, k| {
            sql.replace(&format!("${{{k}}}"), &format!("${}", first + k))
        });
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        let rows = self
            .reader()?
            .query(
                &format!(
                    "SELECT store_id, agent_id, {start} AS start, {} \
                     FROM footfall_windows{extra}{filter} \
                     GROUP BY store_id, agent_id, start ORDER BY store_id, agent_id, start",
                    PgStore::sums_columns()
                ),
                &refs,
            )
            .map_err(self.err("summing windows"))?;
        Ok(rows
            .iter()
            .map(|r| Hour {
                store_id: r.get(0),
                agent_id: r.get(1),
                hour_start: r.get(2),
                counts: PgStore::counts_of(r, 3),
            })
            .collect())
    }

    fn hour_sums_now(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        self.sums(
            &PgStore::hour_query(q),
            "window_start / 3600 * 3600",
            "",
            Vec::new(),
        )
        .map(|hours| {
            hours
                .into_iter()
                .filter(|h| q.contains(h.hour_start))
                .collect()
        })
    }

    /// The local days summed at ingest; a store whose days were summed in
    /// another zone than `zones` gives (a zone changed, or windows came
    /// before the first status) is summed from its windows instead.
    fn day_sums_now(
        &self,
        q: &Query,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Vec<Hour>, StoreError> {
        let stores: Vec<String> = zones
            .keys()
            .filter(|s| q.store_id.as_ref().is_none_or(|one| one == *s))
            .cloned()
            .collect();
        let rows = self
            .reader()?
            .query(
                &format!(
                    "SELECT {LOCAL_DAY_COLUMNS} FROM footfall_local_days \
                     WHERE store_id = ANY($1) AND day_start >= $2 AND day_start < $3 \
                     ORDER BY store_id, agent_id, day_start"
                ),
                &[
                    &stores,
                    &q.from_s.unwrap_or(i64::MIN),
                    &q.to_s.unwrap_or(i64::MAX),
                ],
            )
            .map_err(self.err("reading local days"))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut elsewhere: BTreeMap<String, TimeZone> = BTreeMap::new();
        for r in &rows {
            let store_id: String = r.get(0);
            let tz = &zones[&store_id];
            if r.get::<_, &str>(3) != tz.iana_name().unwrap_or("UTC") {
                elsewhere.insert(store_id, tz.clone());
                continue;
            }
            out.push(Hour {
                store_id,
                agent_id: r.get(1),
                hour_start: r.get(2),
                counts: PgStore::counts_of(r, 4),
            });
        }
        out.retain(|d| !elsewhere.contains_key(&d.store_id));
        for store_id in elsewhere.keys() {
            let one = Query {
                store_id: Some(store_id.clone()),
                ..super::day_wide(q)
            };
            let one_q = Query {
                store_id: Some(store_id.clone()),
                ..q.clone()
            };
            out.extend(super::days_of_hours(
                self.hour_sums_now(&one)?,
                &one_q,
                &elsewhere,
            ));
        }
        Ok(out)
    }

    fn day_totals_now(&self, from: &str, to: &str) -> Result<Vec<(String, DayCounts)>, StoreError> {
        let rows = self
            .reader()?
            .query(
                "SELECT date, count(*), \
                     count(visits), sum(visits)::bigint, \
                     count(unique_visitors), sum(unique_visitors)::bigint, \
                     count(visitors_new), sum(visitors_new)::bigint, \
                     count(visitors_returning), sum(visitors_returning)::bigint, \
                     count(visitors_randomized), sum(visitors_randomized)::bigint, \
                     count(residents), sum(residents)::bigint, \
                     count(person_hours_est), sum(person_hours_est), \
                     count(entries_est), sum(entries_est) \
                 FROM footfall_days WHERE date >= $1 AND date <= $2 \
                 GROUP BY date ORDER BY date",
                &[&from, &to],
            )
            .map_err(self.err("summing days"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let all: i64 = r.get(1);
                // A sum is known when every day of the date has the figure.
                let n = |i: usize| {
                    (r.get::<_, i64>(i) == all)
                        .then(|| r.get::<_, Option<i64>>(i + 1).unwrap_or(0).max(0) as u64)
                };
                let x = |i: usize| {
                    (r.get::<_, i64>(i) == all)
                        .then(|| r.get::<_, Option<f64>>(i + 1).unwrap_or(0.0))
                };
                // Added to nothing, as the days would be: sums rounded alike.
                let mut sums = DayCounts::default();
                sums.add(&DayCounts {
                    visits: n(2),
                    unique_visitors: n(4),
                    visitors_new: n(6),
                    visitors_returning: n(8),
                    visitors_randomized: n(10),
                    residents: n(12),
                    person_hours_est: x(14),
                    entries_est: x(16),
                });
                (r.get(0), sums)
            })
            .collect())
    }

    /// From the local days summed at ingest, added up by the database per
    /// midnight and zone (a few thousand rows for a chain's year, where
    /// one per store was 365,000 and 1.3 s): a day summed in another zone
    /// than its store's (`sure` false) counts for the dates either side too.
    fn date_windows_now(
        &self,
        from: &str,
        to: &str,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let q = super::day_wide(&crate::store::time::dates_query(from, to));
        // The zones' arrays behind subqueries: a planner that sees a
        // thousand stores hashes the year's local days instead of the
        // zones, on one core (a year at 1,000 stores: 0.49 s; so, 0.23 s).
        let (stores, names): (Vec<&str>, Vec<&str>) = zones
            .iter()
            .map(|(s, tz)| (s.as_str(), tz.iana_name().unwrap_or("UTC")))
            .unzip();
        let rows = self
            .reader()?
            .query(
                "SELECT d.day_start, d.tz, d.tz = coalesce(z.zone, 'UTC') AS sure, \
                     sum(d.windows)::bigint \
                 FROM footfall_local_days d \
                 LEFT JOIN unnest((SELECT $3::text[]), (SELECT $4::text[])) AS z(store_id, zone) \
                     USING (store_id) \
                 WHERE d.day_start >= $1 AND d.day_start < $2 \
                 GROUP BY d.day_start, d.tz, sure",
                &[
                    &q.from_s.unwrap_or(i64::MIN),
                    &q.to_s.unwrap_or(i64::MAX),
                    &stores,
                    &names,
                ],
            )
            .map_err(self.err("counting windows by date"))?;
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for r in &rows {
            let (day, tz, sure, n): (i64, &str, bool, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            // The date the day was cut as: its own zone's (UTC if unknown).
            let zone = TimeZone::get(tz).unwrap_or(TimeZone::UTC);
            let noon = day + 12 * 3600;
            let around: &[i64] = if sure { &[0] } else { &[-1, 0, 1] };
            for k in around {
                super::count_date(
                    &mut out,
                    crate::store::time::local_date(noon + k * 86_400, &zone),
                    (from, to),
                    n.max(0) as u64,
                );
            }
        }
        Ok(out)
    }

    fn chain_days_now(&self, from: &str, to: &str) -> Result<Vec<ChainDay>, StoreError> {
        let rows = self
            .reader()?
            .query(
                "SELECT date, windows, zones, sketch, note FROM footfall_chain_days \
                 WHERE date >= $1 AND date <= $2 ORDER BY date",
                &[&from, &to],
            )
            .map_err(self.err("reading the chain's days"))?;
        rows.iter()
            .map(|r| {
                let distinct = match (r.get::<_, Option<&[u8]>>(3), r.get::<_, Option<String>>(4)) {
                    (Some(b), _) => Ok(postcard::from_bytes::<Sketch>(b)
                        .map_err(|e| self.corrupt("footfall_chain_days", e.to_string()))?),
                    (None, note) => Err(note.unwrap_or_default()),
                };
                Ok(ChainDay {
                    date: r.get(0),
                    windows: r.get::<_, i64>(1).max(0) as u64,
                    zones: r.get::<_, i64>(2) as u64,
                    distinct,
                })
            })
            .collect()
    }

    /// Replaces every kept report: a campaign no longer asked about (its
    /// CSV row gone) goes too.
    fn put_campaign_reports_now(&self, reports: &[CampaignReport]) -> Result<(), StoreError> {
        self.in_transaction("keeping campaign reports", |t| {
            let ids: Vec<&str> = reports.iter().map(|r| r.campaign_id.as_str()).collect();
            t.execute(
                "DELETE FROM footfall_campaign_reports WHERE campaign_id <> ALL($1)",
                &[&ids],
            )?;
            for r in reports {
                let json = serde_json::to_string(r).expect("reports serialize");
                t.execute(
                    "INSERT INTO footfall_campaign_reports (campaign_id, computed_at, report) \
                     VALUES ($1, now(), $2::text::jsonb) ON CONFLICT (campaign_id) DO UPDATE SET \
                     computed_at = excluded.computed_at, report = excluded.report",
                    &[&r.campaign_id, &no_nul(&json)],
                )?;
            }
            Ok(())
        })
    }

    /// Runs `f` in a transaction of its own (not the batch's open one),
    /// committed when it returns `Ok`.
    fn in_transaction<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut c = self.reader()?;
        let e = self.err(what);
        let mut t = c.transaction().map_err(&e)?;
        let out = f(&mut t).map_err(&e)?;
        t.commit().map_err(&e)?;
        Ok(out)
    }

    /// A cache, written by a read: its own transaction.
    fn put_chain_days_now(&self, days: &[ChainDay]) -> Result<(), StoreError> {
        self.in_transaction("keeping the chain's days", |t| {
            for d in days {
                let (sketch, note) = match &d.distinct {
                    Ok(k) => (
                        Some(postcard::to_stdvec(k).expect("sketches serialize")),
                        None,
                    ),
                    Err(why) => (None, Some(why.as_str())),
                };
                t.execute(
                    "INSERT INTO footfall_chain_days (date, windows, zones, sketch, note) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (date) DO UPDATE SET \
                     windows = excluded.windows, zones = excluded.zones, \
                     sketch = excluded.sketch, note = excluded.note",
                    &[
                        &d.date,
                        &(d.windows as i64),
                        &(d.zones as i64),
                        &sketch,
                        &note,
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Each window's sketch and the two facts of it that a distinct count
    /// asks, added up by hour in key order: no sums in SQL.
    fn hour_visitors_now(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        let rows = self.window_rows(
            "store_id, agent_id, window_start, visitor_sketch, visits IS NOT NULL, privacy_mode",
            &PgStore::hour_query(q),
            "reading sketches",
        )?;
        let mut out: Vec<Hour> = Vec::new();
        for r in &rows {
            let (store_id, agent_id): (&str, &str) = (r.get(0), r.get(1));
            let start = r.get::<_, i64>(2).div_euclid(3600) * 3600;
            let mode: PrivacyMode = r
                .get::<_, &str>(5)
                .parse()
                .map_err(|e: String| self.corrupt("footfall_windows", e))?;
            let h = match out.last_mut() {
                Some(h)
                    if h.hour_start == start
                        && h.agent_id == agent_id
                        && h.store_id == store_id =>
                {
                    h
                }
                _ => {
                    out.push(Hour {
                        store_id: store_id.to_string(),
                        agent_id: agent_id.to_string(),
                        hour_start: start,
                        counts: Counts::default(),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            let c = &mut h.counts;
            c.windows += 1;
            c.visit_windows += u64::from(r.get::<_, bool>(4));
            c.day_scoped_windows += u64::from(mode.sketches_day_scoped());
            if let Some(bytes) = r.get::<_, Option<&[u8]>>(3) {
                let sketch = postcard::from_bytes::<Sketch>(bytes)
                    .map_err(|e| self.corrupt("footfall_windows", e.to_string()))?;
                c.visitor_sketch.merge(&sketch);
            }
        }
        out.retain(|h| q.contains(h.hour_start));
        Ok(out)
    }

    fn sketches_now(&self, q: &Query) -> Result<Vec<SketchPiece>, StoreError> {
        let rows = self.window_rows(
            "store_id, agent_id, window_start, visitor_sketch",
            q,
            "reading sketches",
        )?;
        self.sketch_pieces(&rows)
    }

    /// Every range's sketches. A range of whole local days (a campaign's
    /// period) reads each day's sketch as kept in `footfall_day_sketches`,
    /// working out and keeping those missing or out of date (their day's
    /// window count changed) from the windows; other ranges read windows.
    /// A campaign's hundred stores over two weeks are then 1,400 kept
    /// sketches, not 134,000 windows scattered over the table.
    fn sketches_of_now(&self, ranges: &[StoreRange]) -> Result<Vec<SketchPiece>, StoreError> {
        let zones = self.zones.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let zone = |s: &str| zones.get(s).cloned().unwrap_or(TimeZone::UTC);
        let whole_days = |(s, a, b): &&StoreRange| {
            let z = zone(s);
            crate::store::time::local_midnight(*a, &z) == *a
                && crate::store::time::local_midnight(*b, &z) == *b
        };
        let (by_day, mut by_window): (Vec<&StoreRange>, Vec<&StoreRange>) =
            ranges.iter().partition(whole_days);
        let mut days = Vec::new();
        if !by_day.is_empty() {
            let stores: Vec<&str> = by_day.iter().map(|r| r.0.as_str()).collect();
            let from: Vec<i64> = by_day.iter().map(|r| r.1).collect();
            let to: Vec<i64> = by_day.iter().map(|r| r.2).collect();
            days = self
                .reader()?
                .query(
                    "SELECT d.store_id, d.agent_id, d.day_start, d.tz, d.windows, s.windows, s.sketch \
                     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS r(store_id, a, b) \
                     JOIN footfall_local_days d ON d.store_id = r.store_id \
                         AND d.day_start >= r.a AND d.day_start < r.b \
                     LEFT JOIN footfall_day_sketches s ON s.store_id = d.store_id \
                         AND s.agent_id = d.agent_id AND s.day_start = d.day_start",
                    &[&stores, &from, &to],
                )
                .map_err(self.err("reading day sketches"))?;
        }
        // A store whose days were cut in another zone is read from windows.
        let elsewhere: HashSet<String> = days
            .iter()
            .filter(|r| r.get::<_, &str>(3) != zone(r.get(0)).iana_name().unwrap_or("UTC"))
            .map(|r| r.get::<_, String>(0))
            .collect();
        by_window.extend(by_day.iter().filter(|r| elsewhere.contains(&r.0)));
        let mut out = self.window_sketches(&by_window)?;
        let mut stale: Vec<(String, String, i64, i64)> = Vec::new();
        for r in days
            .iter()
            .filter(|r| !elsewhere.contains(r.get::<_, &str>(0)))
        {
            let (store_id, agent_id, day_start, windows): (String, String, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(4));
            match (r.get::<_, Option<i64>>(5), r.get::<_, Option<&[u8]>>(6)) {
                (Some(n), Some(bytes)) if n == windows => out.push(SketchPiece {
                    store_id,
                    agent_id,
                    start: day_start,
                    sketch: postcard::from_bytes::<Sketch>(bytes)
                        .map_err(|e| self.corrupt("footfall_day_sketches", e.to_string()))?,
                }),
                _ => stale.push((store_id, agent_id, day_start, windows)),
            }
        }
        if !stale.is_empty() {
            let kept = self.work_out_day_sketches(&stale, &zone)?;
            out.extend(kept);
        }
        Ok(out)
    }

    /// Each local date's sketch of the whole chain from the stores' kept
    /// day sketches and the windows since each (`through`), keeping them
    /// again: the day in progress of a thousand stores merges the few
    /// windows since the last query, not its 100,000. `None` when some
    /// store's days were cut in another zone than its own now.
    fn date_sketches_now(
        &self,
        from: &str,
        to: &str,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Option<BTreeMap<String, Option<Sketch>>>, StoreError> {
        let kept = self.day_sketches_since(from, to, true)?;
        let late: HashSet<DayKey> = kept
            .iter()
            .filter(|d| d.sketch.is_none())
            .map(|d| d.key.clone())
            .collect();
        let mut days = kept;
        if !late.is_empty() {
            // A window came in before the kept sketch's latest (an agent's
            // outbox delivered late): those days from all their windows.
            days.retain(|d| d.sketch.is_some());
            days.extend(
                self.day_sketches_since(from, to, false)?
                    .into_iter()
                    .filter(|d| late.contains(&d.key)),
            );
        }
        let mut out: BTreeMap<String, Option<Sketch>> = BTreeMap::new();
        for d in &days {
            let (store_id, _, day_start) = &d.key;
            let zone = zones.get(store_id).cloned().unwrap_or(TimeZone::UTC);
            if d.tz != zone.iana_name().unwrap_or("UTC") {
                return Ok(None);
            }
            let Some(date) = crate::store::time::local_date(*day_start, &zone) else {
                continue;
            };
            let date = date.to_string();
            if date.as_str() < from || date.as_str() > to {
                continue;
            }
            // Its windows read again did not add up to its count either.
            let Some(sketch) = &d.sketch else {
                return Ok(None);
            };
            let merged = out.entry(date).or_insert_with(|| Some(Sketch::new_dense()));
            match merged {
                Some(m) if d.sketched => m.merge(sketch),
                m => *m = None,
            }
        }
        let changed = days
            .iter()
            .filter(|d| d.changed)
            .filter_map(|d| {
                let (s, a, day) = &d.key;
                Some((
                    s.as_str(),
                    a.as_str(),
                    *day,
                    d.windows,
                    d.through,
                    d.sketch.as_ref()?,
                ))
            })
            .collect();
        // A cache: a database that takes no writes still answers.
        if let Err(e) = self.keep_day_sketches(changed) {
            tracing::warn!(error = %e, "day sketches not kept; worked out again next time");
        }
        Ok(Some(out))
    }

    /// The local days whose midnight can fall on dates `from` to `to`, each
    /// with its sketch: the kept one merged with the windows since its
    /// latest (`kept`), or of all its windows. A kept sketch that a window
    /// before its latest has come in since is `None`. One statement, so
    /// the day's window count and the windows read are of one moment.
    fn day_sketches_since(
        &self,
        from: &str,
        to: &str,
        kept: bool,
    ) -> Result<Vec<DaySketch>, StoreError> {
        let q = super::day_wide(&crate::store::time::dates_query(from, to));
        let rows = self
            .reader()?
            .query(
                "SELECT d.store_id, d.agent_id, d.day_start, d.tz, d.windows, \
                     d.visit_windows = d.windows, s.windows, s.through, s.sketch, \
                     n.starts, n.sketches \
                 FROM footfall_local_days d \
                 LEFT JOIN footfall_day_sketches s ON $3 AND s.store_id = d.store_id \
                     AND s.agent_id = d.agent_id AND s.day_start = d.day_start \
                     AND s.through IS NOT NULL \
                 LEFT JOIN LATERAL ( \
                     SELECT array_agg(w.window_start) AS starts, \
                            array_agg(w.visitor_sketch) AS sketches \
                     FROM footfall_windows w \
                     WHERE w.store_id = d.store_id AND w.agent_id = d.agent_id \
                         AND w.window_start > coalesce(s.through, d.day_start - 1) \
                         AND w.window_start < d.day_start + 25 * 3600 \
                 ) n ON true \
                 WHERE d.day_start >= $1 AND d.day_start < $2",
                &[
                    &q.from_s.unwrap_or(i64::MIN),
                    &q.to_s.unwrap_or(i64::MAX),
                    &kept,
                ],
            )
            .map_err(self.err("reading day sketches"))?;
        let corrupt = |e: postcard::Error| self.corrupt("footfall_day_sketches", e.to_string());
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: DayKey = (r.get(0), r.get(1), r.get(2));
            let tz: String = r.get(3);
            let windows: i64 = r.get(4);
            let zone = TimeZone::get(&tz).unwrap_or(TimeZone::UTC);
            // The windows read that are of this day (the read reaches past
            // its end: 25 hours, the longest a day is).
            let starts: Vec<i64> = r.get::<_, Option<Vec<i64>>>(9).unwrap_or_default();
            let sketches: Vec<Option<&[u8]>> = r.get::<_, Option<_>>(10).unwrap_or_default();
            let mut sketch = match r.get::<_, Option<&[u8]>>(8) {
                Some(bytes) => postcard::from_bytes::<Sketch>(bytes).map_err(corrupt)?,
                None => Sketch::new(),
            };
            let kept_through: Option<i64> = r.get(7);
            let (mut count, mut through) = (r.get::<_, Option<i64>>(6).unwrap_or(0), kept_through);
            let mut new = 0;
            for (start, bytes) in starts.iter().zip(&sketches) {
                if crate::store::time::local_midnight(*start, &zone) != key.2 {
                    continue;
                }
                new += 1;
                through = Some(through.map_or(*start, |t| t.max(*start)));
                if let Some(bytes) = bytes {
                    sketch.merge(&postcard::from_bytes::<Sketch>(bytes).map_err(corrupt)?);
                }
            }
            count += new;
            out.push(DaySketch {
                key,
                tz,
                sketched: r.get(5),
                // Fewer than the day has: one came in before `through`.
                sketch: (count == windows).then_some(sketch),
                windows: count,
                through,
                changed: new > 0 || kept_through.is_none(),
            });
        }
        Ok(out)
    }

    /// The sketches of these local days from their windows, kept for the
    /// next report.
    fn work_out_day_sketches(
        &self,
        stale: &[(String, String, i64, i64)],
        zone: &dyn Fn(&str) -> TimeZone,
    ) -> Result<Vec<SketchPiece>, StoreError> {
        let day_ranges: Vec<StoreRange> = stale
            .iter()
            .map(|(s, _, day, _)| {
                (
                    s.clone(),
                    *day,
                    crate::store::time::back(*day, -1, &zone(s)),
                )
            })
            .collect();
        let refs: Vec<&StoreRange> = day_ranges.iter().collect();
        let mut merged: BTreeMap<(String, String, i64), Sketch> = BTreeMap::new();
        for p in self.window_sketches(&refs)? {
            let day = crate::store::time::local_midnight(p.start, &zone(&p.store_id));
            merged
                .entry((p.store_id, p.agent_id, day))
                .or_default()
                .merge(&p.sketch);
        }
        let out: Vec<SketchPiece> = stale
            .iter()
            .map(|(store_id, agent_id, day_start, _)| SketchPiece {
                store_id: store_id.clone(),
                agent_id: agent_id.clone(),
                start: *day_start,
                sketch: merged
                    .remove(&(store_id.clone(), agent_id.clone(), *day_start))
                    .unwrap_or_default(),
            })
            .collect();
        // A cache: a database that takes no writes (read-only, full) still
        // answers, working the sketches out again next time.
        let kept = stale
            .iter()
            .zip(&out)
            .map(|((s, a, day, windows), p)| {
                (s.as_str(), a.as_str(), *day, *windows, None, &p.sketch)
            })
            .collect();
        if let Err(e) = self.keep_day_sketches(kept) {
            tracing::warn!(error = %e, "day sketches not kept; worked out again next time");
        }
        Ok(out)
    }

    /// A cache, written by a read: its own transaction, one statement,
    /// in key order (two gateways keeping the same days do not deadlock).
    /// `through`: the latest window merged, `None` where not known.
    fn keep_day_sketches(&self, mut days: Vec<KeptDay<'_>>) -> Result<(), StoreError> {
        if days.is_empty() {
            return Ok(());
        }
        days.sort_by_key(|d| (d.0, d.1, d.2));
        let stores: Vec<&str> = days.iter().map(|d| d.0).collect();
        let agents: Vec<&str> = days.iter().map(|d| d.1).collect();
        let starts: Vec<i64> = days.iter().map(|d| d.2).collect();
        let windows: Vec<i64> = days.iter().map(|d| d.3).collect();
        let through: Vec<Option<i64>> = days.iter().map(|d| d.4).collect();
        let sketches: Vec<Vec<u8>> = days
            .iter()
            .map(|d| postcard::to_stdvec(d.5).expect("sketches serialize"))
            .collect();
        self.in_transaction("keeping day sketches", |t| {
            t.execute(
                "INSERT INTO footfall_day_sketches \
                     (store_id, agent_id, day_start, windows, through, sketch) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
                     $5::int8[], $6::bytea[]) \
                 ON CONFLICT (store_id, agent_id, day_start) \
                 DO UPDATE SET windows = excluded.windows, through = excluded.through, \
                     sketch = excluded.sketch",
                &[&stores, &agents, &starts, &windows, &through, &sketches],
            )?;
            Ok(())
        })
    }

    /// The windows' sketches of these ranges, in one statement, as pieces
    /// of a UTC hour each.
    fn window_sketches(&self, ranges: &[&StoreRange]) -> Result<Vec<SketchPiece>, StoreError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let stores: Vec<&str> = ranges.iter().map(|r| r.0.as_str()).collect();
        let from: Vec<i64> = ranges.iter().map(|r| r.1).collect();
        let to: Vec<i64> = ranges.iter().map(|r| r.2).collect();
        let rows = self
            .reader()?
            .query(
                "SELECT w.store_id, w.agent_id, w.window_start, w.visitor_sketch \
                 FROM unnest($1::text[], $2::int8[], $3::int8[]) AS r(store_id, a, b) \
                 JOIN footfall_windows w ON w.store_id = r.store_id \
                     AND w.window_start >= r.a AND w.window_start < r.b \
                 ORDER BY w.store_id, w.agent_id, w.window_start",
                &[&stores, &from, &to],
            )
            .map_err(self.err("reading sketches"))?;
        self.sketch_pieces(&rows)
    }

    /// Rows of (store, agent, window_start, sketch), in that order, as
    /// pieces of a UTC hour each.
    fn sketch_pieces(&self, rows: &[Row]) -> Result<Vec<SketchPiece>, StoreError> {
        let mut out: Vec<SketchPiece> = Vec::new();
        for r in rows {
            let Some(bytes) = r.get::<_, Option<&[u8]>>(3) else {
                continue;
            };
            let sketch = postcard::from_bytes::<Sketch>(bytes)
                .map_err(|e| self.corrupt("footfall_windows", e.to_string()))?;
            let (store_id, agent_id): (&str, &str) = (r.get(0), r.get(1));
            let start = r.get::<_, i64>(2).div_euclid(3600) * 3600;
            match out.last_mut() {
                Some(p) if p.start == start && p.agent_id == agent_id && p.store_id == store_id => {
                    p.sketch.merge(&sketch)
                }
                _ => out.push(SketchPiece {
                    store_id: store_id.to_string(),
                    agent_id: agent_id.to_string(),
                    start,
                    sketch,
                }),
            }
        }
        Ok(out)
    }

    /// `q` widened to whole UTC hours (its hours are cut after).
    fn hour_query(q: &Query) -> Query {
        Query {
            store_id: q.store_id.clone(),
            from_s: q.from_s.map(|f| f.div_euclid(3600) * 3600),
            to_s: q.to_s.map(|t| (t + 3599).div_euclid(3600) * 3600),
        }
    }

    /// `columns` of the windows in `q`, in key order.
    fn window_rows(&self, columns: &str, q: &Query, what: &str) -> Result<Vec<Row>, StoreError> {
        self.window_rows_on(&mut *self.reader()?, columns, q, what)
    }

    /// `window_rows` on connection `c`: ingest's, to see its own batch.
    fn window_rows_on(
        &self,
        c: &mut Client,
        columns: &str,
        q: &Query,
        what: &str,
    ) -> Result<Vec<Row>, StoreError> {
        let (filter, params) = PgStore::filter(q, "window_start");
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        c.query(
            &format!(
                "SELECT {columns} FROM footfall_windows{filter} \
                     ORDER BY store_id, agent_id, window_start"
            ),
            &refs,
        )
        .map_err(self.err(what))
    }

    fn select_windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError> {
        let rows = self.window_rows(WINDOW_COLUMNS, q, "reading windows")?;
        self.windows_of(&rows)
    }

    fn windows_of(&self, rows: &[Row]) -> Result<Vec<WindowReport>, StoreError> {
        rows.iter()
            .map(|r| PgStore::window_of(r).map_err(|e| self.corrupt("footfall_windows", e)))
            .collect()
    }
}

/// The engine's work, on the calling thread (see `blocking`).
impl PgStore {
    fn put_now(&self, report: &Report) -> Result<Put, StoreError> {
        let inserted = match report {
            Report::Window(w) => !self.insert_windows_and_days(&[w])?.is_empty(),
            Report::Day(d) => self.write("storing a day", |c| PgStore::insert_day(c, d))? == 1,
        };
        if inserted {
            Ok(Put::Inserted)
        } else {
            self.compare_stored(report)
        }
    }

    /// Stores the windows not stored yet and adds those to their local
    /// days, in the open transaction; the keys it inserted.
    fn insert_windows_and_days(
        &self,
        windows: &[&WindowReport],
    ) -> Result<HashSet<(String, String, i64)>, StoreError> {
        self.write("storing windows", |c| {
            let inserted = PgStore::insert_windows(c, windows)?;
            // The first of a key in the batch is the one inserted; a resend
            // in the same batch is not added to its day again.
            let mut first = inserted.clone();
            let new: Vec<&WindowReport> = windows
                .iter()
                .filter(|w| first.remove(&(w.store_id.clone(), w.agent_id.clone(), w.window_start)))
                .copied()
                .collect();
            PgStore::upsert_local_days(c, &self.local_day_deltas(&new))?;
            Ok(inserted)
        })
    }

    /// A report whose key is stored already: the same counts
    /// (`Duplicate`) or other ones (`Conflict`). Read on ingest's
    /// connection: the stored one may be of the open batch.
    fn compare_stored(&self, report: &Report) -> Result<Put, StoreError> {
        let stored = match report {
            Report::Window(w) => {
                let q = Query {
                    store_id: Some(w.store_id.clone()),
                    from_s: Some(w.window_start),
                    to_s: Some(w.window_start + 1),
                };
                let rows = self.window_rows_on(
                    &mut *self.client()?,
                    WINDOW_COLUMNS,
                    &q,
                    "reading windows",
                )?;
                self.windows_of(&rows)?
                    .into_iter()
                    .find(|x| x.agent_id == w.agent_id)
                    .map(Report::Window)
            }
            Report::Day(d) => {
                let rows = self
                    .client()?
                    .query(
                        &format!(
                            "SELECT {DAY_COLUMNS} FROM footfall_days \
                             WHERE store_id = $1 AND agent_id = $2 AND date = $3"
                        ),
                        &[&d.store_id, &d.agent_id, &d.date],
                    )
                    .map_err(self.err("reading a day"))?;
                rows.first()
                    .map(PgStore::day_of)
                    .transpose()
                    .map_err(|e| self.corrupt("footfall_days", e))?
                    .map(Report::Day)
            }
        };
        Ok(match stored {
            Some(stored) if same_counts(report, &stored) => Put::Duplicate,
            _ => Put::Conflict,
        })
    }

    /// Windows go in statements of up to 5000 rows (the round trips were
    /// the cost of ingest); days, rarer, one by one. A window not inserted
    /// is compared with the stored one, not inserted again.
    fn put_many_now(&self, reports: &[Report]) -> Result<Vec<Put>, StoreError> {
        let mut out: Vec<Option<Put>> = vec![None; reports.len()];
        let windows: Vec<(usize, &WindowReport)> = reports
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Report::Window(w) => Some((i, w)),
                Report::Day(_) => None,
            })
            .collect();
        for part in windows.chunks(5000) {
            let ws: Vec<&WindowReport> = part.iter().map(|(_, w)| *w).collect();
            let mut inserted = self.insert_windows_and_days(&ws)?;
            for (i, w) in part {
                // The first of a key in the batch was inserted; a second
                // (a resend in the same batch) compares like any other.
                let key = (w.store_id.clone(), w.agent_id.clone(), w.window_start);
                out[*i] = Some(if inserted.remove(&key) {
                    Put::Inserted
                } else {
                    self.compare_stored(&reports[*i])?
                });
            }
        }
        for (i, r) in reports.iter().enumerate() {
            if out[i].is_none() {
                out[i] = Some(self.put_now(r)?);
            }
        }
        Ok(out
            .into_iter()
            .map(|p| p.expect("every report has a result"))
            .collect())
    }

    fn dead_letter_now(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.write("storing a dead letter", |c| {
            c.execute(
                "INSERT INTO footfall_dead_letters (received_unix_s, source, reason, payload) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &letter.received_unix_s,
                    &no_nul(&letter.source),
                    &no_nul(&letter.reason),
                    &no_nul(&letter.payload),
                ],
            )
        })?;
        Ok(())
    }

    fn set_status_now(&self, info: &AgentInfo) -> Result<(), StoreError> {
        let text = serde_json::to_string(info).expect("statuses serialize");
        self.write("storing a status", |c| {
            c.execute(
                "INSERT INTO footfall_agents (store_id, agent_id, info) VALUES ($1, $2, $3) \
                 ON CONFLICT (store_id, agent_id) DO UPDATE SET info = EXCLUDED.info",
                &[&info.store_id, &info.agent_id, &text],
            )
        })?;
        let zones = crate::store::time::timezones_of(std::slice::from_ref(info));
        if let Some(tz) = zones.get(&info.store_id) {
            self.zones
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(info.store_id.clone(), tz.clone());
        }
        Ok(())
    }

    fn commit_now(&self) -> Result<(), StoreError> {
        self.finish()
    }

    fn windows_now(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError> {
        self.select_windows(q)
    }

    /// The hours' sums from the database, their sketches merged here.
    fn hours_now(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        Ok(super::with_sketches(
            self.hour_sums_now(q)?,
            self.sketches_now(q)?,
        ))
    }

    fn days_now(&self, q: &Query) -> Result<Vec<DayReport>, StoreError> {
        let rows = match &q.store_id {
            Some(s) => self.reader()?.query(
                &format!(
                    "SELECT {DAY_COLUMNS} FROM footfall_days WHERE store_id = $1 \
                     ORDER BY store_id, agent_id, date"
                ),
                &[s],
            ),
            None => self.reader()?.query(
                &format!(
                    "SELECT {DAY_COLUMNS} FROM footfall_days ORDER BY store_id, agent_id, date"
                ),
                &[],
            ),
        }
        .map_err(self.err("reading days"))?;
        rows.iter()
            .map(|r| PgStore::day_of(r).map_err(|e| self.corrupt("footfall_days", e)))
            .collect()
    }

    fn agents_now(&self) -> Result<Vec<AgentInfo>, StoreError> {
        let rows = self
            .reader()?
            .query(
                "SELECT info FROM footfall_agents ORDER BY store_id, agent_id",
                &[],
            )
            .map_err(self.err("reading agents"))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get::<_, &str>(0))
                    .map_err(|e| self.corrupt("footfall_agents", e.to_string()))
            })
            .collect()
    }

    fn dead_letters_now(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = self
            .reader()?
            .query(
                "SELECT received_unix_s, source, reason, payload FROM footfall_dead_letters ORDER BY id",
                &[],
            )
            .map_err(self.err("reading dead letters"))?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                received_unix_s: r.get(0),
                source: r.get(1),
                reason: r.get(2),
                payload: r.get(3),
            })
            .collect())
    }

    fn put_campaigns_now(&self, campaigns: &[Campaign]) -> Result<(), StoreError> {
        self.in_transaction("storing campaigns", |t| {
            for k in campaigns {
                let text = serde_json::to_string(k).expect("campaigns serialize");
                t.execute(
                    "INSERT INTO footfall_campaigns (campaign_id, campaign) VALUES ($1, $2) \
                     ON CONFLICT (campaign_id) DO UPDATE SET campaign = EXCLUDED.campaign",
                    &[&k.campaign_id, &text],
                )?;
            }
            Ok(())
        })
    }

    fn reporting_agents_now(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = self
            .reader()?
            .query(
                // Each (store, agent) found by one step down the primary
                // key from the last, and its newest window by one more: a
                // few thousand index reads, where GROUP BY read every
                // window (35 M in a chain's year).
                "WITH RECURSIVE k AS ( \
                     (SELECT store_id, agent_id FROM footfall_windows \
                      ORDER BY store_id, agent_id LIMIT 1) \
                     UNION ALL \
                     SELECT n.store_id, n.agent_id FROM k CROSS JOIN LATERAL ( \
                         SELECT w.store_id, w.agent_id FROM footfall_windows w \
                         WHERE (w.store_id, w.agent_id) > (k.store_id, k.agent_id) \
                         ORDER BY w.store_id, w.agent_id LIMIT 1) n) \
                 SELECT k.store_id, k.agent_id, \
                     (SELECT w.window_end FROM footfall_windows w \
                      WHERE w.store_id = k.store_id AND w.agent_id = k.agent_id \
                      ORDER BY w.window_start DESC LIMIT 1) \
                 FROM k ORDER BY k.store_id, k.agent_id",
                &[],
            )
            .map_err(self.err("reading agents"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn campaigns_now(&self) -> Result<Vec<Campaign>, StoreError> {
        let rows = self
            .reader()?
            .query(
                "SELECT campaign FROM footfall_campaigns ORDER BY campaign_id",
                &[],
            )
            .map_err(self.err("reading campaigns"))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get::<_, &str>(0))
                    .map_err(|e| self.corrupt("footfall_campaigns", e.to_string()))
            })
            .collect()
    }

    fn purge_now(&self, p: &Purge) -> Result<Purged, StoreError> {
        let whole_store = p.store_id.is_some()
            && p.windows_before_s.is_none()
            && p.days_before.is_none()
            && p.dead_letters_before_s.is_none();
        let mut c = self.reader()?;
        let e = self.err("purging");
        let mut t = c.transaction().map_err(&e)?;
        let store = p.store_id.as_deref();
        let mut purged = Purged::default();
        // Each kind: deleted when before its cut, or with its whole store.
        if whole_store || p.windows_before_s.is_some() {
            let cut = p.windows_before_s.unwrap_or(i64::MAX);
            let hour_cut = p
                .windows_before_s
                .map_or(i64::MAX, |c| c.div_euclid(3600) * 3600);
            purged.hours = t
                .query_one(
                    "SELECT count(DISTINCT (store_id, agent_id, div(window_start, 3600))) \
                     FROM footfall_windows WHERE ($1::text IS NULL OR store_id = $1) \
                     AND window_start < $2",
                    &[&store, &hour_cut],
                )
                .map_err(&e)?
                .get::<_, i64>(0) as u64;
            purged.windows = t
                .execute(
                    "DELETE FROM footfall_windows WHERE ($1::text IS NULL OR store_id = $1) \
                     AND window_start < $2",
                    &[&store, &cut],
                )
                .map_err(&e)?;
            // Sketches kept of the days the cut reaches into go with them
            // (they hold ids of the windows purged).
            t.execute(
                "DELETE FROM footfall_day_sketches WHERE ($1::text IS NULL OR store_id = $1) \
                 AND day_start < $2",
                &[&store, &cut],
            )
            .map_err(&e)?;
            // The local days before the cut go; the one the cut falls in is
            // summed again from the windows it keeps.
            t.execute(
                "DELETE FROM footfall_local_days WHERE ($1::text IS NULL OR store_id = $1) \
                 AND day_start < $2",
                &[&store, &cut],
            )
            .map_err(&e)?;
            if !whole_store {
                let rows = t
                    .query(
                        &format!(
                            "SELECT {WINDOW_COLUMNS} FROM footfall_windows \
                             WHERE ($1::text IS NULL OR store_id = $1) \
                             AND window_start >= $2 AND window_start < $3"
                        ),
                        &[&store, &cut, &cut.saturating_add(2 * 86_400)],
                    )
                    .map_err(&e)?;
                let kept = rows
                    .iter()
                    .map(PgStore::window_of)
                    .collect::<Result<Vec<WindowReport>, String>>()
                    .map_err(|w| self.corrupt("footfall_windows", w))?;
                let mut deltas = self.local_day_deltas(&kept.iter().collect::<Vec<_>>());
                deltas.retain(|(_, _, day), _| *day < cut);
                PgStore::upsert_local_days(&mut t, &deltas).map_err(&e)?;
            }
        }
        if let Some(cut) = p.chain_cut() {
            t.execute("DELETE FROM footfall_chain_days WHERE date < $1", &[&cut])
                .map_err(&e)?;
        }
        if whole_store || p.days_before.is_some() {
            let cut = p.days_before.clone().unwrap_or_else(|| "9999".into());
            purged.day_reports = t
                .execute(
                    "DELETE FROM footfall_days WHERE ($1::text IS NULL OR store_id = $1) \
                     AND date < $2",
                    &[&store, &cut],
                )
                .map_err(&e)?;
        }
        if whole_store || p.dead_letters_before_s.is_some() {
            let cut = p.dead_letters_before_s.unwrap_or(i64::MAX);
            // MQTT topics name the store third: footfall/v1/{store}/...
            purged.dead_letters = t
                .execute(
                    "DELETE FROM footfall_dead_letters WHERE ($1::text IS NULL \
                     OR split_part(source, '/', 3) = $1) AND received_unix_s < $2",
                    &[&store, &cut],
                )
                .map_err(&e)?;
        }
        if whole_store {
            purged.agent_statuses = t
                .execute("DELETE FROM footfall_agents WHERE store_id = $1", &[&store])
                .map_err(&e)?;
        }
        t.commit().map_err(&e)?;
        Ok(purged)
    }
}

/// The driver blocks on its own runtime, which tokio refuses inside an
/// async task; the MQTT loop calls the store from one. So every call
/// leaves the async context first (`block_in_place`, on `serve`'s
/// multi-thread runtime), and outside any runtime runs as it is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl ReportStore for PgStore {
    fn put(&self, report: &Report) -> Result<Put, StoreError> {
        blocking(|| self.put_now(report))
    }

    fn put_many(&self, reports: &[Report]) -> Result<Vec<Put>, StoreError> {
        blocking(|| self.put_many_now(reports))
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        blocking(|| self.dead_letter_now(letter))
    }

    fn set_status(&self, info: &AgentInfo) -> Result<(), StoreError> {
        blocking(|| self.set_status_now(info))
    }

    fn commit(&self) -> Result<(), StoreError> {
        blocking(|| self.commit_now())
    }

    fn windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError> {
        blocking(|| self.windows_now(q))
    }

    fn hours(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        blocking(|| self.hours_now(q))
    }

    fn hour_visitors(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        blocking(|| self.hour_visitors_now(q))
    }

    fn hour_sums(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        blocking(|| self.hour_sums_now(q))
    }

    fn day_sums(
        &self,
        q: &Query,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Vec<Hour>, StoreError> {
        blocking(|| self.day_sums_now(q, zones))
    }

    fn sketches(&self, q: &Query) -> Result<Vec<SketchPiece>, StoreError> {
        blocking(|| self.sketches_now(q))
    }

    fn sketches_of(&self, ranges: &[StoreRange]) -> Result<Vec<SketchPiece>, StoreError> {
        blocking(|| self.sketches_of_now(ranges))
    }

    fn day_totals(&self, from: &str, to: &str) -> Result<Vec<(String, DayCounts)>, StoreError> {
        blocking(|| self.day_totals_now(from, to))
    }

    fn date_windows(
        &self,
        from: &str,
        to: &str,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        blocking(|| self.date_windows_now(from, to, zones))
    }

    fn chain_days(&self, from: &str, to: &str) -> Result<Vec<ChainDay>, StoreError> {
        blocking(|| self.chain_days_now(from, to))
    }

    fn date_sketches(
        &self,
        from: &str,
        to: &str,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Option<BTreeMap<String, Option<Sketch>>>, StoreError> {
        blocking(|| self.date_sketches_now(from, to, zones))
    }

    fn put_chain_days(&self, days: &[ChainDay]) -> Result<(), StoreError> {
        blocking(|| self.put_chain_days_now(days))
    }

    fn keeps_campaign_reports(&self) -> bool {
        true
    }

    /// Its own connections: the same database, schema already current.
    fn background(&self) -> Result<Option<Box<dyn ReportStore>>, StoreError> {
        let store = PgStore::unconnected(&self.url);
        blocking(|| store.load_zones())?;
        Ok(Some(Box::new(store)))
    }

    fn put_campaign_reports(&self, reports: &[CampaignReport]) -> Result<(), StoreError> {
        blocking(|| self.put_campaign_reports_now(reports))
    }

    fn days(&self, q: &Query) -> Result<Vec<DayReport>, StoreError> {
        blocking(|| self.days_now(q))
    }

    fn agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        blocking(|| self.agents_now())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        blocking(|| self.dead_letters_now())
    }

    fn put_campaigns(&self, campaigns: &[Campaign]) -> Result<(), StoreError> {
        blocking(|| self.put_campaigns_now(campaigns))
    }

    fn reporting_agents(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        blocking(|| self.reporting_agents_now())
    }

    fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        blocking(|| self.campaigns_now())
    }

    fn purge(&self, p: &Purge) -> Result<Purged, StoreError> {
        blocking(|| self.purge_now(p))
    }
}
