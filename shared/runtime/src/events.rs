//! Kubernetes Events (events.k8s.io/v1) in Flux's shape: reason, note, and the revision (and any
//! `event.toolkit.fluxcd.io/*` annotations of the object) as annotations on the Event.
//!
//! Controllers talk only through Kubernetes objects: these Events are also the feed
//! notification-controller watches, so nothing is POSTed between controllers.
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
    sync::Mutex,
};

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
        if let Err(err) = self.try_publish(obj, type_, reason, note, metadata).await {
            tracing::warn!(%err, reason, "failed to publish event");
        }
    }

    async fn try_publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), kube::Error>
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
                return Ok(());
            }
        }

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
        let name = format!("{}.{:x}", obj.name_any(), Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..Default::default()
            },
            action: Some(reason.to_string()),
            event_time: Some(now),
            note: Some(note),
            reason: Some(reason.to_string()),
            regarding: Some(ObjectReference {
                api_version: Some(K::api_version(&()).to_string()),
                kind: Some(K::kind(&()).to_string()),
                name: obj.meta().name.clone(),
                namespace: obj.meta().namespace.clone(),
                uid: obj.meta().uid.clone(),
                resource_version: obj.meta().resource_version.clone(),
                ..Default::default()
            }),
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
        Ok(())
    }
}
