//! Prometheus metrics (`gotk_*`), and the `/metrics`, `/healthz` and `/readyz` endpoints.

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

/// Labels of per-object metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// Namespace of the object.
    pub namespace: String,
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Kind of the object.
    pub kind: String,
    /// Condition reason of the failure.
    pub reason: String,
}

/// Reconcile metrics shared by all controllers.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// `gotk_reconcile_duration_seconds{kind,name,namespace}`.
    pub reconcile_duration: Family<ObjectLabels, Histogram>,
    /// `gotk_reconcile_failures_total{kind,reason}`.
    pub reconcile_failures: Family<FailureLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry with Flux's metric names and buckets.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_duration =
            Family::<ObjectLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let reconcile_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "gotk_reconcile_duration_seconds",
            "The duration in seconds of a GitOps Toolkit resource reconciliation.",
            reconcile_duration.clone(),
        );
        registry.register(
            "gotk_reconcile_failures",
            "Failed reconciliations by kind and condition reason.",
            reconcile_failures.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            reconcile_duration,
            reconcile_failures,
        }
    }

    /// Registers a controller's own metric (notification-controller's `gotk_event_*`).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// A histogram with the buckets of Flux's duration metrics.
    pub fn duration_histogram() -> Histogram {
        duration_histogram()
    }

    /// Records how long one reconcile of an object took.
    pub fn observe_duration(&self, labels: ObjectLabels, started: Instant) {
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn count_failure(&self, kind: &str, reason: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Removes the series of a deleted object.
    pub fn forget(&self, labels: &ObjectLabels) {
        self.reconcile_duration.remove(labels);
    }

    /// The text exposition of all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

/// Flux's reconcile-duration buckets: 10 exponential buckets from 10ms to 1800s, with the ends
/// exact (repeated multiplication would leave the top bucket at 1799.9999999999982).
fn duration_histogram() -> Histogram {
    const MIN: f64 = 0.01;
    const MAX: f64 = 1800.0;
    const COUNT: i32 = 10;
    let factor = (MAX / MIN).powf(1.0 / f64::from(COUNT - 1));
    Histogram::new((0..COUNT).map(move |i| if i == COUNT - 1 { MAX } else { MIN * factor.powi(i) }))
}

/// Readiness of the process: set once the controllers have started (or, with leader
/// election, once this replica runs as leader or standby).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves `/metrics` on one address and `/healthz` + `/readyz` on another (they may be equal).
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Clone + 'static,
) -> anyhow::Result<()> {
    let metrics_router = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let health_router = Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let r = readiness.clone();
            async move {
                if r.is_ready() {
                    (StatusCode::OK, "ok").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                }
            }
        }),
    );
    if metrics_addr == health_addr {
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        axum::serve(listener, metrics_router.merge(health_router))
            .with_graceful_shutdown(shutdown)
            .await?;
        return Ok(());
    }
    let ml = tokio::net::TcpListener::bind(metrics_addr).await?;
    let hl = tokio::net::TcpListener::bind(health_addr).await?;
    let (a, b) = tokio::join!(
        axum::serve(ml, metrics_router)
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
        axum::serve(hl, health_router)
            .with_graceful_shutdown(shutdown)
            .into_future()
    );
    a?;
    b?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, resp)
    }

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn probes_report_readiness_and_metrics_use_flux_names() {
        let (metrics_addr, health_addr) = (free_addr(), free_addr());
        let metrics = Metrics::new();
        metrics.observe_duration(
            ObjectLabels {
                kind: "GitRepository".into(),
                name: "app".into(),
                namespace: "ns".into(),
            },
            Instant::now(),
        );
        metrics.count_failure("GitRepository", "AuthenticationFailed");
        let readiness = Readiness::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = futures::FutureExt::shared(async move {
            let _ = rx.await;
        });
        let server = tokio::spawn(serve(metrics_addr, health_addr, metrics, readiness.clone(), stop));
        let mut tries = 0;
        while tokio::net::TcpStream::connect(health_addr).await.is_err() {
            tries += 1;
            assert!(tries < 100, "probe server did not start");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(get(health_addr, "/healthz").await.0, 200);
        assert_eq!(
            get(health_addr, "/readyz").await.0,
            503,
            "not ready before the controllers start"
        );
        readiness.set_ready();
        assert_eq!(get(health_addr, "/readyz").await.0, 200);
        let (code, body) = get(metrics_addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains(
                r#"gotk_reconcile_duration_seconds_count{kind="GitRepository",name="app",namespace="ns"} 1"#
            ),
            "{body}"
        );
        assert!(
            body.contains(
                r#"gotk_reconcile_failures_total{kind="GitRepository",reason="AuthenticationFailed"} 1"#
            ),
            "{body}"
        );
        assert!(
            body.contains("le=\"1800.0\""),
            "Flux's top bucket is 1800s: {body}"
        );
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    }
}
