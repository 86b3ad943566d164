//! `gateway.toml`: `[mqtt]` (the broker to subscribe to), `[broker]` (the
//! embedded one), `[storage]`, `[http]`, `[ingest]`, `[retention]` and
//! `[privacy]` (issue 18). Unknown keys are errors naming the key and line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Default `mqtt://127.0.0.1:1883`.
    pub url: Option<String>,
    /// Default `footfall-gateway`; several gateways need distinct ids.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keepalive_s: Option<u32>,
    /// Several gateways: the MQTT v5 shared subscription group they take
    /// reports in turn through (`$share/<group>/…`). Each needs its own
    /// `client_id`, and all the same PostgreSQL `[storage] url`.
    pub share_group: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// sled: the embedded default, one gateway on one box.
    pub path: Option<PathBuf>,
    pub cache_bytes: Option<u64>,
    /// PostgreSQL (`postgres://user:password@host:port/database`): a
    /// chain, several gateways on one database.
    pub url: Option<String>,
}

/// Where the reports are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Sled { path: PathBuf, cache_bytes: u64 },
    Postgres { url: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// A file holding a bearer token the API then requires.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Payloads larger than this go to dead letters. Default 65536.
    pub max_payload_bytes: Option<usize>,
}

/// `[retention]`: days each kind of record is kept; absent, for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub windows_days: Option<u32>,
    pub day_reports_days: Option<u32>,
    pub dead_letters_days: Option<u32>,
}

/// `[privacy]`: small counts withheld from every answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// Counts below this are shown as suppressed (`null`, with the reason).
    pub min_count: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mqtt: RawMqtt,
    #[serde(default)]
    pub broker: RawBroker,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub privacy: RawPrivacy,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: footfall_report::mqtt::Settings,
    pub broker_enabled: bool,
    pub broker_listen: String,
    pub storage: Storage,
    /// `[mqtt] share_group`: reports come through `$share/<group>/…`.
    pub share_group: Option<String>,
    pub http_listen: String,
    pub http_token: Option<String>,
    pub max_payload_bytes: usize,
    pub retention: Retention,
    /// Counts below this are withheld (`None`: none are).
    pub min_count: Option<u64>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let storage = match (&raw.storage.path, &raw.storage.url) {
            (Some(_), Some(_)) => bail!(
                "{}: [storage] has both path (sled) and url (PostgreSQL): keep one",
                path.display()
            ),
            (None, None) => bail!(
                "{}: [storage] path (sled) or url (PostgreSQL) is missing: where the gateway keeps reports",
                path.display()
            ),
            (Some(p), None) => Storage::Sled {
                path: resolve(p),
                cache_bytes: raw.storage.cache_bytes.unwrap_or(64 << 20),
            },
            (None, Some(url)) => {
                if let Err(e) = check_postgres_url(url) {
                    bail!(
                        "{}: [storage] url = {:?}: {e}",
                        path.display(),
                        redact(url)
                    );
                }
                Storage::Postgres { url: url.clone() }
            }
        };
        let m = raw.mqtt;
        if let Some(g) = &m.share_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                bail!(
                    "{}: [mqtt] share_group = {g:?}: a name without '/', '+' or '#'",
                    path.display()
                );
            }
            if matches!(storage, Storage::Sled { .. }) {
                bail!(
                    "{}: [mqtt] share_group needs a store the gateways share: [storage] url (PostgreSQL), not path",
                    path.display()
                );
            }
        }
        let share_group = m.share_group.clone();
        let broker_enabled = raw.broker.enabled.unwrap_or(false);
        let broker_listen = raw.broker.listen.unwrap_or_else(|| "127.0.0.1:1883".into());
        // With the embedded broker, the gateway subscribes to it by default.
        let url = m.url.unwrap_or_else(|| format!("mqtt://{broker_listen}"));
        footfall_report::mqtt::parse_url(&url)
            .map_err(|e| anyhow::anyhow!("{}: [mqtt] {e}", path.display()))?;
        Ok(Config {
            mqtt: footfall_report::mqtt::Settings {
                url,
                client_id: m.client_id.unwrap_or_else(|| "footfall-gateway".into()),
                username: m.username,
                password_file: m.password_file.as_deref().map(resolve),
                ca_file: m.ca_file.as_deref().map(resolve),
                cert_file: m.cert_file.as_deref().map(resolve),
                key_file: m.key_file.as_deref().map(resolve),
                keepalive_s: u64::from(m.keepalive_s.unwrap_or(30)),
            },
            broker_enabled,
            broker_listen,
            storage,
            share_group,
            http_listen: raw.http.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
            http_token: match raw.http.token_file.as_deref().map(resolve) {
                Some(p) => {
                    let t = std::fs::read_to_string(&p).with_context(|| {
                        format!("[http] token_file {}: cannot read", p.display())
                    })?;
                    let t = t.trim().to_string();
                    anyhow::ensure!(
                        t.len() >= 16,
                        "[http] token_file {}: the token must be at least 16 characters",
                        p.display()
                    );
                    Some(t)
                }
                None => None,
            },
            max_payload_bytes: raw.ingest.max_payload_bytes.unwrap_or(64 * 1024),
            retention: check_retention(raw.retention, path)?,
            min_count: match raw.privacy.min_count {
                Some(0) | None => None,
                Some(n) if n <= 1000 => Some(n),
                Some(n) => bail!(
                    "{}: [privacy] min_count = {n}: must be 0..1000 (0: nothing withheld)",
                    path.display()
                ),
            },
        })
    }
}

/// The URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A PostgreSQL URL the driver accepts, with a host and a database.
fn check_postgres_url(url: &str) -> std::result::Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected postgres://user:password@host:port/database".into());
    }
    let c: postgres::Config = url.parse().map_err(|e: postgres::Error| e.to_string())?;
    if c.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    if c.get_dbname().is_none() {
        return Err("names no database (…/database at its end)".into());
    }
    Ok(())
}

/// Each retention is a whole number of days, at least one.
fn check_retention(r: Retention, path: &Path) -> Result<Retention> {
    for (key, v) in [
        ("windows_days", r.windows_days),
        ("day_reports_days", r.day_reports_days),
        ("dead_letters_days", r.dead_letters_days),
    ] {
        if v == Some(0) {
            bail!(
                "{}: [retention] {key} = 0: keep at least 1 day, or leave it out to keep for ever",
                path.display()
            );
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sample_is_valid() {
        let c = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.toml"))
            .unwrap();
        assert!(!c.broker_enabled);
        assert_eq!(c.mqtt.client_id, "footfall-gateway");
        assert_eq!(c.http_listen, "127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        std::fs::write(
            &p,
            "[storage]\npath = \"s\"\n[mqtt]\nurl = \"mqtt://h:1\"\nport = 3\n",
        )
        .unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("gateway.toml:5: unknown field `port`"),
            "{err}"
        );
        std::fs::write(&p, "[storage]\npath = \"s\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.mqtt.url, "mqtt://127.0.0.1:1883");
        assert_eq!(
            c.storage,
            Storage::Sled {
                path: dir.path().join("s"),
                cache_bytes: 64 << 20
            }
        );
        std::fs::write(
            &p,
            "[storage]\nurl = \"postgres://u:secret@db:5432/footfall\"\n",
        )
        .unwrap();
        assert!(matches!(
            Config::load(&p).unwrap().storage,
            Storage::Postgres { .. }
        ));
        for (bad, why) in [
            ("mysql://db/footfall", "expected postgres://"),
            ("postgres://u:secret@db:5432", "names no database"),
            ("postgres://u:secret@db:notaport/x", "invalid"),
        ] {
            std::fs::write(&p, format!("[storage]\nurl = {bad:?}\n")).unwrap();
            let err = Config::load(&p).unwrap_err().to_string();
            assert!(
                err.contains("[storage] url = ") && err.contains(why),
                "{bad}: {err}"
            );
            assert!(!err.contains("secret"), "the password is not echoed: {err}");
        }
    }
}
