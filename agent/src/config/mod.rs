//! The agent's TOML config: `RawConfig` as written, `validate()` into
//! `Config` with every path resolved, the time zone loaded and durations in
//! their units. Defaults live here and only here; they are SPEC's.
//!
//! Every problem is reported, each as `file:line: key = value: what is
//! wrong`, so `check-config` can list them all at once.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod counting;
mod privacy;

use counting::{counting_canonical, short_hash};
pub use counting::{params_hash, Counting};
pub use privacy::{Privacy, RawPrivacy, Rotation, MAX_ROTATE_S};

use crate::people::Calibration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub store_id: Option<String>,
    pub agent_id: Option<String>,
    /// IANA time zone of the store; local days (SPEC §3) are cut in it. Default "UTC".
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// Monitor-mode interface for `run` (e.g. "wlan0mon").
    pub interface: Option<String>,
    /// A capture file for `run` to read instead of an interface.
    pub file: Option<PathBuf>,
    /// Bytes kept of each frame. Default 256: radiotap and the MAC header fit.
    pub snaplen: Option<u32>,
    /// Channel plan to hop over (e.g. [1, 6, 11]); empty: stay where
    /// `monitor-mode` put the card. Each channel is heard 1/n of the time,
    /// so a phone probing on one channel is detected less often; phones
    /// scan every channel, so one channel usually counts best.
    pub channels: Option<Vec<u32>>,
    /// Time on each channel of the plan. Default 250.
    pub channel_dwell_ms: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// The sled directory holding counting state and the outbox.
    pub path: Option<PathBuf>,
    /// sled page cache. Default 8 MiB (sled's own default is 1 GiB).
    pub cache_bytes: Option<u64>,
}

/// `[memory]`: budgets of what the agent holds per device (issue 20).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    /// Devices held in memory at most; beyond, the coldest are spilled to
    /// a scratch file beside the state and read back when needed (counts
    /// stay exact; only speed pays). Default `DEFAULT_DEVICE_BUDGET`.
    pub devices: Option<u64>,
    /// Devices a window (or an ephemeral key epoch) observes for the
    /// people estimate at most; beyond, it observes half the phone models
    /// (then a quarter, ...) and scales up. Default
    /// `DEFAULT_PEOPLE_BUDGET`.
    pub people_observations: Option<u64>,
}

/// `[people]`: SPEC §8 estimates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeople {
    /// Estimate people (default true); false makes every §8 field `null`.
    pub estimate: Option<bool>,
    /// A calibration written by `footfall-agent calibrate`; default: the
    /// one built in.
    pub calibration: Option<PathBuf>,
}

/// `[mqtt]`: delivery to the gateway (issue #4 uses it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keepalive_s: Option<u32>,
    pub max_outbox_bytes: Option<u64>,
    pub live_interval_s: Option<u32>,
    /// Seconds after which reports the gateway has not acked are sent again.
    pub resend_s: Option<u32>,
    /// Seconds between retained `status` messages.
    pub status_interval_s: Option<u32>,
}

/// `[mqtt]` resolved, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mqtt {
    pub settings: footfall_report::mqtt::Settings,
    /// A full outbox is reported (metric, log, status), never emptied by
    /// dropping. Default 64 MiB.
    pub max_outbox_bytes: u64,
    /// Seconds between `live` messages. Default 60.
    pub live_interval_s: u32,
    /// Default 60.
    pub resend_s: u32,
    /// Default 30.
    pub status_interval_s: u32,
}

/// `[metrics]`: Prometheus text on a loopback port, for `run`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// e.g. "127.0.0.1:9108"; no metrics endpoint when absent.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub capture: RawCapture,
    #[serde(default)]
    pub counting: Counting,
    #[serde(default)]
    pub privacy: RawPrivacy,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub mqtt: RawMqtt,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub people: RawPeople,
    #[serde(default)]
    pub memory: RawMemory,
}

/// sled fills its cache with history buckets under `loyalty`: at 1 M
/// devices a day, 16 MiB took peak RSS to 51 MiB and 8 MiB to 47 MiB, for
/// 5-12 % more replay time (issue 20: ≤ 48 MiB on a store box).
pub const DEFAULT_CACHE_BYTES: u64 = 8 << 20;
/// About 125 bytes each (`privacy::IdTable`: a device beside its id,
/// and its slot): some 12 MiB of a store box's memory, more than a busy store has at once (a mall day peaks near
/// 10,000); a crowd goes beyond, and spills.
pub const DEFAULT_DEVICE_BUDGET: u64 = 100_000;
/// About 55 bytes each (`privacy::IdTable`), two or three windows pending:
/// some 8-12 MiB at most. A store's window sees a few thousand
/// devices; a crowd of 100,000 phones rotating MACs sees several hundred
/// thousand.
pub const DEFAULT_PEOPLE_BUDGET: u64 = 65_536;
pub const DEFAULT_SNAPLEN: u32 = 256;

/// A validated config: what the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store_id: String,
    pub agent_id: String,
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    pub counting: Counting,
    pub interface: Option<String>,
    pub capture_file: Option<PathBuf>,
    pub channels: Vec<u32>,
    pub channel_dwell_ms: u32,
    pub snaplen: u32,
    /// Issue 18: what the agent may link, and for how long.
    pub privacy: Privacy,
    pub key_file: PathBuf,
    pub opt_out_file: Option<PathBuf>,
    pub storage_path: PathBuf,
    pub cache_bytes: u64,
    /// `[memory] devices`.
    pub device_budget: usize,
    /// `[memory] people_observations`.
    pub people_budget: usize,
    pub mqtt: Option<Mqtt>,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// SPEC §8: how people are estimated; `None`: they are not.
    pub people: Option<Calibration>,
}

/// Every problem found in a config file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            problems: vec![format!("{}: {e}", path.display())],
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path` (used in messages and
    /// to resolve relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start)).unwrap_or(1);
            ConfigErrors {
                problems: vec![format!("{name}:{line}: {}", e.message().trim())],
            }
        })?;
        raw.validate(path, text)
    }
}

impl RawConfig {
    pub fn validate(self, path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let mut problems = Vec::new();
        let mut at = |table: &str, key: &str, msg: String| {
            let line = line_of_key(text, table, key);
            problems.push(match line {
                Some(l) => format!("{name}:{l}: {msg}"),
                None => format!("{name}: [{table}] {msg}"),
            });
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let mut id = |key: &str, v: &Option<String>| -> String {
            match v {
                None => {
                    at(
                        "store",
                        key,
                        format!("{key} is missing: every report names its store and agent"),
                    );
                    String::new()
                }
                Some(s) => {
                    if let Some(p) = footfall_report::topic::id_problem(s) {
                        at("store", key, format!("{key} = {s:?}: {p}"));
                    }
                    s.clone()
                }
            }
        };
        let store_id = id("store_id", &self.store.store_id);
        let agent_id = id("agent_id", &self.store.agent_id);
        let timezone_name = self.store.timezone.clone().unwrap_or_else(|| "UTC".into());
        let timezone = match jiff::tz::TimeZone::get(&timezone_name) {
            Ok(tz) => tz,
            Err(_) => {
                at(
                    "store",
                    "timezone",
                    format!("timezone = {timezone_name:?}: not an IANA time zone (e.g. \"Europe/Prague\", \"Asia/Shanghai\")"),
                );
                jiff::tz::TimeZone::UTC
            }
        };

        let mut counting_problems = Vec::new();
        self.counting.problems(&mut counting_problems);
        for (key, value, want) in counting_problems {
            at("counting", key, format!("{key} = {value}: {want}"));
        }

        let snaplen = self.capture.snaplen.unwrap_or(DEFAULT_SNAPLEN);
        if !(64..=65_535).contains(&snaplen) {
            at(
                "capture",
                "snaplen",
                format!("snaplen = {snaplen}: must be 64..65535"),
            );
        }
        let channels = self.capture.channels.clone().unwrap_or_default();
        if let Some(bad) = channels.iter().find(|&&c| !(1..=233).contains(&c)) {
            at(
                "capture",
                "channels",
                format!("channels: {bad} is not a Wi-Fi channel (1..233)"),
            );
        }
        let channel_dwell_ms = self.capture.channel_dwell_ms.unwrap_or(250);
        if !(50..=60_000).contains(&channel_dwell_ms) {
            at(
                "capture",
                "channel_dwell_ms",
                format!("channel_dwell_ms = {channel_dwell_ms}: must be 50..60000"),
            );
        }
        if self.capture.interface.is_some() && self.capture.file.is_some() {
            at(
                "capture",
                "file",
                "set either interface or file, not both".into(),
            );
        }

        let storage_path = match &self.storage.path {
            Some(p) => resolve(p),
            None => {
                at(
                    "storage",
                    "path",
                    "path is missing: the agent keeps its state there".into(),
                );
                PathBuf::new()
            }
        };
        let cache_bytes = self.storage.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
        if !(1 << 20..=1 << 32).contains(&cache_bytes) {
            at(
                "storage",
                "cache_bytes",
                format!("cache_bytes = {cache_bytes}: must be 1 MiB..4 GiB"),
            );
        }
        let device_budget = self.memory.devices.unwrap_or(DEFAULT_DEVICE_BUDGET);
        if !(1000..=1 << 32).contains(&device_budget) {
            at(
                "memory",
                "devices",
                format!("devices = {device_budget}: must be 1000..4294967296"),
            );
        }
        let people_budget = self
            .memory
            .people_observations
            .unwrap_or(DEFAULT_PEOPLE_BUDGET);
        if !(1000..=1 << 32).contains(&people_budget) {
            at(
                "memory",
                "people_observations",
                format!("people_observations = {people_budget}: must be 1000..4294967296"),
            );
        }
        let key_file = match &self.privacy.key_file {
            Some(p) => resolve(p),
            None => storage_path.with_file_name("footfall.key"),
        };
        let opt_out_file = self.privacy.opt_out_file.as_deref().map(resolve);
        let privacy = match Privacy::resolve(&self.privacy, self.counting.window_s) {
            Ok(p) => p,
            Err(list) => {
                for (key, msg) in list {
                    at("privacy", key, msg);
                }
                Privacy {
                    mode: footfall_report::PrivacyMode::Ephemeral,
                    rotation: Rotation::Never,
                }
            }
        };
        let m = &self.mqtt;
        if let Some(url) = &m.url {
            if footfall_report::mqtt::parse_url(url).is_err() {
                at(
                    "mqtt",
                    "url",
                    format!("url = {url:?}: expected mqtt://host:port or mqtts://host:port"),
                );
            }
        }
        if m.cert_file.is_some() != m.key_file.is_some() {
            at(
                "mqtt",
                "cert_file",
                "cert_file and key_file go together: set both or neither".into(),
            );
        }
        if m.url.is_none() && (m.username.is_some() || m.ca_file.is_some() || m.cert_file.is_some())
        {
            at(
                "mqtt",
                "url",
                "url is missing: the other [mqtt] keys need a broker".into(),
            );
        }
        let mqtt = m.url.as_ref().map(|url| Mqtt {
            settings: footfall_report::mqtt::Settings {
                url: url.clone(),
                client_id: m
                    .client_id
                    .clone()
                    .unwrap_or_else(|| format!("footfall-{store_id}-{agent_id}")),
                username: m.username.clone(),
                password_file: m.password_file.as_deref().map(resolve),
                ca_file: m.ca_file.as_deref().map(resolve),
                cert_file: m.cert_file.as_deref().map(resolve),
                key_file: m.key_file.as_deref().map(resolve),
                keepalive_s: u64::from(m.keepalive_s.unwrap_or(30)),
            },
            max_outbox_bytes: m.max_outbox_bytes.unwrap_or(64 << 20),
            live_interval_s: m.live_interval_s.unwrap_or(60).max(1),
            resend_s: m.resend_s.unwrap_or(60).max(1),
            status_interval_s: m.status_interval_s.unwrap_or(30).max(1),
        });

        let metrics_listen = match &self.metrics.listen {
            None => None,
            Some(l) => match l.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    at(
                        "metrics",
                        "listen",
                        format!("listen = {l:?}: expected host:port, e.g. \"127.0.0.1:9108\""),
                    );
                    None
                }
            },
        };

        let people = match (
            self.people.estimate.unwrap_or(true),
            &self.people.calibration,
        ) {
            (false, _) => None,
            (true, None) => Some(Calibration::builtin_for(privacy.mode)),
            (true, Some(p)) => match Calibration::load(&resolve(p)) {
                Ok(c) => Some(c),
                Err(e) => {
                    at("people", "calibration", e.to_string());
                    None
                }
            },
        };

        if !problems.is_empty() {
            return Err(ConfigErrors { problems });
        }
        Ok(Config {
            path: path.to_path_buf(),
            store_id,
            agent_id,
            timezone_name,
            timezone,
            counting: self.counting,
            interface: self.capture.interface,
            capture_file: self.capture.file.as_deref().map(resolve),
            channels,
            channel_dwell_ms,
            snaplen,
            privacy,
            key_file,
            opt_out_file,
            storage_path,
            cache_bytes,
            // 32-bit boxes: a budget past usize is no budget.
            device_budget: usize::try_from(device_budget).unwrap_or(usize::MAX),
            people_budget: usize::try_from(people_budget).unwrap_or(usize::MAX),
            mqtt,
            metrics_listen,
            people,
        })
    }
}

impl Config {
    /// SPEC §6 `params_hash`: the parameters that shape the counts and
    /// (SPEC §8) the estimator and its calibration, so the gateway can tell
    /// reports made under different rules apart.
    pub fn params_hash(&self) -> String {
        let people = match &self.people {
            // SPEC §8: estimates made differently never mix unnoticed; a
            // window past its observation budget estimates from a share
            // of the MACs, so a budget other than the default is part of
            // the method (the default leaves every hash as it was).
            Some(c) if self.people_budget as u64 != DEFAULT_PEOPLE_BUDGET => {
                format!(
                    "{};people_observations={}",
                    c.canonical(),
                    self.people_budget
                )
            }
            Some(c) => c.canonical(),
            None => "estimator=none".into(),
        };
        short_hash(&format!("{};{people}", self.counting_canonical()))
    }

    /// The hash of the device-counting parameters alone: what the state
    /// on disk depends on (a new calibration keeps the devices' histories).
    pub fn counting_hash(&self) -> String {
        short_hash(&self.counting_canonical())
    }

    /// The counting rules with the privacy mode, which decides what is
    /// counted at all. `loyalty` with a key kept for ever (how every agent
    /// counted before modes) adds nothing, so its hashes and states stay.
    fn counting_canonical(&self) -> String {
        let rules = counting_canonical(&self.counting, &self.timezone_name);
        match self.privacy.rotation {
            Rotation::Never => rules,
            Rotation::Seconds(n) => format!("{rules};privacy={};rotate_s={n}", self.privacy.mode),
            Rotation::Days(n) => format!("{rules};privacy={};rotate_days={n}", self.privacy.mode),
        }
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The line where `key` is set inside `[table]`, or the table's header line
/// when the key is absent; `None` when neither is in the file.
fn line_of_key(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut header = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = name.trim().to_string();
            if current == table {
                header = Some(i + 1);
            }
            continue;
        }
        if current == table {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(i + 1);
                }
            }
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[store]\nstore_id = \"shop-1\"\nagent_id = \"door\"\ntimezone = \"Asia/Shanghai\"\n\n[storage]\npath = \"state\"\n";

    #[test]
    fn defaults_are_spec() {
        let c = Config::parse(Path::new("/etc/footfall/agent.toml"), GOOD).unwrap();
        assert_eq!(c.counting, Counting::default());
        assert_eq!(c.counting.settle_s(), 900);
        assert_eq!(c.storage_path, Path::new("/etc/footfall/state"));
        assert_eq!(c.key_file, Path::new("/etc/footfall/footfall.key"));
        assert_eq!(c.cache_bytes, 8 << 20);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = format!("{GOOD}\n[counting]\nrssi_floor = -80\n");
        let err = Config::parse(Path::new("agent.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("agent.toml:10: unknown field `rssi_floor`"),
            "{err}"
        );
    }

    #[test]
    fn every_range_problem_is_listed_with_its_line() {
        let text = format!(
            "{GOOD}\n[counting]\nrssi_floor_dbm = 20\nwindow_s = 5\n[memory]\ndevices = 10\npeople_observations = 5\n"
        );
        let err = Config::parse(Path::new("agent.toml"), &text).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "agent.toml:10: rssi_floor_dbm = 20: must be -120..0".to_string(),
                "agent.toml:11: window_s = 5: must be 60..86400".to_string(),
                "agent.toml:13: devices = 10: must be 1000..4294967296".to_string(),
                "agent.toml:14: people_observations = 5: must be 1000..4294967296".to_string(),
            ]
        );
    }

    #[test]
    fn missing_ids_and_bad_timezone() {
        let text = "[store]\ntimezone = \"Mars/Olympus\"\n[storage]\npath = \"s\"\n";
        let err = Config::parse(Path::new("a.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.toml:1: store_id is missing"), "{err}");
        assert!(
            err.contains("a.toml:2: timezone = \"Mars/Olympus\": not an IANA time zone"),
            "{err}"
        );
    }

    #[test]
    fn params_hash_changes_with_parameters() {
        let a = params_hash(&Counting::default(), "UTC");
        let b = params_hash(
            &Counting {
                min_dwell_s: 301,
                ..Counting::default()
            },
            "UTC",
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, params_hash(&Counting::default(), "Asia/Shanghai"));
    }

    /// A people observation budget other than the default estimates crowds
    /// from a share of the MACs: its reports say so in `params_hash`.
    #[test]
    fn a_people_budget_other_than_the_default_changes_params_hash() {
        let parse = |extra: &str| {
            Config::parse(Path::new("agent.toml"), &format!("{GOOD}\n{extra}"))
                .unwrap()
                .params_hash()
        };
        let default = parse("");
        assert_eq!(default, parse("[memory]\npeople_observations = 65536\n"));
        assert_eq!(default, parse("[memory]\ndevices = 5000\n"));
        assert_ne!(default, parse("[memory]\npeople_observations = 4096\n"));
    }
}

#[cfg(test)]
mod sample {
    use super::*;

    /// The sample shipped for store boxes stays valid and keeps SPEC's defaults.
    #[test]
    fn firmware_sample_config_is_valid_and_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-config/agent.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.counting, Counting::default());
        assert_eq!(c.cache_bytes, DEFAULT_CACHE_BYTES);
        assert_eq!(c.snaplen, DEFAULT_SNAPLEN);
        assert_eq!(c.interface.as_deref(), Some("wlan0mon"));
        let mqtt = c.mqtt.expect("the sample delivers over MQTT");
        assert_eq!(mqtt.settings.client_id, "footfall-store-0001-entrance");
        assert_eq!(
            (mqtt.resend_s, mqtt.status_interval_s, mqtt.live_interval_s),
            (60, 30, 60)
        );
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9108".parse().unwrap()));
    }
}
