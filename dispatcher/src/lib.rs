//! The dispatcher: tells a device which connector to hold its connection to.
//!
//! `GET /v1/connector?device_id=<id>` answers the owner of the device on the consistent-hash
//! ring of live connectors (see `ringpush_ring`), so that any dispatcher, built at any time,
//! gives every device the same answer as every connector computes for itself. The ring comes
//! from a watch channel fed by the membership watcher (`ringpush_store::membership`); the
//! dispatcher never polls connectors.
//!
//! Also serves `/healthz` (the process is up) and `/readyz` (at least one connector is live).
//!
//! Does not own: membership, leases, or anything about the connection itself.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ringpush_protocol::DeviceId;
use ringpush_ring::Ring;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The answer to a connector lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorAssignment {
    /// The WebSocket URL to connect to.
    pub url: String,
    /// The connector's id on the ring.
    pub connector_id: String,
    /// The ring version the answer was computed on.
    pub ring_version: u64,
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    device_id: Option<String>,
}

/// The dispatcher's HTTP API over the ring published in `ring`.
pub fn router(ring: watch::Receiver<Arc<Ring>>) -> Router {
    Router::new()
        .route("/v1/connector", get(lookup))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ring)
}

/// Serves [`router`] on `listener` until `shutdown` fires, then finishes the requests under way.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ring: watch::Receiver<Arc<Ring>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ring))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn lookup(
    State(ring): State<watch::Receiver<Arc<Ring>>>,
    Query(query): Query<LookupQuery>,
) -> Response {
    let Some(text) = query.device_id else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_device_id",
            "the query parameter device_id is required".into(),
        );
    };
    let device: DeviceId = match text.parse() {
        Ok(device) => device,
        Err(problem) => {
            metrics::counter!("ringpush_dispatcher_lookups_total", "outcome" => "bad_request")
                .increment(1);
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_device_id",
                problem.to_string(),
            );
        }
    };
    let ring = ring.borrow().clone();
    let Some(owner) = ring.owner(device) else {
        metrics::counter!("ringpush_dispatcher_lookups_total", "outcome" => "no_connector")
            .increment(1);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_connectors",
            "no connector is live; retry with backoff".into(),
        );
    };
    metrics::counter!("ringpush_dispatcher_lookups_total", "outcome" => "ok").increment(1);
    Json(ConnectorAssignment {
        url: owner.device_url.clone(),
        connector_id: owner.id.clone(),
        ring_version: ring.version(),
    })
    .into_response()
}

async fn ready(State(ring): State<watch::Receiver<Arc<Ring>>>) -> Response {
    let members = ring.borrow().members().len();
    if members == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_connectors",
            "no connector is live".into(),
        );
    }
    format!("ready: {members} connectors\n").into_response()
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use ringpush_ring::Member;
    use tower::ServiceExt;

    fn ring_of(ids: &[&str]) -> Arc<Ring> {
        let members = ids
            .iter()
            .map(|id| Member {
                id: (*id).to_owned(),
                device_url: format!("ws://{id}/v1/connect"),
                grpc_url: format!("http://{id}"),
            })
            .collect();
        Arc::new(Ring::new(members, 64))
    }

    async fn get(ring: Arc<Ring>, uri: &str) -> (StatusCode, serde_json::Value) {
        let (_sender, receiver) = watch::channel(ring);
        let response = router(receiver)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    #[tokio::test]
    async fn answers_the_ring_owner() {
        let ring = ring_of(&["a", "b", "c"]);
        let device = DeviceId(42);
        let owner = ring.owner(device).unwrap().clone();
        let (status, body) = get(ring.clone(), &format!("/v1/connector?device_id={device}")).await;
        assert_eq!(status, StatusCode::OK);
        let answer: ConnectorAssignment = serde_json::from_value(body).unwrap();
        assert_eq!(answer.url, owner.device_url);
        assert_eq!(answer.connector_id, owner.id);
        assert_eq!(answer.ring_version, ring.version());
    }

    #[tokio::test]
    async fn refuses_bad_ids_and_an_empty_ring_clearly() {
        let (status, body) = get(ring_of(&["a"]), "/v1/connector?device_id=nothex").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_device_id");
        let (status, body) = get(ring_of(&["a"]), "/v1/connector").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "missing_device_id");
        let empty = ring_of(&[]);
        let (status, body) = get(
            empty.clone(),
            &format!("/v1/connector?device_id={}", DeviceId(1)),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "no_connectors");
        let (status, _) = get(empty, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
