//! The gateway's HTTP API and dashboard, served by `footfall-gateway serve`
//! on `[http] listen` (127.0.0.1:8080 by default). It is how the `report`,
//! `stores` and `ingest` commands reach a running gateway, whose store is
//! locked by its process. Rows are the same objects the commands print
//! with `--format json`, one per line.
//!
//! Invariants: handlers only parse parameters and call the query,
//! campaign and accept layers on a blocking thread; `ingest` commits
//! before it answers. With a token, every `/api/` request needs it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query as Params, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::accept::accept_jsonl;
use crate::metrics::Counters;
use crate::query::{self, By};
use crate::render::{self, Format};
use crate::store::ReportStore;

#[derive(Clone)]
struct AppState {
    store: Arc<dyn ReportStore>,
    max_payload: usize,
    counters: Arc<Counters>,
    /// `[privacy] min_count`: counts below it are withheld.
    min_count: Option<u64>,
}

/// What the API needs from the config besides the store.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub max_payload: usize,
    pub token: Option<String>,
    pub min_count: Option<u64>,
}

/// The API and the dashboard. With `token`, every `/api/` request needs
/// `Authorization: Bearer <token>`; the dashboard's pages and `/healthz`
/// do not (the dashboard asks for the token and sends it).
pub fn router(store: Arc<dyn ReportStore>, counters: Arc<Counters>, settings: Settings) -> Router {
    let Settings {
        max_payload,
        token,
        min_count,
    } = settings;
    let api = Router::new()
        .route("/api/v1/report", get(report))
        .route("/api/v1/footfall", get(report))
        .route("/api/v1/dwell", get(dwell))
        .route("/api/v1/stores", get(stores))
        .route("/api/v1/ingest", post(ingest))
        .route(
            "/api/v1/campaigns",
            get(campaigns_list).post(campaigns_import),
        )
        .route("/api/v1/campaign-report", get(campaign_report))
        .route("/api/v1/purge", post(purge))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    if let Some(t) = token {
                        let ok = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| {
                                v.strip_prefix("Bearer ")
                                    .is_some_and(|given| given.trim() == t)
                            });
                        if !ok {
                            return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n")
                                .into_response();
                        }
                    }
                    next.run(req).await
                }
            },
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(crate::web::router())
        .with_state(AppState {
            store,
            max_payload,
            counters,
            min_count,
        })
}

async fn metrics(State(s): State<AppState>) -> Response {
    let store = s.store.clone();
    let agents = tokio::task::spawn_blocking(move || store.agents().map(|a| a.len())).await;
    // A store that cannot be read leaves the gauge out: a 0 would say no
    // agent has reported.
    let agents = match agents {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: agents not counted");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: agents not counted");
            None
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.counters.render(agents),
    )
        .into_response()
}

/// Summed dwell histogram of a store (or all) over a period.
async fn dwell(State(s): State<AppState>, Params(p): Params<ReportParams>) -> Response {
    let q = match query::query(p.store, p.from.as_deref(), p.to.as_deref()) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    match tokio::task::spawn_blocking(move || query::dwell(s.store.as_ref(), &q)).await {
        Ok(Ok(v)) => Json(query::suppress_dwell(&v, s.min_count)).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReportParams {
    /// window, hour, day or week; `/api/v1/footfall` calls it `interval`.
    #[serde(alias = "interval")]
    pub by: Option<String>,
    pub store: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

fn ndjson(rows: Vec<serde_json::Map<String, serde_json::Value>>) -> Response {
    let body = render::render(&rows, Format::Json);
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

async fn report(State(s): State<AppState>, Params(p): Params<ReportParams>) -> Response {
    let by = match By::parse(p.by.as_deref().unwrap_or("day")) {
        Ok(by) => by,
        Err(e) => return bad_request(e),
    };
    let q = match query::query(p.store, p.from.as_deref(), p.to.as_deref())
        .and_then(|q| query::check(by, &q).map(|()| q))
    {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let min = s.min_count;
    let rows =
        tokio::task::spawn_blocking(move || query::report_rows(s.store.as_ref(), by, &q)).await;
    match rows {
        Ok(Ok(mut rows)) => {
            query::suppress(&mut rows, min);
            ndjson(rows)
        }
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

#[derive(Debug, Deserialize)]
pub struct PurgeParams {
    pub store: Option<String>,
    pub before: Option<String>,
}

/// `purge`: a store that closed, or everything before a date; answers
/// what it deleted.
async fn purge(State(s): State<AppState>, Params(p): Params<PurgeParams>) -> Response {
    let purge = match crate::retention::purge_of(p.store, p.before.as_deref()) {
        Ok(purge) => purge,
        Err(e) => return bad_request(e),
    };
    match tokio::task::spawn_blocking(move || s.store.purge(&purge)).await {
        Ok(Ok(done)) => Json(done).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// Report lines (agents' `--emit` files) through the same validation and
/// idempotency as MQTT; committed before the answer.
async fn ingest(State(s): State<AppState>, body: Bytes) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        accept_jsonl(s.store.as_ref(), "http", &body, s.max_payload)
    })
    .await;
    match result {
        Ok(Ok(t)) => Json(t).into_response(),
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
        let n = crate::campaigns::import(s.store.as_ref(), &text, "http")?;
        // SQL tools see the new campaigns' reports now, not at the next
        // refresh; a failure here leaves them to it.
        if let Err(e) = crate::campaigns::publish(s.store.as_ref(), s.min_count) {
            tracing::warn!(error = %format!("{e:#}"), "campaign reports for SQL tools not kept; kept at the next refresh");
        }
        anyhow::Ok(n)
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
    let min = s.min_count;
    let result = tokio::task::spawn_blocking(move || {
        crate::campaigns::reports(s.store.as_ref(), p.campaign.as_deref())
    })
    .await;
    match result {
        Ok(Ok(mut reports)) => {
            crate::campaigns::suppress(&mut reports, min);
            let mut body = String::new();
            for r in &reports {
                body += &serde_json::to_string(r).expect("reports serialize");
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
        Ok(Err(e)) => bad_request(e),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(token: Option<&str>) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ReportStore> =
            Arc::new(crate::store::SledStore::open(&dir.path().join("g"), 1 << 20).unwrap());
        (
            dir,
            router(
                store,
                Default::default(),
                Settings {
                    max_payload: 65_536,
                    token: token.map(String::from),
                    min_count: None,
                },
            ),
        )
    }

    async fn status(app: &Router, path: &str, bearer: Option<&str>) -> StatusCode {
        let mut req = Request::get(path);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn the_api_needs_the_token_when_one_is_set() {
        let (_dir, app) = app(Some("0123456789abcdef-secret"));
        assert_eq!(
            status(&app, "/api/v1/stores", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, "/api/v1/stores", Some("wrong")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, "/api/v1/stores", Some("0123456789abcdef-secret")).await,
            StatusCode::OK
        );
        // The page, its assets and the health check stay open.
        assert_eq!(status(&app, "/", None).await, StatusCode::OK);
        assert_eq!(status(&app, "/assets/app.js", None).await, StatusCode::OK);
        assert_eq!(status(&app, "/healthz", None).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn without_a_token_the_api_is_open_and_bad_arguments_are_400() {
        let (_dir, app) = app(None);
        assert_eq!(
            status(&app, "/api/v1/report?by=day", None).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&app, "/api/v1/report?by=fortnight", None).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&app, "/api/v1/footfall?interval=hour&from=yesterday", None).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&app, "/api/v1/footfall?interval=hour&store=*", None).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&app, "/api/v1/footfall?interval=day&store=*", None).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&app, "/api/v1/campaign-report?campaign=nope", None).await,
            StatusCode::BAD_REQUEST
        );
        let resp = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("footfall_gateway_reports_inserted_total 0"),
            "{body}"
        );
        assert!(body.contains("footfall_gateway_agents 0"), "{body}");
    }
}
