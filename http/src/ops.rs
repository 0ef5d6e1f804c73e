//! What every service serves for the people who run it: `/metrics` ([`crate::metrics`]) and
//! `/ready`, answering 200 only while what the service depends on answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use shop_services::storage::Database;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// One dependency `/ready` asks: its name, and how to ask it.
#[derive(Clone)]
pub(crate) struct Check {
    pub name: &'static str,
    pub probe: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl Check {
    /// The service's own database answers a query.
    pub(crate) fn database(db: &Database) -> Self {
        let db = db.clone();
        Self {
            name: "database",
            probe: Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        }
    }
}

impl Check {
    /// The broker answers with the `ORDER_EVENTS` topic.
    pub(crate) fn broker(probe: shop_services::kafka::BrokerProbe) -> Self {
        Self {
            name: "broker",
            probe: Arc::new(move || {
                let probe = probe.clone();
                Box::pin(async move { probe.check(PEER_TIMEOUT).await.map_err(|e| e.to_string()) })
            }),
        }
    }

    /// The peer service at `base` answers its `/health`.
    pub(crate) fn peer(name: &'static str, base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .build()
            .map_err(|e| format!("the {name} readiness client: {e}"))?;
        let url = format!("{}/health", base.trim_end_matches('/'));
        Ok(Self {
            name,
            probe: Arc::new(move || {
                let (http, url) = (http.clone(), url.clone());
                Box::pin(async move {
                    match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("{url} answered {}", r.status())),
                        Err(e) => Err(format!("{url}: {e}")),
                    }
                })
            }),
        })
    }
}

/// How long a peer or the broker may take to answer a readiness probe (below [`CHECK_TIMEOUT`]).
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// The service's metrics and readiness checks. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Ops {
    pub metrics: Metrics,
    pub checks: Arc<Vec<Check>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Readiness {
    #[schema(example = "READY")]
    status: &'static str,
    /// Each dependency and `up`.
    checks: Vec<CheckResult>,
}

#[derive(Serialize, ToSchema)]
struct CheckResult {
    #[schema(example = "database")]
    name: &'static str,
    #[schema(example = "up")]
    status: String,
}

/// How long `/ready` waits for one dependency.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready: the service's database and, where it uses them, the broker and its peers answer.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Every dependency answers.", body = Readiness),
    (status = 503, response = crate::openapi::Unavailable),
))]
pub(crate) async fn ready(State(ops): State<Ops>) -> Response {
    let answers = futures::future::join_all(ops.checks.iter().map(|check| async move {
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, (check.probe)()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        };
        (check.name, answer)
    }))
    .await;
    let down: Vec<String> =
        answers.iter().filter_map(|(name, a)| a.as_ref().err().map(|e| format!("{name}: {e}"))).collect();
    if !down.is_empty() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", down.join("; ")))
            .into_response();
    }
    let checks = answers.into_iter().map(|(name, _)| CheckResult { name, status: "up".into() }).collect();
    Json(Readiness { status: "READY", checks }).into_response()
}

/// Prometheus text of the service's registry.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The service's figures (Prometheus text format 0.0.4).", body = String, content_type = "text/plain"),
))]
pub(crate) async fn metrics(State(ops): State<Ops>) -> Response {
    crate::metrics::serve(State(ops.metrics)).await
}
