//! `footfall-gateway`: parses the command line and calls the library.
//!
//! The commands reach the reports through `client::Client`: the store
//! itself, or the running gateway's HTTP API while `serve` holds it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use footfall_gateway::accept::Tally;
use footfall_gateway::client::Client;
use footfall_gateway::config::Config;
use footfall_gateway::query::By;
use footfall_gateway::render::{self, Format};
use footfall_gateway::serve;

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
    /// Delete a store that closed (`--store`), or every record before a
    /// UTC date (`--before`), or both; says what it deleted.
    Purge {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        store: Option<String>,
        /// YYYY-MM-DD (UTC): windows, hours, day reports and dead letters
        /// before it go.
        #[arg(long)]
        before: Option<String>,
    },
    /// Copy this gateway's sled store into PostgreSQL, then verify it per
    /// store (counts and a checksum). Stop the gateway first; run it again
    /// to resume.
    Migrate {
        #[arg(long)]
        config: PathBuf,
        /// postgres://user:password@host:port/database
        #[arg(long)]
        to: String,
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

/// The store for `serve`: a database that is not up yet (the gateway
/// started first, or the database restarts) is waited for, saying so; a
/// store that cannot be opened for another reason is an error at once.
fn open_waiting(
    config: &Config,
) -> Result<std::sync::Arc<dyn footfall_gateway::store::ReportStore>> {
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match footfall_gateway::store::open(&config.storage) {
            Err(e @ footfall_gateway::store::StoreError::Postgres { .. }) => {
                tracing::warn!(error = %e, "the database is unavailable; waiting for it");
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_secs(10));
            }
            other => return Ok(other?),
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            let store = open_waiting(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve::serve(config, store, serve::signals()))?;
        }
        Command::Ingest { config, files } => {
            let config = Config::load(&config)?;
            let client = Client::open(&config)?;
            let mut tally = Tally::default();
            for f in &files {
                let text =
                    std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
                tally.add(&client.ingest(
                    &f.display().to_string(),
                    &text,
                    config.max_payload_bytes,
                )?);
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
            let mut rows =
                Client::open(&config)?.report(by, store, from.as_deref(), to.as_deref())?;
            footfall_gateway::query::suppress(&mut rows, config.min_count);
            print!("{}", render::render(&rows, format));
        }
        Command::Stores { config, format } => {
            let config = Config::load(&config)?;
            let rows = Client::open(&config)?.stores()?;
            print!("{}", render::render(&rows, format));
        }
        Command::Campaigns {
            action: CampaignAction::Import { config, file },
        } => {
            let config = Config::load(&config)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let n = Client::open(&config)?.import_campaigns(&text, &file.display().to_string())?;
            println!("{}: {n} campaigns imported", file.display());
        }
        Command::Campaigns {
            action: CampaignAction::List { config },
        } => {
            let config = Config::load(&config)?;
            for c in Client::open(&config)?.campaigns()? {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
        Command::CampaignReport {
            config,
            campaign,
            format,
        } => {
            let config = Config::load(&config)?;
            let mut reports = Client::open(&config)?.campaign_reports(campaign.as_deref())?;
            footfall_gateway::campaigns::suppress(&mut reports, config.min_count);
            match format {
                Format::Json => {
                    for r in &reports {
                        println!("{}", serde_json::to_string(r)?);
                    }
                }
                Format::Table => print!("{}", render::campaigns_table(&reports)),
                Format::Csv => print!("{}", render::campaigns_csv(&reports)),
            }
        }
        Command::Purge {
            config,
            store,
            before,
        } => {
            let config = Config::load(&config)?;
            let done = Client::open(&config)?.purge(store, before.as_deref())?;
            println!("purge: {done}");
        }
        Command::Migrate { config, to } => {
            let config = Config::load(&config)?;
            let footfall_gateway::config::Storage::Sled { path, cache_bytes } = &config.storage
            else {
                anyhow::bail!(
                    "migrate copies a sled store: this config's [storage] is already a url"
                );
            };
            let from = footfall_gateway::store::SledStore::open(path, *cache_bytes)
                .map_err(|e| anyhow::anyhow!("{e}; stop the gateway that uses it, then migrate"))?;
            let to = footfall_gateway::store::PgStore::open(&to)?;
            print!("{}", footfall_gateway::migrate::migrate(&from, &to)?);
            println!("now set [storage] url to the PostgreSQL URL (and remove path)");
        }
        Command::DeadLetters { config } => {
            let config = Config::load(&config)?;
            for d in Client::open(&config)?.dead_letters()? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
    }
    Ok(())
}
