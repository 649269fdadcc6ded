//! The ways events come in and webhooks are served: the Kubernetes Events watch, the event
//! server (Flux's JSON on `POST /`) and the webhook receiver (`POST /hook/<digest>`).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::{WatchStreamExt, watcher};

use crate::dispatch::{Admission, Dispatcher};
use crate::event::Event;
use crate::receiver::{self, Webhooks};

/// Largest event body accepted (a message is at most 39000 characters).
const MAX_EVENT_BODY: usize = 256 << 10;
/// Largest webhook body accepted (Flux's limit).
const MAX_WEBHOOK_BODY: usize = 3 << 20;

/// When a Kubernetes Event last happened.
fn last_seen(event: &KubeEvent) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.deprecated_last_timestamp.as_ref().map(|t| t.0))
}

/// Watches Kubernetes Events about toolkit objects and dispatches those that happen from now
/// on (the history a fresh watch lists was reported before this process started).
pub async fn watch_events(client: Client, namespace: Option<String>, dispatcher: Arc<Dispatcher>) {
    let started = Timestamp::now();
    let api = driftless_runtime::object::namespaced_or_all::<KubeEvent>(&client, namespace.as_deref());
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    // The occurrence of each Event last dispatched (by uid): a relist of the watch, or an
    // update that is not a new occurrence (no newer `lastObservedTime`), is not sent again.
    let mut dispatched: std::collections::HashMap<String, Timestamp> = std::collections::HashMap::new();
    while let Some(item) = stream.next().await {
        let Ok(kube_event) = item else {
            continue;
        };
        let Some(seen) = last_seen(&kube_event).filter(|t| *t >= started) else {
            continue;
        };
        let uid = kube_event.metadata.uid.clone().unwrap_or_default();
        if dispatched.get(&uid).is_some_and(|previous| *previous >= seen) {
            continue;
        }
        if dispatched.len() > 50_000 {
            // Events live an hour; older occurrences cannot come back.
            let horizon = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
            dispatched.retain(|_, at| *at > horizon);
        }
        dispatched.insert(uid, seen);
        if let Some(event) = Event::from_kubernetes(&kube_event) {
            dispatcher.dispatch(event).await;
        }
    }
}

/// Serves Flux's event API on `listener`: `POST /` with an event's JSON is accepted (202), a
/// duplicate refused with 429 (senders do not retry it), a malformed one with 400.
pub fn events(
    listener: tokio::net::TcpListener,
    dispatcher: Arc<Dispatcher>,
    durations: HttpDurations,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = anyhow::Result<()>> {
    let app = Router::new()
        .route("/", post(receive_event))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BODY))
        .with_state(dispatcher);
    serve(listener, app, durations, shutdown)
}

/// Serves `app` on `listener`, each request's duration observed, until `shutdown`.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    durations: HttpDurations,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(durations, timed));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn receive_event(State(dispatcher): State<Arc<Dispatcher>>, body: Bytes) -> (StatusCode, String) {
    let mut event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "malformed event refused");
            return (StatusCode::BAD_REQUEST, format!("malformed event: {e}"));
        }
    };
    if let Err(e) = event.validate() {
        tracing::warn!(error = %e, "invalid event refused");
        return (StatusCode::BAD_REQUEST, e);
    }
    match dispatcher.dispatch(event).await {
        Admission::Accepted => (StatusCode::ACCEPTED, String::new()),
        Admission::Duplicate => (StatusCode::TOO_MANY_REQUESTS, "duplicate event".into()),
    }
}

/// Serves the Receivers' webhooks on `listener`.
pub fn receivers(
    listener: tokio::net::TcpListener,
    hooks: Arc<Webhooks>,
    durations: HttpDurations,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = anyhow::Result<()>> {
    let app = Router::new()
        .route("/hook/{digest}", post(receive_webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .with_state(hooks);
    serve(listener, app, durations, shutdown)
}

async fn receive_webhook(
    State(hooks): State<Arc<Webhooks>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    match receiver::handle(hooks, uri.path(), &headers, &body).await {
        Ok(message) => (StatusCode::OK, message),
        Err(refusal) => refusal,
    }
}

/// Labels of the HTTP duration metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub code: String,
}

/// `gotk_<prefix>_http_request_duration_seconds{method,code}`, as Flux's servers report.
pub type HttpDurations =
    prometheus_client::metrics::family::Family<HttpLabels, prometheus_client::metrics::histogram::Histogram>;

/// Registers the duration family of one server.
pub fn http_durations(metrics: &driftless_runtime::metrics::Metrics, prefix: &str) -> HttpDurations {
    let family = HttpDurations::new_with_constructor(
        driftless_runtime::metrics::Metrics::duration_histogram
            as fn() -> prometheus_client::metrics::histogram::Histogram,
    );
    metrics.register(
        &format!("gotk_{prefix}_http_request_duration_seconds"),
        "The latency of the HTTP requests",
        family.clone(),
    );
    family
}

/// Observes each request's duration by method and status code.
async fn timed(
    State(durations): State<HttpDurations>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    // A bounded label: any other method would make a new series.
    let method = match request.method().as_str() {
        "POST" => "POST",
        "GET" => "GET",
        _ => "other",
    }
    .to_string();
    let response = next.run(request).await;
    durations
        .get_or_create(&HttpLabels {
            method,
            code: response.status().as_u16().to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}
