//! `footfall-gateway serve`: starts its parts, which are siblings that do
//! not know of each other: the embedded broker (`broker`, when enabled),
//! the HTTP API and dashboard (`api`), the MQTT subscribe → commit → ack
//! loop (`mqtt`), the retention sweeper (`sweep`), and the keepers of
//! what queries and SQL tools read worked out (`publish`, `keep`). They
//! share the store (the keepers through a handle of their own where the
//! engine has one) and the metrics counters.
//!
//! Shutdown order: the MQTT loop commits its batch and sends its acks, then
//! the HTTP server finishes the requests in hand; the store is committed
//! once more before `serve` returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use anyhow::Result;
use tracing::{info, warn};

use crate::config::{Config, Retention};
use crate::metrics::Counters;
use crate::store::ReportStore;

/// Runs until `shutdown` resolves.
pub async fn serve(
    config: Config,
    store: Arc<dyn ReportStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if config.broker_enabled {
        crate::broker::start(&config.broker_listen)?;
    }
    let listener = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("[http] listen = {}: {e}", config.http_listen))?;
    info!(listen = %config.http_listen, "HTTP API listening");
    let counters: Arc<Counters> = Default::default();
    let app = crate::api::router(
        store.clone(),
        counters.clone(),
        crate::api::Settings {
            max_payload: config.max_payload_bytes,
            token: config.http_token.clone(),
            min_count: config.min_count,
        },
    );
    let sweeper = tokio::spawn(sweep(config.retention, store.clone(), counters.clone()));
    let background: Arc<dyn ReportStore> = match store.background() {
        Ok(Some(b)) => Arc::from(b),
        Ok(None) => store.clone(),
        Err(e) => {
            warn!(error = %e, "no connection of its own for background work; it shares the API's");
            store.clone()
        }
    };
    let publisher = tokio::spawn(publish(background.clone(), config.min_count));
    let keeper = tokio::spawn(keep(background));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    let result = crate::mqtt::run(&config, store.clone(), counters, shutdown).await;
    sweeper.abort();
    publisher.abort();
    keeper.abort();
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    store.commit()?;
    result
}

/// How often the retention sweeper looks for what is past `[retention]`.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes what is past retention at start and then every hour, and says
/// what it deleted; a failure is logged and tried again next time.
async fn sweep(retention: Retention, store: Arc<dyn ReportStore>, counters: Arc<Counters>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(purge) = crate::retention::past(&retention, crate::calendar::now_s()) else {
            return;
        };
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.purge(&purge)).await {
            Ok(Ok(p)) => {
                let n = p.windows + p.hours + p.day_reports + p.dead_letters;
                counters.purged.fetch_add(n, Ordering::Relaxed);
                if !p.is_empty() {
                    info!("retention: {p}");
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "retention: the sweep failed; it runs again in an hour")
            }
            Err(e) => warn!(error = %e, "retention: the sweep failed; it runs again in an hour"),
        }
    }
}

/// How often campaign reports are worked out again for SQL tools.
const PUBLISH_EVERY: Duration = Duration::from_secs(600);

/// Keeps campaign reports where SQL tools read them (`campaigns::publish`),
/// at start and then every ten minutes, on an engine that has them.
async fn publish(store: Arc<dyn ReportStore>, min_count: Option<u64>) {
    if !store.keeps_campaign_reports() {
        return;
    }
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tick.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || {
            crate::campaigns::publish(store.as_ref(), min_count)
        })
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(
                error = %format!("{e:#}"),
                "campaign reports for SQL tools not kept; tried again in ten minutes"
            ),
            Err(e) => {
                warn!(error = %e, "campaign reports for SQL tools not kept; tried again in ten minutes")
            }
        }
    }
}

/// How often the chain's distinct visitors per date are brought up to date.
const KEEP_EVERY: Duration = Duration::from_secs(600);

/// Works out the chain's distinct visitors of the dates that changed
/// (`query::keep_chain_days`) at start and then every ten minutes, so that
/// a `store=*` query by day works out at most what changed since.
async fn keep(store: Arc<dyn ReportStore>) {
    let mut tick = tokio::time::interval(KEEP_EVERY);
    loop {
        tick.tick().await;
        let store = store.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || crate::query::keep_chain_days(store.as_ref()))
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(dates)) => info!(
                dates,
                seconds = started.elapsed().as_secs_f64(),
                "the chain's distinct visitors worked out and kept"
            ),
            Ok(Err(e)) => warn!(
                error = %format!("{e:#}"),
                "the chain's distinct visitors not kept; tried again in ten minutes"
            ),
            Err(e) => {
                warn!(error = %e, "the chain's distinct visitors not kept; tried again in ten minutes")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
    }
}
