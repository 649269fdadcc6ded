//! Prometheus metrics: Flux's own (`gotk_*`) and controller-runtime's per-controller series that
//! Flux's dashboards read (`controller_runtime_*`), and the `/metrics`, `/healthz` and `/readyz`
//! endpoints.

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
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

/// controller-runtime's label: the controller, named by its kind in lower case
/// (`kustomization`, `gitrepository`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// controller-runtime's outcome label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    /// `success`, `error`, `requeue` or `requeue_after`.
    pub result: String,
}

/// How a reconcile ended, as controller-runtime counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, nothing to schedule (Flux's result for a stalled object).
    Success,
    /// Failed, retried (Flux returns the error).
    Error,
    /// Done, scheduled again after a while (the interval, a dependency's wait).
    RequeueAfter,
}

/// Reconcile metrics shared by all controllers.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// `gotk_reconcile_duration_seconds{kind,name,namespace}`.
    pub reconcile_duration: Family<ObjectLabels, Histogram>,
    /// `gotk_reconcile_failures_total{kind,reason}`.
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// `controller_runtime_reconcile_total{controller,result}`.
    reconcile_total: Family<ResultLabels, Counter>,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    reconcile_errors: Family<ControllerLabels, Counter>,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    reconcile_time: Family<ControllerLabels, Histogram>,
    /// `controller_runtime_max_concurrent_reconciles{controller}`.
    max_concurrent: Family<ControllerLabels, Gauge>,
    /// `controller_runtime_active_workers{controller}`.
    active_workers: Family<ControllerLabels, Gauge>,
}

/// One reconcile in progress: an active worker until dropped, then its time is recorded.
pub struct Worker {
    metrics: Metrics,
    labels: ControllerLabels,
    started: Instant,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.metrics.active_workers.get_or_create(&self.labels).dec();
        self.metrics
            .reconcile_time
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
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
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_time = Family::<ControllerLabels, Histogram>::new_with_constructor(
            reconcile_time_histogram as fn() -> Histogram,
        );
        let max_concurrent = Family::<ControllerLabels, Gauge>::default();
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            reconcile_duration,
            reconcile_failures,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            max_concurrent,
            active_workers,
        }
    }

    /// Announces a controller and how many reconciles it runs at once.
    pub fn controller_started(&self, controller: &str, concurrency: u16) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.max_concurrent
            .get_or_create(&labels)
            .set(i64::from(concurrency));
        // The series exists (at 0) before the first reconcile, as controller-runtime's does.
        self.active_workers.get_or_create(&labels).set(0);
    }

    /// A reconcile starts: an active worker until the guard is dropped.
    pub fn worker(&self, controller: &str) -> Worker {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.active_workers.get_or_create(&labels).inc();
        Worker {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
        }
    }

    /// Counts how a reconcile ended.
    pub fn count_outcome(&self, controller: &str, outcome: Outcome) {
        let result = match outcome {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::RequeueAfter => "requeue_after",
        };
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .inc();
        if outcome == Outcome::Error {
            self.reconcile_errors
                .get_or_create(&ControllerLabels {
                    controller: controller.to_string(),
                })
                .inc();
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

/// controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`.
fn reconcile_time_histogram() -> Histogram {
    const BUCKETS: [f64; 40] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
        1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0,
        40.0, 50.0, 60.0,
    ];
    Histogram::new(BUCKETS)
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

    /// The series Flux's dashboards read, with controller-runtime's names and labels.
    #[test]
    fn controller_runtime_series_have_their_names_and_labels() {
        let metrics = Metrics::new();
        metrics.controller_started("kustomization", 4);
        {
            let _worker = metrics.worker("kustomization");
            assert!(
                metrics
                    .encode()
                    .contains(r#"controller_runtime_active_workers{controller="kustomization"} 1"#)
            );
        }
        metrics.count_outcome("kustomization", Outcome::RequeueAfter);
        metrics.count_outcome("kustomization", Outcome::Error);
        let text = metrics.encode();
        for series in [
            r#"controller_runtime_max_concurrent_reconciles{controller="kustomization"} 4"#,
            r#"controller_runtime_active_workers{controller="kustomization"} 0"#,
            r#"controller_runtime_reconcile_total{controller="kustomization",result="requeue_after"} 1"#,
            r#"controller_runtime_reconcile_total{controller="kustomization",result="error"} 1"#,
            r#"controller_runtime_reconcile_errors_total{controller="kustomization"} 1"#,
            r#"controller_runtime_reconcile_time_seconds_count{controller="kustomization"} 1"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="60.0",controller="kustomization"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
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
