//! `footfall-gateway`: parses the command line and calls the library.
//!
//! `report`, `stores` and `ingest` open the store directly; while `serve`
//! runs, its process holds the store, so they ask it over its HTTP API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use footfall_gateway::campaigns;
use footfall_gateway::config::Config;
use footfall_gateway::ingest::ingest_jsonl;
use footfall_gateway::query::{self, By, Format};
use footfall_gateway::serve::{self, Tally};
use footfall_gateway::store::{ReportStore, SledStore, StoreError};
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(name = "footfall-gateway", version, about = "footfall's HQ gateway")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribe to every store's reports, store them once, ack them.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Store report files written by agents' `--emit`, as MQTT would.
    Ingest {
        #[arg(long)]
        config: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Footfall per store (and agent) by window, hour, day or week.
    Report {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "day")]
        by: By,
        #[arg(long)]
        store: Option<String>,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (UTC), inclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Each store's agents: last seen, online/offline, windows received.
    Stores {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Marketing campaigns: `import FILE` (CSV, SPEC §7 columns) or `list`.
    Campaigns {
        #[command(subcommand)]
        action: CampaignAction,
    },
    /// Did the campaign bring more people in: SPEC §7 per campaign and store.
    CampaignReport {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Payloads the gateway refused to store, with the reason.
    DeadLetters {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CampaignAction {
    /// Validate every row, then store the file at once (by campaign_id).
    Import {
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
    },
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOOTFALL_LOG")
                .unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .init();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("footfall-gateway: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The store, or `None` when a running `serve` holds it.
fn open(config: &Config) -> Result<Option<SledStore>> {
    match SledStore::open(&config.storage_path, config.cache_bytes) {
        Ok(s) => Ok(Some(s)),
        // sled reports a held lock as an I/O error whose text says so.
        Err(StoreError::Open {
            source: sled::Error::Io(e),
            ..
        }) if e.to_string().contains("could not acquire lock") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn http(config: &Config, path: &str) -> String {
    format!("http://{}{path}", config.http_listen)
}

fn rows_from_ndjson(text: &str) -> Result<Vec<Map<String, Value>>> {
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn get_rows(
    config: &Config,
    path: &str,
    params: &[(&str, Option<String>)],
) -> Result<Vec<Map<String, Value>>> {
    let url = http(config, path);
    let mut req = ureq::get(&url);
    if let Some(t) = &config.http_token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    for (k, v) in params {
        if let Some(v) = v {
            req = req.query(*k, v);
        }
    }
    let mut resp = req.call().with_context(|| {
        format!("the store is in use by a running gateway, and its API at {url} did not answer")
    })?;
    rows_from_ndjson(&resp.body_mut().read_to_string()?)
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let store: Arc<dyn ReportStore> =
                Arc::new(SledStore::open(&config.storage_path, config.cache_bytes)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve::serve(config, store, serve::signals()))?;
        }
        Command::Ingest { config, files } => {
            let config = Config::load(&config)?;
            let store = open(&config)?;
            let mut tally = Tally::default();
            for f in &files {
                let text =
                    std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
                match &store {
                    Some(s) => ingest_jsonl(
                        s,
                        &f.display().to_string(),
                        &text,
                        config.max_payload_bytes,
                        &mut tally,
                    )?,
                    None => {
                        let url = http(&config, "/api/v1/ingest");
                        let mut resp = ureq::post(&url)
                            .header("Authorization", format!("Bearer {}", config.http_token.as_deref().unwrap_or("")))
                            .send(&text[..])
                            .with_context(|| format!("the store is in use by a running gateway, and its API at {url} did not answer"))?;
                        let t: Value = serde_json::from_str(&resp.body_mut().read_to_string()?)?;
                        let n = |k: &str| t[k].as_u64().unwrap_or(0);
                        tally.inserted += n("inserted");
                        tally.duplicates += n("duplicates");
                        tally.conflicts += n("conflicts");
                        tally.dead += n("rejected");
                    }
                }
            }
            if let Some(s) = &store {
                s.commit()?;
            }
            println!(
                "ingested: {} new, {} already stored, {} conflicts, {} rejected (see dead-letters)",
                tally.inserted, tally.duplicates, tally.conflicts, tally.dead
            );
        }
        Command::Report {
            config,
            by,
            store,
            from,
            to,
            format,
        } => {
            let config = Config::load(&config)?;
            let rows = match open(&config)? {
                Some(db) => query::report_rows(
                    &db,
                    by,
                    &query::query(store, from.as_deref(), to.as_deref())?,
                )?,
                None => {
                    let by = format!("{by:?}").to_lowercase();
                    get_rows(
                        &config,
                        "/api/v1/report",
                        &[
                            ("by", Some(by)),
                            ("store", store),
                            ("from", from),
                            ("to", to),
                        ],
                    )?
                }
            };
            print!("{}", query::render(&rows, format));
        }
        Command::Stores { config, format } => {
            let config = Config::load(&config)?;
            let rows = match open(&config)? {
                Some(db) => query::stores_rows(&db)?,
                None => get_rows(&config, "/api/v1/stores", &[])?,
            };
            print!("{}", query::render(&rows, format));
        }
        Command::Campaigns {
            action: CampaignAction::Import { config, file },
        } => {
            let config = Config::load(&config)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let n = match open(&config)? {
                Some(db) => campaigns::import(&db, &text, &file.display().to_string())?,
                None => {
                    let url = http(&config, "/api/v1/campaigns");
                    let mut resp = ureq::post(&url)
                        .header("Authorization", format!("Bearer {}", config.http_token.as_deref().unwrap_or("")))
                        .config()
                        .http_status_as_error(false)
                        .build()
                        .send(text.as_bytes())
                        .with_context(|| format!("the store is in use by a running gateway, and its API at {url} did not answer"))?;
                    let body = resp.body_mut().read_to_string()?;
                    if !resp.status().is_success() {
                        anyhow::bail!(
                            "{}",
                            body.trim_end()
                                .replace("http:", &format!("{}:", file.display()))
                        );
                    }
                    serde_json::from_str::<Value>(&body)?["imported"]
                        .as_u64()
                        .unwrap_or(0) as usize
                }
            };
            println!("{}: {n} campaigns imported", file.display());
        }
        Command::Campaigns {
            action: CampaignAction::List { config },
        } => {
            let config = Config::load(&config)?;
            let list: Vec<Value> = match open(&config)? {
                Some(db) => db
                    .campaigns()?
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?,
                None => get_rows(&config, "/api/v1/campaigns", &[])?
                    .into_iter()
                    .map(Value::Object)
                    .collect(),
            };
            for c in list {
                println!("{c}");
            }
        }
        Command::CampaignReport {
            config,
            campaign,
            format,
        } => {
            let config = Config::load(&config)?;
            let reports: Vec<Value> = match open(&config)? {
                Some(db) => campaigns::reports(&db, campaign.as_deref())?,
                None => get_rows(
                    &config,
                    "/api/v1/campaign-report",
                    &[("campaign", campaign)],
                )?
                .into_iter()
                .map(Value::Object)
                .collect(),
            };
            match format {
                Format::Json => {
                    for r in &reports {
                        println!("{r}");
                    }
                }
                Format::Table => print!("{}", campaigns::render_table(&reports)),
                Format::Csv => {
                    let rows: Vec<Map<String, Value>> = reports
                        .iter()
                        .flat_map(|r| {
                            let mut total = r.as_object().cloned().unwrap_or_default();
                            total.remove("stores");
                            total.insert("store_id".into(), Value::from("ALL"));
                            let id = r["campaign_id"].clone();
                            std::iter::once(total).chain(
                                r["stores"]
                                    .as_array()
                                    .cloned()
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(move |s| {
                                        let mut m = Map::new();
                                        m.insert("campaign_id".into(), id.clone());
                                        m.extend(s.as_object().cloned().unwrap_or_default());
                                        m
                                    }),
                            )
                        })
                        .map(|m| campaigns::csv_row(&m))
                        .collect();
                    print!("{}", query::render(&rows, Format::Csv));
                }
            }
        }
        Command::DeadLetters { config } => {
            let config = Config::load(&config)?;
            let db = SledStore::open(&config.storage_path, config.cache_bytes)?;
            for d in db.dead_letters()? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
    }
    Ok(())
}
