//! Flux's event (`event.toolkit.fluxcd.io` v1beta1, API reference §5.1): what the toolkit's
//! controllers report, as it arrives — a Kubernetes Event about a toolkit object (what every
//! controller, ours and Flux's, records) or Flux's JSON POSTed to the event server — and as
//! providers receive it.

use std::collections::BTreeMap;

use driftless_api::meta::EVENT_ANNOTATION_PREFIX;
use k8s_openapi::api::core::v1::ObjectReference;
use serde::{Deserialize, Serialize};

/// The longest note of a Kubernetes Event (events.k8s.io/v1), which the recorders cut to it.
pub const KUBERNETES_NOTE: usize = 1024;
/// Longest message Flux sends (it truncates longer ones).
pub const MAX_MESSAGE: usize = 39000;
/// The API group suffix of the toolkit's kinds (`*.toolkit.fluxcd.io`, and
/// `source.extensions.fluxcd.io` for ArtifactGenerators).
const TOOLKIT_GROUP: &str = ".fluxcd.io";

/// An event as Flux's notification-controller receives and forwards it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub involved_object: ObjectReference,
    /// `info`, `error` or `trace` (trace events are never sent).
    pub severity: String,
    /// RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    pub message: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    pub reporting_controller: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

impl Event {
    /// The event a Kubernetes Event about a toolkit object reports (None for any other
    /// object: Pods, Deployments, …). Warning is `error`, Normal `info`; the annotations are
    /// the metadata, as Flux's recorder writes them.
    pub fn from_kubernetes(event: &k8s_openapi::api::events::v1::Event) -> Option<Event> {
        let regarding = event.regarding.clone()?;
        let api_version = regarding.api_version.as_deref()?;
        if !api_version.split('/').next()?.ends_with(TOOLKIT_GROUP) {
            return None;
        }
        let severity = match event.type_.as_deref() {
            Some("Warning") => "error",
            Some("Normal") => "info",
            _ => "trace",
        };
        let time = event
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(event.event_time.as_ref().map(|t| t.0))
            .or(event.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .map(|t| t.to_string())
            .unwrap_or_default();
        Some(Event {
            involved_object: regarding,
            severity: severity.into(),
            timestamp: time,
            message: event.note.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            metadata: event.metadata.annotations.clone().unwrap_or_default(),
            reporting_controller: event
                .reporting_controller
                .clone()
                .or_else(|| event.deprecated_source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_default(),
            reporting_instance: event.reporting_instance.clone().unwrap_or_default(),
        })
    }

    /// What a POSTed event must have: the object's kind, name and namespace, a known severity,
    /// a message, a reason and the reporting controller.
    pub fn validate(&mut self) -> Result<(), String> {
        let object = &self.involved_object;
        for (field, value) in [
            ("involvedObject.kind", &object.kind),
            ("involvedObject.name", &object.name),
            ("involvedObject.namespace", &object.namespace),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(format!("{field} is required"));
            }
        }
        if !matches!(self.severity.as_str(), "info" | "error" | "trace") {
            return Err(format!("invalid severity '{}'", self.severity));
        }
        if self.message.is_empty() || self.reason.is_empty() || self.reporting_controller.is_empty() {
            return Err("message, reason and reportingController are required".into());
        }
        if self.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            self.message.truncate(end);
        }
        Ok(())
    }

    /// The API group of the involved object (`kustomize.toolkit.fluxcd.io`).
    pub fn group(&self) -> &str {
        self.involved_object
            .api_version
            .as_deref()
            .and_then(|v| v.split_once('/').map(|(g, _)| g))
            .unwrap_or_default()
    }

    /// The identity duplicates share, as Flux's rate limiter keys events: the object, the
    /// message and the metadata (a Kubernetes Event and a POST of the same event are one). The
    /// message counts up to [`KUBERNETES_NOTE`] characters: a Kubernetes Event carries no more
    /// of it, while the POST of the same event carries all of it.
    pub fn key(&self) -> String {
        let o = &self.involved_object;
        let message: String = self.message.chars().take(KUBERNETES_NOTE).collect();
        let mut key = format!(
            "{}/{}/{}\n{}\n{}",
            o.kind.as_deref().unwrap_or_default(),
            o.namespace.as_deref().unwrap_or_default(),
            o.name.as_deref().unwrap_or_default(),
            self.reason,
            message
        );
        for (k, v) in &self.metadata {
            key.push_str(&format!("\n{k}={v}"));
        }
        key
    }

    /// The metadata providers see, as Flux cleans and ranks it (low → high): the object's
    /// `event.toolkit.fluxcd.io/*` annotations, then `extra` (an Alert's `eventMetadata` and
    /// `summary`), then the keys the controller set in the object's own group — each without
    /// its prefix (`revision`); `token` and the legacy `checksum` are internal, other keys
    /// are dropped, as Flux's `excludeInternalMetadata`.
    pub fn cleaned_with(&self, extra: &[(String, String)]) -> Event {
        let group = format!("{}/", self.group());
        let mut metadata = BTreeMap::new();
        for (key, value) in &self.metadata {
            if let Some(short) = key.strip_prefix(EVENT_ANNOTATION_PREFIX) {
                metadata.insert(short.to_string(), value.clone());
            }
        }
        for (key, value) in extra {
            metadata.insert(key.clone(), value.clone());
        }
        for (key, value) in &self.metadata {
            if let Some(short) = key.strip_prefix(&group)
                && !matches!(short, "checksum" | "token")
            {
                metadata.insert(short.to_string(), value.clone());
            }
        }
        Event {
            metadata,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubernetes_events_of_toolkit_objects_become_flux_events() {
        let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "namespace": "apps", "annotations": {
                "kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc",
                "kustomize.toolkit.fluxcd.io/token": "no",
                "event.toolkit.fluxcd.io/team": "web",
                "other.io/x": "no"}},
            "eventTime": "2026-12-02T10:00:00.000000Z",
            "regarding": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "web", "namespace": "apps"},
            "type": "Warning", "reason": "HealthCheckFailed", "note": "timeout",
            "reportingController": "kustomize-controller", "reportingInstance": "kc-1"
        }))
        .unwrap();
        let flux = Event::from_kubernetes(&event).unwrap();
        assert_eq!(flux.severity, "error");
        assert_eq!(flux.reporting_controller, "kustomize-controller");
        let cleaned = flux.cleaned_with(&[("team".into(), "alert".into()), ("env".into(), "prod".into())]);
        assert_eq!(cleaned.metadata.len(), 3, "{:?}", cleaned.metadata);
        assert_eq!(cleaned.metadata["revision"], "main@sha1:abc");
        // The Alert's metadata ranks above the object's annotations.
        assert_eq!(cleaned.metadata["team"], "alert");
        assert_eq!(cleaned.metadata["env"], "prod");

        let mut pod = event.clone();
        pod.regarding.as_mut().unwrap().api_version = Some("v1".into());
        assert!(Event::from_kubernetes(&pod).is_none());
    }

    #[test]
    fn posted_events_are_validated() {
        let mut event: Event = serde_json::from_value(serde_json::json!({
            "involvedObject": {"kind": "GitRepository", "name": "repo", "namespace": "flux-system"},
            "severity": "info", "message": "x".repeat(MAX_MESSAGE + 10), "reason": "NewArtifact",
            "reportingController": "source-controller"
        }))
        .unwrap();
        event.validate().unwrap();
        assert_eq!(event.message.len(), MAX_MESSAGE);
        event.severity = "fatal".into();
        assert!(event.validate().is_err());
    }
}
