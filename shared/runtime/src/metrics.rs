//! Prometheus metrics: Flux's own (`gotk_*`), controller-runtime's per-controller series and
//! its workqueue's (`controller_runtime_*`, `workqueue_*`) that Flux's dashboards read, and the
//! `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! kube-runtime's scheduler stands where client-go's workqueue does, and keeps its queue to
//! itself; the `workqueue_*` series are kept from what goes in (watch events, triggers,
//! requeues when they fall due) and what comes out (a reconcile starting), which is what the
//! workqueue counts: an object already waiting is one item, a requeue enters the queue when it
//! falls due, an error's retry is a retry.

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
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

/// controller-runtime's workqueue labels: the queue's name and its controller, both the
/// controller's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub name: String,
    pub controller: String,
}

impl QueueLabels {
    fn of(controller: &str) -> Self {
        Self {
            name: controller.to_string(),
            controller: controller.to_string(),
        }
    }
}

/// `workqueue_depth`'s labels: a queue without priorities has an empty `priority`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    pub name: String,
    pub controller: String,
    pub priority: String,
}

impl DepthLabels {
    fn of(controller: &str) -> Self {
        Self {
            name: controller.to_string(),
            controller: controller.to_string(),
            priority: String::new(),
        }
    }
}

/// What the workqueue series are kept from: per controller and object key (`namespace/name`).
#[derive(Default)]
struct QueueState {
    /// Objects waiting for a worker, since when.
    waiting: HashMap<(String, String), Instant>,
    /// Requeues scheduled, and when they fall due.
    scheduled: HashMap<(String, String), Instant>,
    /// Reconciles running, by worker id: the controller and since when.
    running: HashMap<u64, (String, Instant)>,
    /// Controllers started (their series exist at 0 before any work).
    controllers: Vec<String>,
    next_worker: u64,
}

/// The workqueue series, with controller-runtime's names, labels and buckets.
#[derive(Clone)]
struct QueueMetrics {
    state: Arc<Mutex<QueueState>>,
    depth: Family<DepthLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
    queue_duration: Family<QueueLabels, Histogram>,
    work_duration: Family<QueueLabels, Histogram>,
    unfinished: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    longest_running: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    retries: Family<QueueLabels, Counter>,
}

impl QueueMetrics {
    fn register(registry: &mut Registry) -> Self {
        let queue = Self {
            state: Arc::default(),
            depth: Family::default(),
            adds: Family::default(),
            queue_duration: Family::new_with_constructor(workqueue_histogram as fn() -> Histogram),
            work_duration: Family::new_with_constructor(workqueue_histogram as fn() -> Histogram),
            unfinished: Family::default(),
            longest_running: Family::default(),
            retries: Family::default(),
        };
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue by workqueue and priority",
            queue.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            queue.adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            queue.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            queue.work_duration.clone(),
        );
        registry.register(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by \
             work_duration. Large values indicate stuck threads. One can deduce the number of stuck \
             threads by observing the rate at which this increases",
            queue.unfinished.clone(),
        );
        registry.register(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            queue.longest_running.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            queue.retries.clone(),
        );
        queue
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, controller: &str) {
        let mut state = self.state();
        if !state.controllers.iter().any(|c| c == controller) {
            state.controllers.push(controller.to_string());
        }
        drop(state);
        self.depth.get_or_create(&DepthLabels::of(controller)).set(0);
        let labels = QueueLabels::of(controller);
        self.adds.get_or_create(&labels).inc_by(0);
        self.retries.get_or_create(&labels).inc_by(0);
    }

    fn queued(&self, controller: &str, key: String) {
        let mut state = self.state();
        let entry = (controller.to_string(), key);
        if state.waiting.contains_key(&entry) {
            return;
        }
        state.waiting.insert(entry, Instant::now());
        drop(state);
        self.adds.get_or_create(&QueueLabels::of(controller)).inc();
        self.depth.get_or_create(&DepthLabels::of(controller)).inc();
    }

    fn scheduled(&self, controller: &str, key: String, after: Duration) {
        self.state()
            .scheduled
            .insert((controller.to_string(), key), Instant::now() + after);
    }

    fn forget(&self, controller: &str, key: String) {
        let mut state = self.state();
        let entry = (controller.to_string(), key);
        state.scheduled.remove(&entry);
        if state.waiting.remove(&entry).is_some() {
            self.depth.get_or_create(&DepthLabels::of(controller)).dec();
        }
    }

    /// An object leaves the queue for a worker; returns the worker's id.
    fn dequeued(&self, controller: &str, key: String) -> u64 {
        let now = Instant::now();
        let mut state = self.state();
        let entry = (controller.to_string(), key);
        let due = state.scheduled.remove(&entry);
        let since = match state.waiting.remove(&entry) {
            Some(since) => {
                self.depth.get_or_create(&DepthLabels::of(controller)).dec();
                since
            }
            // Not seen going in: a requeue that fell due (or the controller's own retry).
            None => {
                self.adds.get_or_create(&QueueLabels::of(controller)).inc();
                due.map_or(now, |due| due.min(now))
            }
        };
        let id = state.next_worker;
        state.next_worker += 1;
        state.running.insert(id, (controller.to_string(), now));
        drop(state);
        self.queue_duration
            .get_or_create(&QueueLabels::of(controller))
            .observe(now.duration_since(since).as_secs_f64());
        id
    }

    fn done(&self, controller: &str, worker: u64, took: Duration) {
        self.state().running.remove(&worker);
        self.work_duration
            .get_or_create(&QueueLabels::of(controller))
            .observe(took.as_secs_f64());
    }

    /// Brings the gauges of work in progress up to now, as client-go's queue does every 500 ms.
    fn refresh(&self) {
        let now = Instant::now();
        let state = self.state();
        for controller in &state.controllers {
            let running = state
                .running
                .values()
                .filter(|(c, _)| c == controller)
                .map(|(_, since)| now.duration_since(*since).as_secs_f64());
            let (total, longest) = running.fold((0.0, 0.0f64), |(t, l), s| (t + s, l.max(s)));
            let labels = QueueLabels::of(controller);
            self.unfinished.get_or_create(&labels).set(total);
            self.longest_running.get_or_create(&labels).set(longest);
        }
    }
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
    /// `workqueue_*{name,controller}`.
    queue: QueueMetrics,
}

/// One reconcile in progress: an active worker until dropped, then its time is recorded.
pub struct Worker {
    metrics: Metrics,
    labels: ControllerLabels,
    id: u64,
    started: Instant,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.metrics.active_workers.get_or_create(&self.labels).dec();
        self.metrics
            .reconcile_time
            .get_or_create(&self.labels)
            .observe(took.as_secs_f64());
        self.metrics.queue.done(&self.labels.controller, self.id, took);
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
            "The duration in seconds of a GitOps Toolkit resource reconciliation",
            reconcile_duration.clone(),
        );
        registry.register(
            "gotk_reconcile_failures",
            "Failed reconciliations by kind and condition reason",
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
        let queue = QueueMetrics::register(&mut registry);
        Self {
            queue,
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
        self.queue.started(controller);
    }

    /// An object (`namespace/name`) is queued for a reconcile: a watch event or a trigger.
    pub fn queued(&self, controller: &str, key: String) {
        self.queue.queued(controller, key);
    }

    /// A reconcile of the object is scheduled `after` from now (its interval, a retry).
    pub fn scheduled(&self, controller: &str, key: String, after: Duration) {
        self.queue.scheduled(controller, key, after);
    }

    /// The object is gone: nothing of it stays queued.
    pub fn dequeue_forgotten(&self, controller: &str, key: String) {
        self.queue.forget(controller, key);
    }

    /// A reconcile of the object starts: an active worker until the guard is dropped.
    pub fn worker(&self, controller: &str, key: String) -> Worker {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        let id = self.queue.dequeued(controller, key);
        self.active_workers.get_or_create(&labels).inc();
        Worker {
            metrics: self.clone(),
            labels,
            id,
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
            // controller-runtime requeues an error rate-limited: the workqueue counts a retry.
            self.queue
                .retries
                .get_or_create(&QueueLabels::of(controller))
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
        self.queue.refresh();
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

/// client-go's workqueue buckets: exponential from 10 ns by 10, twelve of them.
fn workqueue_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-8, 10.0, 12,
    ))
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
            let _worker = metrics.worker("kustomization", "ns/app".into());
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

    /// The workqueue series: an object queued twice before a worker takes it is one add, a
    /// requeue that falls due is an add, an error is a retry, work in progress is measured.
    #[test]
    fn workqueue_series_count_as_client_go_does() {
        let metrics = Metrics::new();
        metrics.controller_started("gitrepository", 2);
        let text = metrics.encode();
        for series in [
            r#"workqueue_depth{name="gitrepository",controller="gitrepository",priority=""} 0"#,
            r#"workqueue_adds_total{name="gitrepository",controller="gitrepository"} 0"#,
            r#"workqueue_retries_total{name="gitrepository",controller="gitrepository"} 0"#,
            r#"workqueue_unfinished_work_seconds{name="gitrepository",controller="gitrepository"} 0.0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        metrics.queued("gitrepository", "ns/a".into());
        metrics.queued("gitrepository", "ns/a".into());
        metrics.queued("gitrepository", "ns/b".into());
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"workqueue_depth{name="gitrepository",controller="gitrepository",priority=""} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"workqueue_adds_total{name="gitrepository",controller="gitrepository"} 2"#),
            "{text}"
        );
        let worker = metrics.worker("gitrepository", "ns/a".into());
        std::thread::sleep(Duration::from_millis(5));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"workqueue_depth{name="gitrepository",controller="gitrepository",priority=""} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("workqueue_longest_running_processor_seconds{name=\"gitrepository\",controller=\"gitrepository\"} 0.0\n"), "{text}");
        metrics.count_outcome("gitrepository", Outcome::Error);
        metrics.scheduled("gitrepository", "ns/a".into(), Duration::ZERO);
        drop(worker);
        // The retry falls due and starts: one more add, and the queue is left with `ns/b`.
        drop(metrics.worker("gitrepository", "ns/a".into()));
        metrics.dequeue_forgotten("gitrepository", "ns/b".into());
        let text = metrics.encode();
        for series in [
            r#"workqueue_depth{name="gitrepository",controller="gitrepository",priority=""} 0"#,
            r#"workqueue_adds_total{name="gitrepository",controller="gitrepository"} 3"#,
            r#"workqueue_retries_total{name="gitrepository",controller="gitrepository"} 1"#,
            r#"workqueue_queue_duration_seconds_count{name="gitrepository",controller="gitrepository"} 2"#,
            r#"workqueue_work_duration_seconds_count{name="gitrepository",controller="gitrepository"} 2"#,
            r#"workqueue_longest_running_processor_seconds{name="gitrepository",controller="gitrepository"} 0.0"#,
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
