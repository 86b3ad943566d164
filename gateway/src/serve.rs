//! `footfall-gateway serve`: starts its parts, which are siblings that do
//! not know of each other: the embedded broker (`broker`, when enabled),
//! the HTTP API and dashboard (`api`), and the MQTT subscribe → commit →
//! ack loop (`mqtt`). They share the store and the metrics counters.
//!
//! Shutdown order: the MQTT loop commits its batch and sends its acks, then
//! the HTTP server finishes the requests in hand; the store is committed
//! once more before `serve` returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tracing::info;

use crate::config::Config;
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
        config.max_payload_bytes,
        counters.clone(),
        config.http_token.clone(),
    );
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    let result = crate::mqtt::run(&config, store.clone(), counters, shutdown).await;
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    store.commit()?;
    result
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
