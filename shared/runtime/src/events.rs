//! Kubernetes Events (events.k8s.io/v1) in Flux's shape: reason, note, and the revision (and any
//! `event.toolkit.fluxcd.io/*` annotations of the object) as annotations on the Event.
//!
//! Controllers talk only through Kubernetes objects: these Events are also the feed
//! notification-controller watches. With Flux's `--events-addr` set (Flux's Deployments set
//! it), each event is also POSTed there as Flux's event JSON, as Flux's recorder does, so that
//! Flux's own notification-controller alerts on our controllers' events; ours takes both and
//! sends each event once.
//! Repeated identical events are folded into one Event whose `series` counts them.

use driftless_api::meta::EVENT_ANNOTATION_PREFIX;
use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;

/// Where events are POSTed besides (`--events-addr`), and the client that does it.
static FORWARD: OnceLock<(reqwest::Client, String)> = OnceLock::new();

/// Attempts of one POST (Flux's retrying client makes 5).
const FORWARD_ATTEMPTS: u32 = 5;

/// Sends every event published from now on also to `address` (Flux's `--events-addr`: the
/// event server of a notification-controller), as Flux's event JSON. Set once, at start.
pub fn forward_to(address: &str) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let _ = FORWARD.set((client, address.to_string()));
    Ok(())
}

/// POSTs `event` to the `--events-addr` server in the background: a slow or absent server
/// never holds up a reconcile. 5xx and connection failures are retried with backoff.
fn forward(event: serde_json::Value) {
    let Some((client, url)) = FORWARD.get() else {
        return;
    };
    let (client, url, unfinished) = (client.clone(), url.clone(), Unfinished::new());
    tokio::spawn(async move {
        let _unfinished = unfinished;
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=FORWARD_ATTEMPTS {
            match client.post(&url).json(&event).send().await {
                Ok(response) if response.status().is_success() => return,
                // 4xx is final, 429 too: a notification-controller answers it to a duplicate.
                Ok(response) if response.status().is_client_error() => {
                    tracing::warn!(status = %response.status(), %url, "event refused by the events address");
                    return;
                }
                Ok(response) if attempt == FORWARD_ATTEMPTS => {
                    tracing::warn!(status = %response.status(), %url, "unable to record event");
                }
                Err(err) if attempt == FORWARD_ATTEMPTS => {
                    tracing::warn!(%err, %url, "unable to record event");
                }
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    });
}

/// The reference an event makes to `obj` (Kubernetes Event `regarding`, Flux's
/// `involvedObject`).
fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

/// Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Informational (Flux severity `info`).
    Normal,
    /// A failure (Flux severity `error`).
    Warning,
}

/// Identity of an event for folding repeats: (object uid, type, reason, note).
type EventKey = (String, String, String, String);

/// Where a folded event lives and how often it was seen: (namespace, name, count).
type EventSeriesRef = (String, String, i32);

/// Events waiting for the apiserver at most (client-go's broadcaster keeps 1000 too); beyond,
/// new ones are dropped with a warning rather than holding up a reconcile.
const QUEUE: usize = 1000;

/// An event is written this long after it was published at the earliest. A reconcile publishes
/// its events before its result status (change set, health, new artifact); written at once,
/// each competed with that status write and with the next controller's reconcile for the
/// apiserver (measured in W4: docs/benchmarks.md). Under load events are older than this when
/// their turn comes, so the writer keeps its pace; a burst still folds into series.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Events queued or being written and forwards in flight, over all recorders: what [`drain`]
/// waits for.
static UNFINISHED: AtomicUsize = AtomicUsize::new(0);
/// Set by [`drain`]: events still lingering are written at once.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Wakes lingering writers when [`drain`] starts.
static DRAIN: Notify = Notify::const_new();
/// Wakes [`drain`] when nothing is unfinished.
static DRAINED: Notify = Notify::const_new();

/// One unfinished event or forward, counted in [`UNFINISHED`] while it lives.
struct Unfinished;

impl Unfinished {
    fn new() -> Self {
        UNFINISHED.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if UNFINISHED.fetch_sub(1, Ordering::SeqCst) == 1 {
            DRAINED.notify_waiters();
        }
    }
}

/// Writes and forwards the events published so far, without their linger, for at most
/// `timeout`: called at shutdown, once the reconciles have finished, so that their last events
/// are not lost with the process.
pub async fn drain(timeout: Duration) {
    DRAINING.store(true, Ordering::SeqCst);
    DRAIN.notify_waiters();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let drained = DRAINED.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if UNFINISHED.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::select! {
            () = drained => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(unfinished = UNFINISHED.load(Ordering::SeqCst), "events left unwritten at shutdown");
                return;
            }
        }
    }
}

/// One event, everything taken from its object, on its way to the apiserver.
struct Pending {
    /// When it was published (see [`LINGER`]).
    published: tokio::time::Instant,
    /// Counted until written or dropped (see [`drain`]).
    _unfinished: Unfinished,
    namespace: String,
    object_name: String,
    key: EventKey,
    type_: EventType,
    reason: String,
    note: String,
    annotations: BTreeMap<String, String>,
    regarding: ObjectReference,
}

/// Publishes Events on behalf of one controller. Publishing queues the event and returns: one
/// task per recorder writes them in order (so repeats fold into their series), off the
/// reconcile's path, as Flux's recorder does, and after the reconcile's own writes ([`LINGER`]).
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    queue: OnceLock<tokio::sync::mpsc::Sender<Pending>>,
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `source-controller`) from this
    /// [`instance_name`](crate::runtime::instance_name).
    pub fn new(client: Client, controller: &str) -> Self {
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| controller.to_string());
        Self {
            client,
            controller: controller.to_string(),
            instance,
            queue: OnceLock::new(),
        }
    }

    /// Publishes an event about `obj`. `metadata` keys without a `/` are prefixed with the
    /// object's API group (`revision` → `source.toolkit.fluxcd.io/revision`), as Flux does.
    /// The event is queued: failures to publish are logged, never returned (an event must not
    /// fail or slow a reconcile).
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
        metadata: &[(&str, &str)],
    ) where
        K: Resource<DynamicType = ()>,
    {
        let type_str = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let note: String = note.chars().take(1024).collect();
        let group = K::group(&()).to_string();
        let mut annotations = BTreeMap::new();
        for (k, v) in obj.annotations() {
            if k.starts_with(EVENT_ANNOTATION_PREFIX) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in metadata {
            let key = if k.contains('/') || group.is_empty() {
                k.to_string()
            } else {
                format!("{group}/{k}")
            };
            annotations.insert(key, v.to_string());
        }
        let pending = Pending {
            published: tokio::time::Instant::now(),
            _unfinished: Unfinished::new(),
            namespace: obj.namespace().unwrap_or_else(|| "default".into()),
            object_name: obj.name_any(),
            key: (
                obj.uid().unwrap_or_default(),
                type_str.to_string(),
                reason.to_string(),
                note.clone(),
            ),
            type_,
            reason: reason.to_string(),
            note,
            annotations,
            regarding: reference(obj),
        };
        // Forwarded at once, whether or not the Kubernetes Event is written, as Flux's recorder
        // POSTs beside its Kubernetes one.
        if FORWARD.get().is_some() {
            forward(self.flux_event(&pending));
        }
        if self.queue().try_send(pending).is_err() {
            tracing::warn!(reason, "event queue full: event dropped");
        }
    }

    /// Flux's event JSON (`event.toolkit.fluxcd.io`): the metadata is the Event's annotations,
    /// as Flux's recorder sends them.
    fn flux_event(&self, pending: &Pending) -> serde_json::Value {
        let severity = match pending.type_ {
            EventType::Normal => "info",
            EventType::Warning => "error",
        };
        let mut event = serde_json::json!({
            "involvedObject": pending.regarding,
            "severity": severity,
            "timestamp": Timestamp::now().round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default(),
            "message": pending.note,
            "reason": pending.reason,
            "reportingController": self.controller,
            "reportingInstance": self.instance,
        });
        if !pending.annotations.is_empty() {
            event["metadata"] = serde_json::json!(pending.annotations);
        }
        event
    }

    /// The queue of this recorder's writer task, started on first use.
    fn queue(&self) -> &tokio::sync::mpsc::Sender<Pending> {
        self.queue.get_or_init(|| {
            let (sender, mut receiver) = tokio::sync::mpsc::channel::<Pending>(QUEUE);
            let writer = Writer {
                client: self.client.clone(),
                controller: self.controller.clone(),
                instance: self.instance.clone(),
                seen: HashMap::new(),
            };
            tokio::spawn(async move {
                let mut writer = writer;
                while let Some(pending) = receiver.recv().await {
                    if !DRAINING.load(Ordering::SeqCst) {
                        tokio::select! {
                            () = tokio::time::sleep_until(pending.published + LINGER) => {}
                            () = DRAIN.notified() => {}
                        }
                    }
                    writer.write(pending).await;
                }
            });
            sender
        })
    }
}

/// The task that writes a recorder's events, in the order they were published.
struct Writer {
    client: Client,
    controller: String,
    instance: String,
    seen: HashMap<EventKey, EventSeriesRef>,
}

impl Writer {
    async fn write(&mut self, pending: Pending) {
        if let Err(err) = self.try_write(&pending).await {
            tracing::warn!(%err, reason = pending.reason, "failed to publish event");
        }
    }

    /// A repeat of an event this writer made becomes a count in its series; anything else a
    /// new Event.
    async fn try_write(&mut self, pending: &Pending) -> Result<(), kube::Error> {
        let now = MicroTime(Timestamp::now());
        if let Some((ns, name, count)) = self.seen.get(&pending.key).cloned() {
            let patch = serde_json::json!({"series": {"count": count + 1, "lastObservedTime": now}});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen.insert(pending.key.clone(), (ns, name, count + 1));
                return Ok(());
            }
        }
        let name = format!("{}.{:x}", pending.object_name, Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(pending.namespace.clone()),
                annotations: (!pending.annotations.is_empty()).then(|| pending.annotations.clone()),
                ..Default::default()
            },
            action: Some(pending.reason.clone()),
            event_time: Some(now),
            note: Some(pending.note.clone()),
            reason: Some(pending.reason.clone()),
            regarding: Some(pending.regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match pending.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            series: None::<EventSeries>,
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &pending.namespace)
            .create(&PostParams::default(), &event)
            .await?;
        if self.seen.len() > 4096 {
            self.seen.clear();
        }
        self.seen
            .insert(pending.key.clone(), (pending.namespace.clone(), name, 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_until_the_last_unfinished_event_is_done() {
        let unfinished = Unfinished::new();
        let drained = drain(Duration::from_secs(30));
        tokio::pin!(drained);
        assert!(futures::poll!(drained.as_mut()).is_pending());
        drop(unfinished);
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("drain returns once nothing is unfinished");
    }
}
