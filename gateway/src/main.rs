//! `footfall-gateway`: parses the command line and calls the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use footfall_gateway::config::Config;
use footfall_gateway::query::{self, By, Format};
use footfall_gateway::serve::{self, Tally};
use footfall_gateway::store::{Query, ReportStore, SledStore};

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
    /// Payloads the gateway refused to store, with the reason.
    DeadLetters {
        #[arg(long)]
        config: PathBuf,
    },
    /// Each store's agents: last seen, online/offline, windows received.
    Stores {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOOTFALL_LOG")
                .unwrap_or_else(|_| "info".into()),
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

fn day_start(s: &str, what: &str) -> Result<i64> {
    let d: jiff::civil::Date = s
        .parse()
        .with_context(|| format!("{what} {s:?}: expected YYYY-MM-DD"))?;
    Ok(d.to_zoned_datetime(jiff::tz::TimeZone::UTC)?
        .timestamp()
        .as_second())
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let mut store = SledStore::open(&config.storage_path, config.cache_bytes)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve::serve(config, &mut store, serve::signals()))?;
        }
        Command::Ingest { config, files } => {
            let config = Config::load(&config)?;
            let mut store = SledStore::open(&config.storage_path, config.cache_bytes)?;
            let mut tally = Tally::default();
            for f in &files {
                let file = std::fs::File::open(f)
                    .with_context(|| format!("{}: cannot open", f.display()))?;
                for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line =
                        line.with_context(|| format!("{}:{}: cannot read", f.display(), i + 1))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    ingest_line(
                        &mut store,
                        &format!("{}:{}", f.display(), i + 1),
                        line.as_bytes(),
                        config.max_payload_bytes,
                        &mut tally,
                    )?;
                }
            }
            store.commit()?;
            println!(
                "ingested: {} new, {} already stored, {} conflicts, {} rejected (see dead letters)",
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
            let db = SledStore::open(&config.storage_path, config.cache_bytes)?;
            let q = Query {
                store_id: store,
                from_s: from
                    .as_deref()
                    .map(|s| day_start(s, "--from"))
                    .transpose()?,
                to_s: to
                    .as_deref()
                    .map(|s| day_start(s, "--to").map(|t| t + 86_400))
                    .transpose()?,
            };
            print!(
                "{}",
                query::render(&query::report_rows(&db, by, &q)?, format)
            );
        }
        Command::DeadLetters { config } => {
            let config = Config::load(&config)?;
            let db = SledStore::open(&config.storage_path, config.cache_bytes)?;
            for d in db.dead_letters()? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
        Command::Stores { config, format } => {
            let config = Config::load(&config)?;
            let db = SledStore::open(&config.storage_path, config.cache_bytes)?;
            print!("{}", query::render(&query::stores_rows(&db)?, format));
        }
    }
    Ok(())
}

/// One `--emit` line through the same validation and idempotency as MQTT;
/// its topic is the one the agent would have used.
fn ingest_line(
    store: &mut SledStore,
    source: &str,
    line: &[u8],
    max: usize,
    tally: &mut Tally,
) -> Result<()> {
    let topic = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| {
            let kind = match v.get("schema")?.as_str()? {
                footfall_report::WINDOW_SCHEMA => "window",
                footfall_report::DAY_SCHEMA => "day",
                _ => return None,
            };
            Some(format!(
                "{}/{}/{}/{kind}",
                footfall_report::topic::PREFIX,
                v.get("store_id")?.as_str()?,
                v.get("agent_id")?.as_str()?
            ))
        })
        .unwrap_or_else(|| source.to_string());
    serve::handle(store, &topic, line, max, tally)?;
    Ok(())
}
