//! `footfall-agent`: parses the command line and calls the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use footfall_agent::config::Config;
use footfall_agent::people::Calibration;
use footfall_agent::{evaluate, inspect, replay, run as live, simulate};

#[derive(Parser)]
#[command(
    name = "footfall-agent",
    version,
    about = "Counts store visits from Wi-Fi probe requests, privately"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Count capture files as one timeline and write final reports.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// Where reports go, one JSON line each (appended); `-` for stdout.
        #[arg(long)]
        emit: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Say what is in capture files, without counting visits.
    Inspect {
        /// One JSON object per file, one per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = -90, allow_negative_numbers = true)]
        rssi_floor_dbm: i8,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Capture live (or a config's capture file), count, and deliver over MQTT until stopped.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a store box: interface, monitor mode, permissions, key, state, clock, broker.
    Doctor {
        #[arg(long)]
        config: PathBuf,
        /// Seconds to listen for frames.
        #[arg(long, default_value_t = 10)]
        listen_s: u64,
    },
    /// Validate a config and list every problem with its line.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Write synthetic store traffic.
    Simulate(simulate::SimulateArgs),
    /// Score the people estimates (SPEC §8) against a truth, and draw them.
    Evaluate {
        #[command(flatten)]
        input: EvaluateInput,
        /// A calibration to use instead of the config's.
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Score only the captures the calibration was not fitted on.
        #[arg(long)]
        held_out: bool,
        /// Where the picture goes (SVG).
        #[arg(long, default_value = "evaluate.svg")]
        svg: PathBuf,
        /// The figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fit the people estimate's calibration from captures with a truth.
    Calibrate {
        #[command(flatten)]
        input: EvaluateInput,
        /// Where the calibration goes; name it in [people] calibration.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The captures `evaluate` and `calibrate` read, and their truth.
#[derive(clap::Args)]
struct EvaluateInput {
    /// The store's config: counting parameters, opt-out list, calibration.
    /// Default: SPEC's parameters and the built-in calibration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// An opt-out list (the store's tills and computers) instead of the config's.
    #[arg(long)]
    opt_out: Option<PathBuf>,
    /// One truth for all the captures, read as one timeline: an occupancy
    /// log (.tsv) or door counts (.csv). Without it, each capture is scored
    /// on its own against NAME.occupancy.tsv or NAME.door.csv beside it.
    #[arg(long)]
    truth: Option<PathBuf>,
    #[arg(required = true)]
    captures: Vec<PathBuf>,
}

impl EvaluateInput {
    fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => footfall_agent::evaluate::default_config(),
        };
        if let Some(p) = &self.opt_out {
            c.opt_out_file = Some(p.clone());
        }
        Ok(c)
    }
}

fn main() -> ExitCode {
    tune_malloc();
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("footfall-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// glibc raises its mmap threshold to the size of the largest block freed
/// (up to 32 MiB); after the first checkpoint (about half a megabyte at
/// 100 k devices a day) and sled's node copies are freed, such blocks come
/// from the heap instead and leave holes it cannot give back. Pinned at
/// 256 KiB, the median peak RSS of a replay at 100 k devices a day went
/// from 33.3 to 31.3 MiB, for 3-10 % more replay time (README, issue 7).
///
/// One arena: glibc gives each thread that allocates an arena of its own,
/// and sled's pages that the thread writing histories makes
/// (`store::histories::Flight`) then filled a second heap while the
/// first kept its holes: peak RSS of 1 M devices a day under `loyalty`
/// went from 46-52 to 54-60 MiB. With one arena it stays at 49 MiB; the
/// threads wait on its lock now and then, which gives back about half of
/// the time the writing thread saves there (2 runs each, issue 20).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters, and no other
    // thread exists yet to allocate concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Replay {
            config,
            emit,
            files,
        } => {
            let config = Config::load(&config)?;
            replay::replay(&config, &files, &emit)?;
        }
        Command::Inspect {
            json,
            rssi_floor_dbm,
            files,
        } => {
            let mut failed = false;
            for f in &files {
                let i = inspect::inspect_file(f, rssi_floor_dbm, -70);
                failed |= i.error.is_some();
                if json {
                    println!("{}", i.to_json());
                } else {
                    print!("{}", i.to_text());
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Run { config } => {
            let config = Config::load(&config)?;
            tracing::info!(store = %config.store_id, agent = %config.agent_id, source = %live::describe_source(&config), "starting");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(live::run(config, live::signals()))?;
        }
        Command::Doctor { config, listen_s } => {
            let config = Config::load(&config)?;
            let checks = footfall_agent::doctor::run(&config, listen_s);
            print!("{}", footfall_agent::doctor::render(&checks));
            if checks.iter().any(|c| !c.ok) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!(
                "{}: ok (store {}, agent {}, time zone {}, params_hash {})",
                config.display(),
                c.store_id,
                c.agent_id,
                c.timezone_name,
                c.params_hash()
            );
            println!("privacy mode {}", c.privacy.describe());
        }
        Command::Evaluate {
            input,
            calibration,
            held_out,
            svg,
            json,
        } => {
            let config = input.config()?;
            let calibration = match calibration {
                Some(p) => Calibration::load(&p)?,
                None => config
                    .people
                    .clone()
                    .unwrap_or_else(|| Calibration::builtin_for(config.privacy.mode)),
            };
            let scores = evaluate::score_all(
                &config,
                &calibration,
                input.truth.as_deref(),
                &input.captures,
                held_out,
            )?;
            std::fs::write(&svg, evaluate::svg::render(&scores))
                .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
            let figures = evaluate::Evaluation::of(&scores);
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                print!("{}", evaluate::render(&figures));
                eprintln!("picture: {}", svg.display());
            }
        }
        Command::Calibrate { input, out } => {
            let config = input.config()?;
            let scores = evaluate::score_all(
                &config,
                &Calibration::builtin(),
                input.truth.as_deref(),
                &input.captures,
                false,
            )?;
            let fitted = evaluate::fit::calibrate(&scores)?;
            std::fs::write(&out, fitted.to_toml())
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            eprintln!(
                "{}: {} windows from {} files; {:.4} people per persistent device, {:.4} per single-burst model; 90 % interval ×[{:.2}, {:.2}] on (est + 1)",
                out.display(),
                fitted.windows,
                fitted.fitted_on.len(),
                fitted.per_persistent,
                fitted.per_fingerprint,
                fitted.interval_log_lo.exp(),
                fitted.interval_log_hi.exp()
            );
        }
        Command::Simulate(args) => {
            let s = simulate::simulate(&args)?;
            eprintln!(
                "{}: {} frames, {} customers over {} days",
                args.out.display(),
                s.frames,
                s.customers,
                args.days
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
