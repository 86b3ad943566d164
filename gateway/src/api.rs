//! The gateway's HTTP API, served by `footfall-gateway serve` on
//! `[http] listen` (127.0.0.1:8080 by default). It is how the `report`,
//! `stores` and `ingest` commands reach a running gateway, whose store is
//! locked by its process. Rows are the same objects the commands print
//! with `--format json`, one per line.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query as Params, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::ingest::ingest_jsonl;
use crate::query::{self, By};
use crate::serve::Tally;
use crate::store::ReportStore;

#[derive(Clone)]
struct AppState {
    store: Arc<dyn ReportStore>,
    max_payload: usize,
}

pub fn router(store: Arc<dyn ReportStore>, max_payload: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/report", get(report))
        .route("/api/v1/stores", get(stores))
        .route("/api/v1/ingest", post(ingest))
        .route(
            "/api/v1/campaigns",
            get(campaigns_list).post(campaigns_import),
        )
        .route("/api/v1/campaign-report", get(campaign_report))
        .with_state(AppState { store, max_payload })
}

#[derive(Debug, Deserialize)]
pub struct ReportParams {
    pub by: Option<String>,
    pub store: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

fn ndjson(rows: Vec<serde_json::Map<String, serde_json::Value>>) -> Response {
    let body = query::render(&rows, query::Format::Json);
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

async fn report(State(s): State<AppState>, Params(p): Params<ReportParams>) -> Response {
    let by = match p.by.as_deref().unwrap_or("day") {
        "window" => By::Window,
        "hour" => By::Hour,
        "day" => By::Day,
        "week" => By::Week,
        other => return bad_request(format!("by={other}: expected window, hour, day or week")),
    };
    let q = match query::query(p.store, p.from.as_deref(), p.to.as_deref()) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let rows =
        tokio::task::spawn_blocking(move || query::report_rows(s.store.as_ref(), by, &q)).await;
    match rows {
        Ok(Ok(rows)) => ndjson(rows),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn stores(State(s): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || query::stores_rows(s.store.as_ref())).await {
        Ok(Ok(rows)) => ndjson(rows),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// Report lines (agents' `--emit` files) through the same validation and
/// idempotency as MQTT; committed before the answer.
async fn ingest(State(s): State<AppState>, body: Bytes) -> Response {
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        ingest_jsonl(s.store.as_ref(), "http", &body, s.max_payload, &mut tally)?;
        s.store.commit()?;
        Ok(tally)
    })
    .await;
    match result {
        Ok(Ok(t)) => Json(serde_json::json!({
            "inserted": t.inserted, "duplicates": t.duplicates, "conflicts": t.conflicts, "rejected": t.dead,
        }))
        .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn campaigns_list(State(s): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || s.store.campaigns()).await {
        Ok(Ok(list)) => {
            let rows = list
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok()?.as_object().cloned())
                .collect();
            ndjson(rows)
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn campaigns_import(State(s): State<AppState>, body: Bytes) -> Response {
    let text = match String::from_utf8(body.to_vec()) {
        Ok(t) => t,
        Err(_) => return bad_request("the CSV is not UTF-8"),
    };
    match tokio::task::spawn_blocking(move || {
        crate::campaigns::import(s.store.as_ref(), &text, "http")
    })
    .await
    {
        Ok(Ok(n)) => Json(serde_json::json!({ "imported": n })).into_response(),
        Ok(Err(e)) => bad_request(e),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CampaignParams {
    pub campaign: Option<String>,
}

async fn campaign_report(State(s): State<AppState>, Params(p): Params<CampaignParams>) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        crate::campaigns::reports(s.store.as_ref(), p.campaign.as_deref())
    })
    .await;
    match result {
        Ok(Ok(reports)) => ndjson(
            reports
                .into_iter()
                .filter_map(|r| r.as_object().cloned())
                .collect(),
        ),
        Ok(Err(e)) => bad_request(e),
        Err(e) => internal(e),
    }
}
