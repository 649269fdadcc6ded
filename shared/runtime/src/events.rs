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
    sync::{Mutex, OnceLock},
    time::Duration,
};

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
    let (client, url) = (client.clone(), url.clone());
    tokio::spawn(async move {
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

/// Publishes Events on behalf of one controller.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    seen: Mutex<HashMap<EventKey, EventSeriesRef>>,
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
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event about `obj`. `metadata` keys without a `/` are prefixed with the
    /// object's API group (`revision` → `source.toolkit.fluxcd.io/revision`), as Flux does.
    /// Failures to publish are logged, never returned: an event must not fail a reconcile.
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
        match self.try_publish(obj, type_, reason, note, metadata).await {
            Ok(annotations) => {
                if FORWARD.get().is_some() {
                    forward(self.flux_event(obj, type_, reason, note, annotations));
                }
            }
            Err(err) => tracing::warn!(%err, reason, "failed to publish event"),
        }
    }

    /// Flux's event JSON (`event.toolkit.fluxcd.io`): the metadata is the Event's annotations,
    /// as Flux's recorder sends them.
    fn flux_event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
        annotations: BTreeMap<String, String>,
    ) -> serde_json::Value
    where
        K: Resource<DynamicType = ()>,
    {
        let severity = match type_ {
            EventType::Normal => "info",
            EventType::Warning => "error",
        };
        let mut event = serde_json::json!({
            "involvedObject": reference(obj),
            "severity": severity,
            "timestamp": Timestamp::now().round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default(),
            "message": note,
            "reason": reason,
            "reportingController": self.controller,
            "reportingInstance": self.instance,
        });
        if !annotations.is_empty() {
            event["metadata"] = serde_json::json!(annotations);
        }
        event
    }

    async fn try_publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
        metadata: &[(&str, &str)],
    ) -> Result<BTreeMap<String, String>, kube::Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let namespace = obj.namespace().unwrap_or_else(|| "default".into());
        let type_str = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let note: String = note.chars().take(1024).collect();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = MicroTime(Timestamp::now());
        let key = (
            obj.uid().unwrap_or_default(),
            type_str.to_string(),
            reason.to_string(),
            note.clone(),
        );

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
        let previous = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((ns, name, count)) = previous {
            let patch = serde_json::json!({"series": {"count": count + 1, "lastObservedTime": now}});
            let api_ns: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api_ns
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                if let Ok(mut seen) = self.seen.lock() {
                    seen.insert(key, (ns, name, count + 1));
                }
                return Ok(annotations);
            }
        }

        let name = format!("{}.{:x}", obj.name_any(), Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                ..Default::default()
            },
            action: Some(reason.to_string()),
            event_time: Some(now),
            note: Some(note),
            reason: Some(reason.to_string()),
            regarding: Some(reference(obj)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_str.to_string()),
            series: None::<EventSeries>,
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 4096 {
                seen.clear();
            }
            seen.insert(key, (namespace, name, 1));
        }
        Ok(annotations)
    }
}
