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
    /// Payloads the gateway refused to store, with the reason.
    DeadLetters {
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
