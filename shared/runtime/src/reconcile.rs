//! The reconcile framework every controller runs its kinds through.
//!
//! ```text
//! watch ─▶ predicate (generation ⊕ finalizers ⊕ requestedAt ⊕ deletion) ─▶ reconcile
//!   reconcile = finalizer gate ─┬─ deleting ─▶ Reconciler::cleanup ─▶ remove finalizer
//!                               └─ apply ─▶ suspend gate ─▶ progress ─▶ Reconciler::apply ─▶ finish
//! ```
//!
//! A kind's [`Reconciler::apply`] runs its ordered list of steps and either returns a
//! [`Success`] (the Ready summary) or a classified [`ReconcileError`]. It never writes status to
//! the apiserver itself except through [`ReconcileContext::progress`]. [`finish`] is the single
//! place that turns the outcome into conditions, `observedGeneration`,
//! `lastHandledReconcileAt`, events, metrics and the requeue:
//!
//! | outcome | Ready | Reconciling | Stalled | observedGeneration | event | requeue |
//! |---|---|---|---|---|---|---|
//! | Success | True | removed | removed | set | Normal on recovery | interval ± jitter |
//! | Stalled | False | removed | True | set | Warning | interval (fallback only) |
//! | Waiting | False | True (Progressing) | removed | kept | Normal | the error's delay |
//! | Transient | False | True (ProgressingWithRetry) | removed | kept | Warning | retryInterval or backoff |

use crate::{
    conditions::{self, Status},
    events::{EventType, Recorder},
    metrics::{Metrics, ObjectLabels, Outcome},
    object::ToolkitObject,
    status::StatusWriter,
};
use driftless_api::meta::{REQUESTED_AT_ANNOTATION, ReconcileStatus, condition_types, reasons};
use futures::{FutureExt, StreamExt};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerConfig},
        finalizer::{Event as FinalizerEvent, finalizer},
        reflector, watcher,
    },
};
use std::{
    collections::HashMap,
    future::Future,
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How an error affects the object, decided where the error is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Needs a change to the spec (or a referenced object the user fixes): no retries.
    Stalled,
    /// Waiting for something expected to happen (a dependency, an artifact): requeue after the
    /// delay, not counted as a failure.
    Waiting(Duration),
    /// Anything that may succeed on retry: exponential backoff or `spec.retryInterval`.
    Transient,
}

/// A classified reconcile failure with the condition reason it reports.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ReconcileError {
    /// What to do about it.
    pub class: ErrorClass,
    /// Condition reason (Flux's reasons, e.g. `AuthenticationFailed`).
    pub reason: String,
    /// Human-readable message for the condition and the event.
    pub message: String,
    /// Reason of the Stalled condition when it differs from Ready's (a HelmRelease is Ready
    /// False with `UpgradeFailed` and Stalled with `RetriesExceeded`).
    pub stalled_reason: Option<String>,
    /// The reconciler published this failure's event itself (with metadata only it knows, a
    /// Helm release's chart and app version): `finish` sets the conditions without a second one.
    pub reported: bool,
}

impl ReconcileError {
    /// An error that needs user action.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Stalled,
            reason: reason.into(),
            message: message.into(),
            stalled_reason: None,
            reported: false,
        }
    }
    /// The same error, its event published already by the reconciler.
    pub fn reported(self) -> Self {
        Self {
            reported: true,
            ..self
        }
    }
    /// A wait for something expected.
    pub fn waiting(reason: &str, message: impl Into<String>, after: Duration) -> Self {
        Self {
            class: ErrorClass::Waiting(after),
            reason: reason.into(),
            message: message.into(),
            stalled_reason: None,
            reported: false,
        }
    }
    /// A stall whose Stalled condition has its own reason.
    pub fn stalled_because(reason: &str, stalled_reason: &str, message: impl Into<String>) -> Self {
        Self {
            stalled_reason: Some(stalled_reason.into()),
            ..Self::stalled(reason, message)
        }
    }
    /// A failure worth retrying.
    pub fn transient(reason: &str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            reason: reason.into(),
            message: message.into(),
            stalled_reason: None,
            reported: false,
        }
    }
}

/// A successful reconcile: the Ready=True summary, plus what its events carry.
#[derive(Debug, Clone)]
pub struct Success {
    /// Ready reason (e.g. `Succeeded`, `ReconciliationSucceeded`).
    pub reason: String,
    /// Ready message (e.g. `stored artifact for revision 'main@sha1:…'`).
    pub message: String,
    /// Revision, put on events as `<group>/revision`.
    pub revision: Option<String>,
    /// More metadata for the success event (`commit_status: update`), keys in the kind's group.
    pub metadata: Vec<(String, String)>,
    /// When to run again, if not after the interval (an ImageRepository whose next scan is due
    /// before a whole interval has passed).
    pub requeue_after: Option<Duration>,
}

impl Success {
    /// A success with the given reason and message.
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            revision: None,
            metadata: Vec::new(),
            requeue_after: None,
        }
    }

    /// Runs again after `after` instead of the interval.
    #[must_use]
    pub fn with_requeue_after(mut self, after: Duration) -> Self {
        self.requeue_after = Some(after);
        self
    }
    /// Adds metadata to the success event.
    #[must_use]
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Adds the revision for events.
    #[must_use]
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = Some(revision.into());
        self
    }
}

/// One kind's reconcile logic: its ordered list of steps and its cleanup.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind reconciled.
    type Kind: ToolkitObject;

    /// Runs the steps against `obj`, recording their conditions in `status`.
    fn apply(
        &self,
        obj: &Self::Kind,
        status: &mut <Self::Kind as ToolkitObject>::Status,
        ctx: &ReconcileContext<Self::Kind>,
    ) -> impl Future<Output = Result<Success, ReconcileError>> + Send;

    /// Whether the object is not this reconciler's to manage at all (Flux's `type: oci`
    /// HelmRepositories are static data holders): it gets no finalizer and no status; one
    /// managed before is cleaned up, and its finalizer and status are removed.
    fn ignores(&self, _obj: &Self::Kind) -> bool {
        false
    }

    /// Releases what the object owns before its finalizer is removed. Must be idempotent and
    /// tolerate an `apply` that never ran.
    fn cleanup(
        &self,
        obj: &Self::Kind,
        ctx: &ReconcileContext<Self::Kind>,
    ) -> impl Future<Output = Result<(), ReconcileError>> + Send;
}

/// Settings of one kind's controller loop.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    /// Reconciles at once.
    pub concurrency: u16,
    /// Namespace to watch; all when None.
    pub namespace: Option<String>,
    /// Label selector to watch with (sharding).
    pub label_selector: Option<String>,
    /// First retry delay after a transient failure.
    pub min_retry_delay: Duration,
    /// Longest retry delay.
    pub max_retry_delay: Duration,
    /// Requeue jitter in percent of the interval.
    pub jitter_percent: u8,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            namespace: None,
            label_selector: None,
            min_retry_delay: Duration::from_millis(750),
            max_retry_delay: Duration::from_secs(15 * 60),
            jitter_percent: 5,
        }
    }
}

/// Progress reported within this long of the reconcile's start or of its previous status write
/// is held back, and written only when it is still the latest status once this time has passed.
/// A reconcile that takes less writes its result only (Flux writes `Reconciling=True` first, a
/// round trip and a write beside the work on every reconcile: measured in W4,
/// docs/benchmarks.md); a longer one shows what it is doing from then on. Waiters lose nothing:
/// a new generation is in progress by `observedGeneration` until the result, and `flux
/// reconcile` waits for `lastHandledReconcileAt`, both written with the result.
const PROGRESS_HOLD: Duration = Duration::from_secs(1);

/// What a reconciler sees besides its object: the client, events and progress reporting.
pub struct ReconcileContext<K: ToolkitObject> {
    /// Client for the cluster.
    pub client: Client,
    /// Event publisher.
    pub recorder: Arc<Recorder>,
    status_writer: StatusWriter,
    /// The status writes of this reconcile, one at a time (a held progress status is written by
    /// a timer, which must not overtake the final write).
    writes: Arc<tokio::sync::Mutex<Writes<K::Status>>>,
    /// Whether the kind published the event of this reconcile's success itself ([`announce`]).
    ///
    /// [`announce`]: ReconcileContext::announce
    announced: AtomicBool,
}

/// The status writes of one reconcile.
struct Writes<S> {
    /// Status as last written during this reconcile (to skip unchanged writes).
    last: Option<S>,
    /// When it was written (the reconcile's start before any write).
    at: Option<Instant>,
    /// Progress held back, written when due unless a later write replaced it.
    held: Option<S>,
    /// Whether a timer will write `held`.
    flush_scheduled: bool,
    /// A progress write sent without waiting for it; every later write waits for it first, so
    /// writes stay in order. Its result says whether the apiserver took it.
    in_flight: Option<tokio::task::JoinHandle<bool>>,
}

impl<S: Clone> Writes<S> {
    /// Waits for the write in flight, if any; when it failed, `last` is not what the apiserver
    /// has, so the next write compares with the object's status as read instead.
    async fn settle(&mut self) {
        if let Some(write) = self.in_flight.take()
            && !write.await.unwrap_or(false)
        {
            self.last = None;
        }
    }

    async fn write<K: ToolkitObject<Status = S>>(
        &mut self,
        writer: &StatusWriter,
        obj: &K,
        status: &S,
    ) -> Result<(), kube::Error> {
        self.settle().await;
        let current = self.last.as_ref().or(obj.status());
        if writer.apply(obj, current, status).await? {
            self.at = Some(Instant::now());
        }
        self.last = Some(status.clone());
        Ok(())
    }
}

impl<K: ToolkitObject> ReconcileContext<K> {
    /// Publishes progress: `Reconciling=True` with `message`, so users see what a long step is
    /// doing. Sent at once unless the reconcile started or the status was written less than
    /// [`PROGRESS_HOLD`] ago; then written when that time is up, unless a later write came first. The reconcile does
    /// not wait for it: the next status write does. Write failures are logged; the final status
    /// write decides.
    pub async fn progress(&self, obj: &K, status: &mut K::Status, message: &str) {
        conditions::mark_reconciling(
            status.conditions_mut(),
            reasons::PROGRESSING,
            message,
            obj.meta().generation,
        );
        let mut writes = self.writes.lock().await;
        let due = writes.at.map(|at| at + PROGRESS_HOLD);
        match due {
            Some(due) if Instant::now() < due => {
                writes.held = Some(status.clone());
                if !writes.flush_scheduled {
                    writes.flush_scheduled = true;
                    let (shared, writer, obj) =
                        (self.writes.clone(), self.status_writer.clone(), obj.clone());
                    let flush = async move {
                        tokio::time::sleep_until(due.into()).await;
                        let mut writes = shared.lock().await;
                        writes.flush_scheduled = false;
                        if let Some(held) = writes.held.take()
                            && let Err(err) = writes.write(&writer, &obj, &held).await
                        {
                            tracing::debug!(%err, "failed to write progress");
                        }
                    };
                    // (in the reconcile's span, so its log lines name the object)
                    tokio::spawn(tracing::Instrument::in_current_span(flush));
                }
            }
            _ => {
                writes.held = None;
                writes.settle().await;
                // Sent without waiting: the reconcile's next requests go out beside it (about a
                // round trip less before the result, measured in W4: docs/benchmarks.md).
                let current = writes.last.clone().or_else(|| obj.status().cloned());
                if current.as_ref() != Some(&*status) {
                    let (writer, obj, status) = (self.status_writer.clone(), obj.clone(), status.clone());
                    let write = async move {
                        let written = writer.apply(&obj, current.as_ref(), &status).await;
                        if let Err(err) = &written {
                            tracing::debug!(%err, "failed to write progress");
                        }
                        written.is_ok()
                    };
                    writes.in_flight = Some(tokio::spawn(tracing::Instrument::in_current_span(write)));
                    writes.at = Some(Instant::now());
                }
                writes.last = Some(status.clone());
            }
        }
    }

    /// Publishes the event that tells of this reconcile's success (a source's `NewArtifact`):
    /// `finish` then sends no success event of its own, as Flux sends one event per new artifact.
    pub async fn announce(&self, obj: &K, reason: &str, note: &str, metadata: &[(&str, &str)]) {
        self.announced.store(true, Ordering::Relaxed);
        self.recorder
            .publish(obj, EventType::Normal, reason, note, metadata)
            .await;
    }

    /// Writes `status` now; progress still held is dropped (this status replaces it).
    async fn write(&self, obj: &K, status: &K::Status) -> Result<(), kube::Error> {
        let mut writes = self.writes.lock().await;
        writes.held = None;
        writes.write(&self.status_writer, obj, status).await
    }
}

/// Errors of the framework itself (not of a kind's steps): retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    /// Writing status failed.
    #[error("failed to write status: {0}")]
    Status(#[source] kube::Error),
    /// Adding or removing the finalizer failed, or cleanup failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
}

/// Builds extra reconcile triggers from the controller's own store: for example "when a
/// GitRepository gets a new artifact, reconcile the GitRepositories that include it".
pub type TriggerFn<K> = Box<
    dyn FnOnce(
            kube::runtime::reflector::Store<K>,
        ) -> futures::stream::BoxStream<'static, kube::runtime::reflector::ObjectRef<K>>
        + Send,
>;

/// Everything a kind's controller loop shares between reconciles.
pub struct KindController<R: Reconciler> {
    reconciler: R,
    client: Client,
    controller_name: String,
    recorder: Arc<Recorder>,
    status_writer: StatusWriter,
    metrics: Metrics,
    settings: LoopSettings,
    /// Consecutive transient failures per `namespace/name`.
    failures: Mutex<HashMap<String, u32>>,
    triggers: Mutex<Option<TriggerFn<R::Kind>>>,
}

impl<R: Reconciler> KindController<R> {
    /// A controller for `R::Kind`, reporting events as `controller_name` and owning status as
    /// `status_field_manager`.
    pub fn new(
        reconciler: R,
        client: Client,
        controller_name: &str,
        status_field_manager: &str,
        metrics: Metrics,
        settings: LoopSettings,
    ) -> Self {
        Self {
            recorder: Arc::new(Recorder::new(client.clone(), controller_name)),
            status_writer: StatusWriter::new(client.clone(), status_field_manager),
            reconciler,
            client,
            controller_name: controller_name.to_string(),
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
            triggers: Mutex::new(None),
        }
    }

    /// Adds reconcile triggers beyond the object's own changes (see [`TriggerFn`]).
    #[must_use]
    pub fn with_triggers(self, triggers: TriggerFn<R::Kind>) -> Self {
        if let Ok(mut t) = self.triggers.lock() {
            *t = Some(triggers);
        }
        self
    }

    /// Runs the watch-and-reconcile loop until `shutdown` resolves; in-flight reconciles finish.
    /// A loop whose first list of its kind has not come in when `shutdown` resolves (the CRD
    /// is missing, the identity may not list it) has reconciled nothing and stops at once:
    /// kube-runtime would wait for its delayed reconciles, and so for the list, forever.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let api: Api<R::Kind> =
            crate::object::namespaced_or_all(&self.client, self.settings.namespace.as_deref());
        let mut wc = watcher::Config::default().any_semantic();
        if let Some(sel) = &self.settings.label_selector {
            wc = wc.labels(sel);
        }
        let (reader, writer) = reflector::store();
        let kind = R::Kind::kind(&()).to_string();
        let controller_label = Self::metrics_label();
        // Reflect before filtering so the store sees every update; only changes users make
        // (spec, finalizers, a reconcile request, deletion) trigger a reconcile. Status writes
        // of our own do not.
        let (metrics, label) = (self.metrics.clone(), controller_label.clone());
        let (gone, gone_label) = (self.metrics.clone(), controller_label.clone());
        let stream = watcher(api, wc)
            .default_backoff()
            .reflect(writer)
            // A deleted object (or one leaving the label selector) is nothing to wait for.
            .inspect(move |event| {
                if let Ok(watcher::Event::Delete(obj)) = event {
                    gone.dequeue_forgotten(&gone_label, Self::key(obj));
                }
            })
            .boxed();
        let stream = crate::triggers::changed_objects(stream)
            .map(Ok::<R::Kind, watcher::Error>)
            .predicate_filter(trigger_hash::<R::Kind>, Default::default())
            .inspect(move |obj| {
                if let Ok(obj) = obj {
                    metrics.queued(&label, Self::key(obj));
                }
            });
        let (metrics, label, store) = (self.metrics.clone(), controller_label.clone(), reader.clone());
        let extra = self.triggers.lock().ok().and_then(|mut t| t.take()).map(|build| {
            build(reader.clone())
                .inspect(move |obj| {
                    // A trigger for an object the store lacks is dropped by the controller.
                    if store.get(obj).is_some() {
                        let key = format!("{}/{}", obj.namespace.as_deref().unwrap_or_default(), obj.name);
                        metrics.queued(&label, key);
                    }
                })
                .boxed()
        });
        self.metrics
            .controller_started(&controller_label, self.settings.concurrency);
        let listed = reader.clone();
        let mut controller = Controller::for_stream(stream, reader);
        if let Some(extra) = extra {
            controller = controller.reconcile_on(extra);
        }
        let shutdown = shutdown.shared();
        let never_listed = shutdown.clone().then(move |()| async move {
            if listed
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|ready| ready.is_ok())
            {
                std::future::pending::<()>().await;
            }
        });
        let run = controller
            .with_config(ControllerConfig::default().concurrency(self.settings.concurrency))
            .graceful_shutdown_on(shutdown)
            .run(reconcile::<R>, error_policy::<R>, self)
            .for_each(|res| {
                if let Err(err) = res {
                    tracing::debug!(kind = %kind, %err, "reconcile loop");
                }
                futures::future::ready(())
            });
        tokio::select! {
            // A loop that did list lets its reconciles finish, even when its first list came in
            // just as shutdown was asked for.
            biased;
            () = run => {}
            () = never_listed => tracing::info!(kind = %kind, "stopped before the first list of its kind"),
        }
    }

    /// controller-runtime's name of this controller in metrics: the kind in lower case.
    fn metrics_label() -> String {
        R::Kind::kind(&()).to_lowercase()
    }

    fn key(obj: &R::Kind) -> String {
        format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// Reconciles the object again `after` from now (kept for the workqueue series).
    fn requeue(&self, obj: &R::Kind, after: Duration) -> Action {
        self.metrics
            .scheduled(&Self::metrics_label(), Self::key(obj), after);
        Action::requeue(after)
    }

    fn backoff(&self, obj: &R::Kind) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(Self::key(obj)).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.settings
            .min_retry_delay
            .saturating_mul(factor)
            .min(self.settings.max_retry_delay)
    }

    fn reset_backoff(&self, obj: &R::Kind) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&Self::key(obj));
        }
    }

    fn jitter(&self, interval: Duration) -> Duration {
        let pct = f64::from(self.settings.jitter_percent) / 100.0;
        if pct <= 0.0 {
            return interval;
        }
        let f = rand::random_range((1.0 - pct)..(1.0 + pct));
        interval.mul_f64(f)
    }

    fn context(&self) -> ReconcileContext<R::Kind> {
        ReconcileContext {
            client: self.client.clone(),
            recorder: self.recorder.clone(),
            status_writer: self.status_writer.clone(),
            writes: Arc::new(tokio::sync::Mutex::new(Writes {
                last: None,
                // (the start counts as a write: see PROGRESS_HOLD)
                at: Some(Instant::now()),
                held: None,
                flush_scheduled: false,
                in_flight: None,
            })),
            announced: AtomicBool::new(false),
        }
    }

    async fn apply(&self, obj: Arc<R::Kind>) -> Result<Action, ReconcileError> {
        if obj.suspended() {
            tracing::info!("reconciliation is suspended for this object");
            return Ok(Action::await_change());
        }
        let ctx = self.context();
        let generation = obj.meta().generation;
        let requested = obj.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
        let mut status = obj.status().cloned().unwrap_or_default();
        let new_generation = generation.is_some_and(|g| g != status.observed_generation());
        let new_request = requested.is_some() && requested.as_deref() != status.last_handled_reconcile_at();
        if new_generation
            || new_request
            || conditions::get(status.conditions(), condition_types::READY).is_none()
        {
            let conds = status.conditions_mut();
            if !conditions::is_false(conds, condition_types::READY) {
                conditions::set(
                    conds,
                    condition_types::READY,
                    Status::Unknown,
                    reasons::PROGRESSING,
                    "reconciliation in progress",
                    generation,
                );
            }
            ctx.progress(&obj, &mut status, "reconciliation in progress")
                .await;
        }
        // The Ready message of the last success: a success with another message (a new
        // revision applied) is an event again, as Flux reports every new revision.
        let last_success = conditions::get(
            obj.status().map(|s| s.conditions()).unwrap_or_default(),
            condition_types::READY,
        )
        .filter(|c| c.status == "True")
        .map(|c| c.message.clone());
        let result = self.reconciler.apply(&obj, &mut status, &ctx).await;
        self.finish(&obj, &ctx, status, result, requested, last_success)
            .await
    }

    /// Turns an outcome into conditions, status fields, events, metrics and the requeue.
    async fn finish(
        &self,
        obj: &R::Kind,
        ctx: &ReconcileContext<R::Kind>,
        mut status: <R::Kind as ToolkitObject>::Status,
        result: Result<Success, ReconcileError>,
        requested: Option<String>,
        last_success: Option<String>,
    ) -> Result<Action, ReconcileError> {
        let generation = obj.meta().generation;
        let kind = R::Kind::kind(&()).to_string();
        if requested.is_some() {
            status.set_last_handled_reconcile_at(requested);
        }
        let conds = status.conditions_mut();
        let outcome = match &result {
            Ok(_) => Outcome::RequeueAfter,
            Err(err) => match err.class {
                ErrorClass::Stalled => Outcome::Success,
                ErrorClass::Waiting(_) => Outcome::RequeueAfter,
                ErrorClass::Transient => Outcome::Error,
            },
        };
        let (action, event) = match &result {
            Ok(success) => {
                conditions::set(
                    conds,
                    condition_types::READY,
                    Status::True,
                    &success.reason,
                    &success.message,
                    generation,
                );
                conditions::delete(conds, condition_types::RECONCILING);
                conditions::delete(conds, condition_types::STALLED);
                status.set_observed_generation(generation.unwrap_or_default());
                self.reset_backoff(obj);
                let event = (last_success.as_deref() != Some(success.message.as_str())
                    && !ctx.announced.load(Ordering::Relaxed))
                .then(|| (EventType::Normal, success.reason.clone(), success.message.clone()));
                let after = success
                    .requeue_after
                    .unwrap_or_else(|| self.jitter(obj.interval()));
                (self.requeue(obj, after), event)
            }
            Err(err) => {
                conditions::set(
                    conds,
                    condition_types::READY,
                    Status::False,
                    &err.reason,
                    &err.message,
                    generation,
                );
                match err.class {
                    ErrorClass::Stalled => {
                        let stalled_reason = err.stalled_reason.as_deref().unwrap_or(&err.reason);
                        conditions::mark_stalled(conds, stalled_reason, &err.message, generation);
                        status.set_observed_generation(generation.unwrap_or_default());
                        self.metrics.count_failure(&kind, &err.reason);
                        // A kind with a retry interval (a Kustomization's `retryInterval`, else
                        // its interval) is retried after it, as Flux retries every failure.
                        let after = obj.retry_interval().unwrap_or_else(|| obj.interval());
                        (
                            self.requeue(obj, after),
                            Some((EventType::Warning, err.reason.clone(), err.message.clone())),
                        )
                    }
                    ErrorClass::Waiting(after) => {
                        conditions::mark_reconciling(conds, reasons::PROGRESSING, &err.message, generation);
                        (
                            self.requeue(obj, after),
                            Some((EventType::Normal, err.reason.clone(), err.message.clone())),
                        )
                    }
                    ErrorClass::Transient => {
                        let message = conditions::get(conds, condition_types::RECONCILING)
                            .map(|c| c.message.clone())
                            .unwrap_or_else(|| "retrying after failure".into());
                        conditions::mark_reconciling(
                            conds,
                            reasons::PROGRESSING_WITH_RETRY,
                            &message,
                            generation,
                        );
                        self.metrics.count_failure(&kind, &err.reason);
                        let delay = obj.retry_interval().unwrap_or_else(|| self.backoff(obj));
                        (
                            self.requeue(obj, delay),
                            Some((EventType::Warning, err.reason.clone(), err.message.clone())),
                        )
                    }
                }
            }
        };
        if let Err(err) = ctx.write(obj, &status).await {
            // Counted as an error by the caller, like every failure of the framework.
            tracing::warn!(%err, "failed to write status");
            return Err(ReconcileError::transient(
                reasons::FAILED,
                format!("failed to write status: {err}"),
            ));
        }
        self.metrics.count_outcome(&Self::metrics_label(), outcome);
        let event = event.filter(|_| !result.as_ref().is_err_and(|e| e.reported));
        if let Some((type_, reason, note)) = event {
            let revision = result.as_ref().ok().and_then(|s| s.revision.clone());
            let mut metadata: Vec<(&str, &str)> =
                revision.as_deref().map(|r| ("revision", r)).into_iter().collect();
            if let Ok(success) = &result {
                metadata.extend(success.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            ctx.recorder.publish(obj, type_, &reason, &note, &metadata).await;
        }
        match &result {
            Ok(s) => tracing::info!(reason = %s.reason, message = %s.message, "reconciled"),
            Err(e) => {
                tracing::warn!(reason = %e.reason, message = %e.message, class = ?e.class, "reconcile failed")
            }
        }
        Ok(action)
    }

    async fn cleanup(&self, obj: Arc<R::Kind>) -> Result<Action, ReconcileError> {
        let ctx = self.context();
        self.reconciler.cleanup(&obj, &ctx).await?;
        self.reset_backoff(&obj);
        self.metrics.forget(&labels(&*obj));
        self.metrics
            .dequeue_forgotten(&Self::metrics_label(), Self::key(&obj));
        Ok(Action::await_change())
    }
}

fn labels<K: ToolkitObject>(obj: &K) -> ObjectLabels {
    ObjectLabels {
        kind: K::kind(&()).to_string(),
        name: obj.name_any(),
        namespace: obj.namespace().unwrap_or_default(),
    }
}

/// What makes an object worth reconciling: its generation, finalizers, reconcile request and
/// deletion. Status updates (ours included) change none of them.
fn trigger_hash<K: ToolkitObject>(obj: &K) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.finalizers().hash(&mut h);
    obj.annotations().get(REQUESTED_AT_ANNOTATION).hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

async fn reconcile<R: Reconciler>(
    obj: Arc<R::Kind>,
    ctrl: Arc<KindController<R>>,
) -> Result<Action, FrameworkError> {
    let started = Instant::now();
    let labels = labels(&*obj);
    let controller = KindController::<R>::metrics_label();
    let _worker = ctrl.metrics.worker(&controller, KindController::<R>::key(&obj));
    let span = tracing::info_span!("reconcile", controller = %ctrl.controller_name, kind = %labels.kind,
        namespace = %labels.namespace, name = %labels.name);
    let _enter = span.enter();
    drop(_enter);
    let api: Api<R::Kind> = Api::namespaced(ctrl.client.clone(), &labels.namespace);
    if ctrl.reconciler.ignores(&obj) {
        // Managed before (it has the finalizer): what it owns is released first.
        if obj.finalizers().iter().any(|f| f == R::Kind::FINALIZER)
            && let Err(err) = ctrl.reconciler.cleanup(&obj, &ctrl.context()).await
        {
            tracing::warn!(%err, "cleanup of an object no longer managed failed");
        }
        let released = release(&api, &obj).await.map(|()| Action::await_change());
        let outcome = if released.is_ok() {
            Outcome::Success
        } else {
            Outcome::Error
        };
        ctrl.metrics.count_outcome(&controller, outcome);
        return released;
    }
    let result = {
        use tracing::Instrument;
        finalizer(&api, R::Kind::FINALIZER, obj, |event| async {
            match event {
                FinalizerEvent::Apply(o) => ctrl.apply(o).await,
                FinalizerEvent::Cleanup(o) => ctrl.cleanup(o).await,
            }
        })
        .instrument(span)
        .await
    };
    if !matches!(&result, Ok(a) if *a == Action::await_change())
        || started.elapsed() > Duration::from_millis(1)
    {
        ctrl.metrics.observe_duration(labels, started);
    }
    // Outcomes of applies are counted where they are decided (`finish`); what is left is the
    // framework's: a suspended object, a deletion, a failed finalizer or status write.
    match &result {
        Err(_) => ctrl.metrics.count_outcome(&controller, Outcome::Error),
        Ok(action) if *action == Action::await_change() => {
            ctrl.metrics.count_outcome(&controller, Outcome::Success)
        }
        Ok(_) => {}
    }
    result.map_err(|e| FrameworkError::Finalizer(Box::new(e)))
}

/// Leaves an object the reconciler ignores as a user wrote it: its status is cleared and this
/// toolkit's finalizer removed, when they are there.
async fn release<K: ToolkitObject>(api: &Api<K>, obj: &K) -> Result<(), FrameworkError> {
    let name = obj.name_any();
    // The CRD defaults observedGeneration to -1, so a cleared status reads back as that alone.
    let blank = obj.status().is_none_or(|status| {
        serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .is_some_and(|fields| {
                fields
                    .iter()
                    .all(|(k, v)| v.is_null() || (k == "observedGeneration" && v == -1))
            })
    });
    if !blank {
        let clear = serde_json::json!({"status": null});
        api.patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&clear),
        )
        .await
        .map_err(FrameworkError::Status)?;
    }
    if obj.finalizers().iter().any(|f| f == K::FINALIZER) {
        let kept: Vec<&String> = obj.finalizers().iter().filter(|f| *f != K::FINALIZER).collect();
        let patch =
            serde_json::json!({"metadata": {"finalizers": kept, "resourceVersion": obj.resource_version()}});
        api.patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(FrameworkError::Status)?;
    }
    Ok(())
}

fn error_policy<R: Reconciler>(
    obj: Arc<R::Kind>,
    err: &FrameworkError,
    ctrl: Arc<KindController<R>>,
) -> Action {
    let delay = ctrl.backoff(&obj);
    tracing::warn!(name = %obj.name_any(), namespace = ?obj.namespace(), %err, ?delay, "reconcile error, retrying");
    ctrl.requeue(&obj, delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_class() {
        assert_eq!(
            ReconcileError::stalled("InvalidURL", "x").class,
            ErrorClass::Stalled
        );
        assert_eq!(
            ReconcileError::waiting("DependencyNotReady", "x", Duration::from_secs(30)).class,
            ErrorClass::Waiting(Duration::from_secs(30))
        );
        assert_eq!(
            ReconcileError::transient("AuthenticationFailed", "x").to_string(),
            "x"
        );
    }
}
