//! From an event to the providers that must see it: duplicates dropped within
//! `--rate-limit-interval` (whichever way the event arrived), Alerts matched (sources, severity,
//! inclusion and exclusion lists), metadata added, and one delivery task per Provider so that
//! a slow or dead endpoint never delays another. Deliveries retry with backoff on 5xx,
//! timeouts and connection failures, never on 4xx; one that fails for good is logged and
//! reported as a Warning event on its Alert.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use driftless_api::meta::CrossNamespaceObjectReference;
use driftless_api::notification::{Alert, Provider};
use driftless_runtime::events::{EventType, Recorder};
use driftless_runtime::secrets::Problem;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::event::Event;
use crate::providers;

/// How long a provider request may take when the Provider sets no `timeout` (Flux's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Drops an event seen within `interval` (Flux's `--rate-limit-interval`). Keys are kept as
/// sha256 digests, pruned as they expire, and capped, so a flood of distinct events cannot
/// grow memory without bound.
pub struct RateLimiter {
    interval: Duration,
    seen: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Most keys remembered; past it, the oldest half is forgotten.
const RATE_LIMIT_KEYS: usize = 100_000;

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the event with `key` goes on (false: a duplicate within the interval).
    pub fn admit(&self, key: &str) -> bool {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= RATE_LIMIT_KEYS {
            seen.retain(|_, at| now.duration_since(*at) < self.interval);
            if seen.len() >= RATE_LIMIT_KEYS {
                let mut ages: Vec<Instant> = seen.values().copied().collect();
                ages.sort();
                let cutoff = ages[ages.len() / 2];
                seen.retain(|_, at| *at > cutoff);
            }
        }
        match seen.get(&digest) {
            Some(at) if now.duration_since(*at) < self.interval => false,
            _ => {
                seen.insert(digest, now);
                true
            }
        }
    }
}

/// What became of an event offered to the dispatcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    Duplicate,
}

/// Routes events to the Alerts' Providers.
pub struct Dispatcher {
    pub client: Client,
    pub alerts: Store<Alert>,
    pub providers: Store<Provider>,
    pub limiter: RateLimiter,
    pub no_cross_namespace_refs: bool,
    pub recorder: Recorder,
    pub discovery: driftless_apply::Discovery,
    /// Deliveries in flight per Provider (by uid): a dead endpoint holds at most
    /// [`DELIVERIES_PER_PROVIDER`] of them; the others wait their turn, other providers not.
    pub in_flight: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    pub google: crate::GoogleEndpoints,
}

/// Deliveries one Provider runs at once.
pub const DELIVERIES_PER_PROVIDER: usize = 8;

/// `name` against an event source's name: `*` matches any run of characters.
fn name_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let regex = format!(
        "^{}$",
        pattern
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*")
    );
    regex::Regex::new(&regex).is_ok_and(|r| r.is_match(name))
}

/// Whether `source` of an Alert in `alert_namespace` names the event's object (labels are
/// checked by the caller, which reads them only when a source asks).
fn source_matches(source: &CrossNamespaceObjectReference, alert_namespace: &str, event: &Event) -> bool {
    let object = &event.involved_object;
    let namespace = source
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(alert_namespace);
    object.kind.as_deref() == Some(source.kind.as_str())
        && object.namespace.as_deref() == Some(namespace)
        && name_matches(&source.name, object.name.as_deref().unwrap_or_default())
}

/// Whether an Alert's severity and message lists let the event through.
fn filters_pass(alert: &Alert, event: &Event) -> bool {
    if alert.spec.event_severity.as_deref() == Some("error") && event.severity != "error" {
        return false;
    }
    let any = |list: &Option<Vec<String>>| {
        list.iter()
            .flatten()
            .any(|r| regex::Regex::new(r).is_ok_and(|r| r.is_match(&event.message)))
    };
    let included =
        alert.spec.inclusion_list.as_ref().is_none_or(|l| l.is_empty()) || any(&alert.spec.inclusion_list);
    included && !any(&alert.spec.exclusion_list)
}

impl Dispatcher {
    /// Takes one event: duplicates and trace events go no further; each matching Alert's
    /// Provider gets its own delivery task.
    pub async fn dispatch(self: &Arc<Self>, event: Event) -> Admission {
        if !self.limiter.admit(&event.key()) {
            return Admission::Duplicate;
        }
        if event.severity == "trace" {
            return Admission::Accepted;
        }
        let mut labels: Option<BTreeMap<String, String>> = None;
        for alert in self.alerts.state() {
            if alert.spec.suspend == Some(true) || !filters_pass(&alert, &event) {
                continue;
            }
            let alert_namespace = alert.namespace().unwrap_or_default();
            let mut matched = false;
            for source in &alert.spec.event_sources {
                if self.no_cross_namespace_refs
                    && source
                        .namespace
                        .as_deref()
                        .is_some_and(|n| !n.is_empty() && n != alert_namespace)
                {
                    continue;
                }
                if !source_matches(source, &alert_namespace, &event) {
                    continue;
                }
                if let Some(wanted) = source.match_labels.as_ref().filter(|m| !m.is_empty()) {
                    if labels.is_none() {
                        labels = Some(self.labels_of(&event).await);
                    }
                    let have = labels.as_ref();
                    if !wanted.iter().all(|(k, v)| have.and_then(|l| l.get(k)) == Some(v)) {
                        continue;
                    }
                }
                matched = true;
                break;
            }
            if !matched {
                continue;
            }
            let key = kube::runtime::reflector::ObjectRef::<Provider>::new(&alert.spec.provider_ref.name)
                .within(&alert_namespace);
            let Some(provider) = self.providers.get(&key) else {
                tracing::warn!(alert = %alert.name_any(), namespace = %alert_namespace, provider = %alert.spec.provider_ref.name, "the alert's provider does not exist");
                continue;
            };
            if provider.spec.suspend == Some(true) {
                continue;
            }
            let mut extra: Vec<(String, String)> = alert
                .spec
                .event_metadata
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(summary) = alert.spec.summary.as_ref().filter(|s| !s.is_empty()) {
                extra.push(("summary".into(), summary.clone()));
            }
            let outgoing = event.cleaned_with(&extra);
            let this = self.clone();
            let slots = this.slots(&provider);
            tokio::spawn(async move {
                // Closed only on drop: acquiring cannot fail while the dispatcher lives.
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                this.deliver(&alert, &provider, outgoing).await
            });
        }
        Admission::Accepted
    }

    /// The delivery slots of `provider`.
    fn slots(&self, provider: &Provider) -> Arc<tokio::sync::Semaphore> {
        let uid = provider
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| provider.name_any());
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.len() > 10_000 {
            // Providers come and go; idle entries are dropped, busy ones kept.
            in_flight.retain(|_, s| s.available_permits() < DELIVERIES_PER_PROVIDER);
        }
        in_flight
            .entry(uid)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(DELIVERIES_PER_PROVIDER)))
            .clone()
    }

    /// The labels of the event's object (none when it cannot be read).
    async fn labels_of(&self, event: &Event) -> BTreeMap<String, String> {
        let object = &event.involved_object;
        let (group, version) =
            driftless_apply::object::group_version(object.api_version.as_deref().unwrap_or_default());
        let Ok((resource, namespaced)) = self
            .discovery
            .resolve(
                &self.client,
                &group,
                &version,
                object.kind.as_deref().unwrap_or_default(),
            )
            .await
        else {
            return BTreeMap::new();
        };
        let api = driftless_apply::discovery::api(
            &self.client,
            &resource,
            namespaced,
            object.namespace.as_deref().unwrap_or_default(),
        );
        match api.get_opt(object.name.as_deref().unwrap_or_default()).await {
            Ok(Some(found)) => found.metadata.labels.unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    /// Sends `event` through `provider`, retrying what may pass later; a delivery that fails
    /// for good is logged and reported on the Alert.
    async fn deliver(&self, alert: &Alert, provider: &Provider, event: Event) {
        let namespace = provider.namespace().unwrap_or_default();
        let outcome = async {
            let (mut target, http) = crate::connect::target(&self.client, provider)
                .await
                .map_err(Failure::fatal)?;
            if !providers::wants(&target, &event) {
                return Ok(());
            }
            target.alert = (
                alert.namespace().unwrap_or_default(),
                alert.name_any(),
                alert.metadata.uid.clone().unwrap_or_default(),
            );
            target.api_endpoint = self.google.pubsub.clone();
            let timeout = provider
                .spec
                .timeout
                .as_deref()
                .and_then(|t| driftless_runtime::duration::parse(t).ok())
                .unwrap_or(DEFAULT_TIMEOUT);
            let mint = || async {
                let mut minted = target.clone();
                let minting = crate::connect::mint(&mut minted, &http, self.google.pubsub_authenticated);
                match tokio::time::timeout(timeout, minting).await {
                    Ok(Ok(())) => Ok(minted),
                    Ok(Err(problem)) => Err(Failure {
                        retry: matches!(problem, Problem::Unavailable(_)),
                        message: problem.message().to_string(),
                    }),
                    Err(_) => Err(Failure {
                        retry: true,
                        message: "getting an access token timed out".into(),
                    }),
                }
            };
            let mut target = mint.retry(backoff()).when(|f: &Failure| f.retry).await?;
            if let Some(expression) = provider.spec.commit_status_expr.as_deref().filter(|e| {
                !e.is_empty() && providers::COMMIT_STATUS_TYPES.contains(&target.provider_type.as_str())
            }) {
                let as_json = |o: serde_json::Result<serde_json::Value>| o.unwrap_or_default();
                target.commit_status = Some(
                    providers::evaluate_commit_status(
                        expression,
                        &event,
                        &as_json(serde_json::to_value(alert)),
                        &as_json(serde_json::to_value(provider)),
                    )
                    .map_err(Failure::fatal)?,
                );
            }
            if target.provider_type == "nats" {
                let send = || async {
                    crate::nats::send(&target, &event, timeout)
                        .await
                        .map_err(|(retry, message)| Failure { retry, message })
                };
                return send.retry(backoff()).when(|f: &Failure| f.retry).await;
            }
            if crate::comments::TYPES.contains(&target.provider_type.as_str()) {
                let send = || async {
                    crate::comments::send(&http, &target, &event, timeout)
                        .await
                        .map_err(|e| Failure {
                            retry: e.retry,
                            message: e.message,
                        })
                };
                return send.retry(backoff()).when(|f: &Failure| f.retry).await;
            }
            for request in providers::requests(&target, &event).map_err(Failure::fatal)? {
                let send = || async {
                    let method = reqwest::Method::from_bytes(request.method.as_bytes())
                        .unwrap_or(reqwest::Method::POST);
                    let mut builder = http
                        .request(method, &request.url)
                        .timeout(timeout)
                        .body(request.body.clone());
                    for (k, v) in &request.headers {
                        builder = builder.header(k, v);
                    }
                    let response = builder.send().await.map_err(|e| Failure {
                        retry: true,
                        message: format!(
                            "{} {} failed: {}",
                            request.method,
                            redacted(&request.url),
                            without_url(&e)
                        ),
                    })?;
                    let status = response.status().as_u16();
                    let body = response.bytes().await.unwrap_or_default();
                    providers::accepted(&target, status, &body).map_err(|message| Failure {
                        retry: status >= 500 || status == 429,
                        message,
                    })
                };
                send.retry(backoff()).when(|f: &Failure| f.retry).await?;
            }
            Ok::<(), Failure>(())
        }
        .await;
        match outcome {
            Ok(()) => {
                tracing::debug!(provider = %provider.name_any(), %namespace, reason = %event.reason, "event sent")
            }
            Err(failure) => {
                tracing::error!(
                    provider = %provider.name_any(),
                    %namespace,
                    provider_type = %provider.spec.provider_type,
                    error = %failure.message,
                    "failed to send notification"
                );
                let message = format!(
                    "failed to send notification to provider '{}': {}",
                    provider.name_any(),
                    failure.message
                );
                self.recorder
                    .publish(alert, EventType::Warning, "NotificationFailed", &message, &[])
                    .await;
            }
        }
    }
}

/// How a delivery step that may pass later is retried.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
}

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug)]
struct Failure {
    retry: bool,
    message: String,
}

impl Failure {
    fn fatal(message: String) -> Self {
        Self {
            retry: false,
            message,
        }
    }
}

/// A URL without its query and credentials (a webhook URL's path may be its secret too, so
/// only the host is kept).
fn redacted(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}/…", u.scheme())))
        .unwrap_or_else(|| "the provider address".into())
}

/// A reqwest error without the URL it carries (which may hold a token).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "connection failed".into();
    }
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "…");
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn alert(spec: serde_json::Value) -> Alert {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": "a", "namespace": "apps"}, "spec": spec
        }))
        .unwrap()
    }

    fn event(severity: &str, name: &str, message: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": name, "namespace": "apps"},
            "severity": severity, "message": message, "reason": "R", "reportingController": "kc"
        }))
        .unwrap()
    }

    #[test]
    fn sources_severity_and_lists_decide() {
        let a = alert(
            serde_json::json!({"providerRef": {"name": "p"}, "eventSeverity": "error",
            "eventSources": [{"kind": "Kustomization", "name": "web-*"}],
            "inclusionList": ["failed"], "exclusionList": ["ignored"]}),
        );
        let source = &a.spec.event_sources[0];
        assert!(source_matches(source, "apps", &event("error", "web-1", "x")));
        assert!(!source_matches(source, "apps", &event("error", "db", "x")));
        assert!(!source_matches(source, "other", &event("error", "web-1", "x")));
        assert!(filters_pass(&a, &event("error", "web-1", "apply failed")));
        assert!(!filters_pass(&a, &event("info", "web-1", "apply failed")));
        assert!(!filters_pass(&a, &event("error", "web-1", "all good")));
        assert!(!filters_pass(&a, &event("error", "web-1", "failed but ignored")));
    }

    #[test]
    fn duplicates_within_the_interval_are_dropped() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        assert!(limiter.admit("a"));
        assert!(!limiter.admit("a"));
        assert!(limiter.admit("b"));
        let none = RateLimiter::new(Duration::ZERO);
        assert!(none.admit("a") && none.admit("a"));
    }
}
