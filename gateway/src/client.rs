//! How the commands reach the reports: the store itself when no gateway is
//! running, or the running gateway's HTTP API when its process holds the
//! store's lock. One type, so each command makes that choice once.
//!
//! Invariant: both ways give the same rows for the same question; the API
//! answers with the very functions `Local` calls.

use anyhow::{Context, Result};
use footfall_report::CampaignReport;
use serde_json::{Map, Value};

use crate::accept::{accept_jsonl, Tally};
use crate::config::{Config, Storage};
use crate::query::{self, By};
use crate::store::{Campaign, DeadLetter, PgStore, Purged, ReportStore, SledStore, StoreError};

pub enum Client {
    /// The store itself: sled when no gateway holds it, or PostgreSQL,
    /// which any number of processes share.
    Local(Box<dyn ReportStore>),
    /// The API of the gateway that holds the store.
    Remote(Api),
}

/// A running gateway's HTTP API, as the commands call it.
pub struct Api {
    base: String,
    token: Option<String>,
}

type Rows = Vec<Map<String, Value>>;

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(url: &str) -> String {
        format!("the store is in use by a running gateway, and its API at {url} did not answer")
    }

    fn get(&self, path: &str, params: &[(&str, Option<&str>)]) -> Result<String> {
        let url = self.url(path);
        let mut req = ureq::get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in params {
            if let Some(v) = v {
                req = req.query(*k, *v);
            }
        }
        let mut resp = req.call().with_context(|| Api::unreachable(&url))?;
        Ok(resp.body_mut().read_to_string()?)
    }

    /// The JSON lines a GET answers, one value each.
    fn lines<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<Vec<T>> {
        self.get(path, params)?
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .context("the gateway's API answered something else than JSON lines")
            })
            .collect()
    }

    /// POSTs `body`; a refusal is an error carrying the API's own message.
    fn post(&self, path: &str, body: &[u8]) -> Result<String> {
        let url = self.url(path);
        let mut req = ureq::post(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)
            .with_context(|| Api::unreachable(&url))?;
        let text = resp.body_mut().read_to_string()?;
        if !resp.status().is_success() {
            anyhow::bail!("{}", text.trim_end());
        }
        Ok(text)
    }
}

impl Client {
    /// The store, or the running gateway's API when its process holds the
    /// store.
    pub fn open(config: &Config) -> Result<Client> {
        let (path, cache_bytes) = match &config.storage {
            Storage::Postgres { url } => return Ok(Client::Local(Box::new(PgStore::open(url)?))),
            Storage::Sled { path, cache_bytes } => (path, *cache_bytes),
        };
        match SledStore::open(path, cache_bytes) {
            Ok(s) => Ok(Client::Local(Box::new(s))),
            // sled reports a held lock as an I/O error whose text says so.
            Err(StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }) if e.to_string().contains("could not acquire lock") => Ok(Client::Remote(Api {
                base: format!("http://{}", config.http_listen),
                token: config.http_token.clone(),
            })),
            Err(e) => Err(e.into()),
        }
    }

    /// `report`: footfall rows by window, hour, day or week; `from` and
    /// `to` are UTC days, inclusive.
    pub fn report(
        &self,
        by: By,
        store: Option<String>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Rows> {
        match self {
            Client::Local(s) => query::report_rows(s.as_ref(), by, &query::query(store, from, to)?),
            Client::Remote(api) => api.lines(
                "/api/v1/report",
                &[
                    ("by", Some(by.name())),
                    ("store", store.as_deref()),
                    ("from", from),
                    ("to", to),
                ],
            ),
        }
    }

    pub fn stores(&self) -> Result<Rows> {
        match self {
            Client::Local(s) => query::stores_rows(s.as_ref()),
            Client::Remote(api) => api.lines("/api/v1/stores", &[]),
        }
    }

    /// Report lines as agents' `--emit` writes them, accepted and
    /// committed; `source` names the file in dead letters.
    pub fn ingest(&self, source: &str, text: &[u8], max_payload: usize) -> Result<Tally> {
        match self {
            Client::Local(s) => accept_jsonl(s.as_ref(), source, text, max_payload),
            Client::Remote(api) => Ok(serde_json::from_str(&api.post("/api/v1/ingest", text)?)?),
        }
    }

    /// Imports a campaigns CSV; `file` names it in every error line.
    pub fn import_campaigns(&self, text: &str, file: &str) -> Result<usize> {
        match self {
            Client::Local(s) => crate::campaigns::import(s.as_ref(), text, file),
            Client::Remote(api) => {
                let body = api
                    .post("/api/v1/campaigns", text.as_bytes())
                    .map_err(|e| {
                        anyhow::anyhow!("{}", e.to_string().replace("http:", &format!("{file}:")))
                    })?;
                Ok(serde_json::from_str::<Value>(&body)?["imported"]
                    .as_u64()
                    .unwrap_or(0) as usize)
            }
        }
    }

    pub fn campaigns(&self) -> Result<Vec<Campaign>> {
        match self {
            Client::Local(s) => Ok(s.campaigns()?),
            Client::Remote(api) => api.lines("/api/v1/campaigns", &[]),
        }
    }

    pub fn campaign_reports(&self, only: Option<&str>) -> Result<Vec<CampaignReport>> {
        match self {
            Client::Local(s) => crate::campaigns::reports(s.as_ref(), only),
            Client::Remote(api) => api.lines("/api/v1/campaign-report", &[("campaign", only)]),
        }
    }

    /// `purge`: deletes a closed store's records, or those before a UTC
    /// date, and says what it deleted.
    pub fn purge(&self, store: Option<String>, before: Option<&str>) -> Result<Purged> {
        match self {
            Client::Local(s) => Ok(s.purge(&crate::retention::purge_of(store, before)?)?),
            Client::Remote(api) => {
                let mut path = String::from("/api/v1/purge?");
                for (k, v) in [("store", store.as_deref()), ("before", before)] {
                    if let Some(v) = v {
                        path += &format!("{k}={}&", urlencode(v));
                    }
                }
                Ok(serde_json::from_str(
                    &api.post(path.trim_end_matches(['?', '&']), b"")?,
                )?)
            }
        }
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        match self {
            Client::Local(s) => Ok(s.dead_letters()?),
            Client::Remote(_) => anyhow::bail!(
                "the store is in use by a running gateway: stop it to read its dead letters"
            ),
        }
    }
}

/// Percent-encodes a query value (store ids are `[A-Za-z0-9._-]`, dates
/// digits and dashes; anything else is encoded all the same).
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
