//! Waiting for applied objects to become healthy (kstatus, or the `healthCheckExprs` that name
//! their kind): first from what the apply returned, then by watching the few objects still in
//! progress (or polling many, with a short first interval that backs off); cancellable.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DynamicObject, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::await_condition;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use serde_json::Value;

use crate::discovery::{Discovery, api};
use crate::health::{CustomHealth, Health, compute_with};
use crate::object::ObjectId;
use crate::observed::Observed;

/// Health is polled soon after the apply (most objects are ready within a moment: a controller
/// only has to observe them), then less and less often, up to every 2 s. A fixed 2 s first
/// wait held each worker for 2 s per Kustomization (measured: half of W1's time at N = 1000).
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// Objects still in progress after their first sample are watched, each with a field selector
/// on its name: one LIST and one WATCH however long it takes (a Deployment waiting for a busy
/// kube-controller-manager cost a read every 2 s), and it is seen healthy the moment it is.
/// Up to this many per wait, since each watch holds a connection; more are polled.
const WATCH_AT_MOST: usize = 8;

/// Why a wait ended without every object healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unhealthy {
    /// An object failed: `Kind/namespace/name status: 'Failed': <why>`.
    Failed(String),
    /// The timeout passed first: `timeout waiting for: [<objects still in progress>]`.
    Timeout(String),
    /// The caller's cancel check said to stop, with its message.
    Canceled(String),
}

/// What a health wait reads with: the client and discovery, the observed-object cache it keeps
/// current, and the custom health expressions.
pub struct HealthWait<'a> {
    pub client: &'a Client,
    pub discovery: &'a Discovery,
    pub observed: &'a Observed,
    pub custom: &'a [CustomHealth],
    /// A failed object ends the wait at once; otherwise it is waited on like one in progress
    /// until the timeout (Flux's DisableFailFastBehavior gate turns this off).
    pub fail_fast: bool,
}

/// What a sample of one object says for the wait: healthy (None), still waited for (its state
/// for the timeout message), or the end of the wait (a failure, failing fast).
fn verdict(id: &ObjectId, health: Health, fail_fast: bool) -> Result<Option<&'static str>, Unhealthy> {
    match health {
        Health::Current => Ok(None),
        Health::Failed(message) if fail_fast => Err(Unhealthy::Failed(format!(
            "{} status: 'Failed': {message}",
            id.display()
        ))),
        Health::Failed(_) => Ok(Some("Failed")),
        Health::InProgress(_) => Ok(Some("InProgress")),
    }
}

/// The timeout, naming the objects still waited for with their last states.
fn timed_out<'a>(pending: impl Iterator<Item = (&'a ObjectId, &'a str)>) -> Unhealthy {
    let described: Vec<String> = pending
        .map(|(id, state)| format!("{} status: '{state}'", id.display()))
        .collect();
    Unhealthy::Timeout(format!("timeout waiting for: [{}]", described.join(", ")))
}

impl HealthWait<'_> {
    /// Waits until every target (id, version) is healthy, one fails, `timeout` passes, or
    /// `cancel` (asked every [`POLL_MAX`] once the wait is not short) returns a message.
    /// `known` holds live objects as the apply just saw them: they are the first sample (no
    /// read), and an object found healthy is not read again.
    pub async fn until_healthy<C, F>(
        &self,
        targets: &[(ObjectId, String)],
        known: &HashMap<ObjectId, Value>,
        timeout: Duration,
        mut cancel: C,
    ) -> Result<(), Unhealthy>
    where
        C: FnMut() -> F,
        F: Future<Output = Option<String>>,
    {
        let deadline = Instant::now() + timeout;
        let mut first = true;
        let mut poll = POLL_FIRST;
        // The objects not yet healthy, each with what its last sample said.
        let mut pending: Vec<(&(ObjectId, String), &str)> =
            targets.iter().map(|t| (t, "InProgress")).collect();
        loop {
            let mut still = Vec::new();
            for (target, _) in pending {
                let (id, version) = target;
                let health = match known.get(id).filter(|_| first) {
                    Some(live) => compute_with(live, self.custom),
                    None => self.read(id, version).await,
                };
                if let Some(state) = verdict(id, health, self.fail_fast)? {
                    still.push((target, state));
                }
            }
            let sampled_once = std::mem::replace(&mut first, false);
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if sampled_once && pending.len() <= WATCH_AT_MOST {
                return self.watch(pending, known, deadline, cancel).await;
            }
            if Instant::now() + poll > deadline {
                return Err(timed_out(pending.iter().map(|((id, _), state)| (id, *state))));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
            // Cancellation is asked once polls are slow, so that short waits cost no extra reads.
            if poll == POLL_MAX
                && let Some(message) = cancel().await
            {
                return Err(Unhealthy::Canceled(message));
            }
        }
    }

    /// Waits for the `pending` objects (with their last states) by watching each one (see
    /// [`WATCH_AT_MOST`]); an object the identity may not watch is read every [`POLL_MAX`]
    /// instead, and one whose kind discovery does not know yet (a CRD still being installed)
    /// is looked up again as often. An object `known` from the apply is watched from the
    /// version the apply saw. Same outcomes as [`until_healthy`](Self::until_healthy).
    async fn watch<C, F>(
        &self,
        pending: Vec<(&(ObjectId, String), &str)>,
        known: &HashMap<ObjectId, Value>,
        deadline: Instant,
        mut cancel: C,
    ) -> Result<(), Unhealthy>
    where
        C: FnMut() -> F,
        F: Future<Output = Option<String>>,
    {
        let (sender, mut updates) = tokio::sync::mpsc::channel::<(usize, Option<Value>)>(64);
        let mut followers = tokio::task::JoinSet::new();
        let mut states: Vec<Option<&str>> = pending.iter().map(|(_, state)| Some(*state)).collect();
        // The objects no follower watches yet: their kind is not known.
        let mut unknown: Vec<usize> = (0..pending.len()).collect();
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        let mut ask = tokio::time::interval(POLL_MAX);
        let mut asked = false;
        loop {
            tokio::select! {
                Some((index, object)) = updates.recv() => {
                    let ((id, version), _) = pending[index];
                    let health = match object {
                        Some(mut object) => {
                            // Items of a LIST carry no kind: the health rules need it.
                            if object.get("kind").is_none() {
                                let gvk = GroupVersionKind::gvk(&id.group, version, &id.kind);
                                object["kind"] = Value::from(gvk.kind.as_str());
                                object["apiVersion"] = Value::from(gvk.api_version());
                            }
                            self.observed.record(&object);
                            compute_with(&object, self.custom)
                        }
                        None => Health::InProgress("NotFound".into()),
                    };
                    states[index] = verdict(id, health, self.fail_fast)?;
                    if states.iter().all(Option::is_none) {
                        return Ok(());
                    }
                }
                () = &mut sleep => {
                    let still = pending.iter().zip(&states).filter_map(|(((id, _), _), state)| state.map(|s| (id, s)));
                    return Err(timed_out(still));
                }
                _ = ask.tick() => {
                    // (the first tick is at once: it starts the followers)
                    if std::mem::replace(&mut asked, true)
                        && let Some(message) = cancel().await
                    {
                        return Err(Unhealthy::Canceled(message));
                    }
                    let mut still_unknown = Vec::new();
                    for index in unknown {
                        let ((id, version), _) = pending[index];
                        match self.api_of(id, version).await {
                            Ok(api) => {
                                let seen = known
                                    .get(id)
                                    .and_then(|live| live.pointer("/metadata/resourceVersion"))
                                    .and_then(Value::as_str)
                                    .map(str::to_string);
                                followers.spawn(follow(api, id.name.clone(), seen, index, sender.clone()));
                            }
                            Err(_) => still_unknown.push(index),
                        }
                    }
                    unknown = still_unknown;
                }
            }
        }
    }

    /// The API of an object's kind, from discovery.
    async fn api_of(&self, id: &ObjectId, version: &str) -> Result<Api<DynamicObject>, String> {
        let (resource, namespaced) = self
            .discovery
            .resolve(self.client, &id.group, version, &id.kind)
            .await?;
        Ok(api(self.client, &resource, namespaced, &id.namespace))
    }

    /// The health of one live object (a missing one, or one that cannot be read, is in progress).
    async fn read(&self, id: &ObjectId, version: &str) -> Health {
        let api = match self.api_of(id, version).await {
            Ok(api) => api,
            Err(e) => return Health::InProgress(e),
        };
        match api.get_opt(&id.name).await {
            Ok(Some(object)) => {
                let object = serde_json::to_value(object).unwrap_or_default();
                self.observed.record(&object);
                compute_with(&object, self.custom)
            }
            Ok(None) => Health::InProgress("NotFound".into()),
            Err(e) => Health::InProgress(e.to_string()),
        }
    }
}

/// Sends object `name` (None while it does not exist) to `updates` as `index` each time it
/// changes, until the receiver is gone: watched (a broken watch is resumed with backoff), or
/// read every [`POLL_MAX`] when the identity may not list or watch it (an impersonated
/// ServiceAccount that may only get it).
///
/// With `seen`, the resource version of a sample already taken, the first watch starts there
/// and needs no LIST (a round trip less on every wait); when it cannot start (the version is
/// too old, no right to watch) or ends, the object is listed and watched as without it.
async fn follow(
    api: Api<DynamicObject>,
    name: String,
    seen: Option<String>,
    index: usize,
    updates: tokio::sync::mpsc::Sender<(usize, Option<Value>)>,
) {
    let selector = format!("metadata.name={name}");
    if let Some(version) = seen
        && let Ok(changes) = api
            .watch(&WatchParams::default().fields(&selector), &version)
            .await
    {
        let mut changes = std::pin::pin!(changes);
        while let Some(Ok(change)) = changes.next().await {
            let object = match change {
                WatchEvent::Added(object) | WatchEvent::Modified(object) => Some(object),
                WatchEvent::Deleted(_) => None,
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(_) => break,
            };
            let object = object.map(|o| serde_json::to_value(o).unwrap_or_default());
            if updates.send((index, object)).await.is_err() {
                return;
            }
        }
    }
    let config = watcher::Config::default().fields(&selector);
    let mut events = std::pin::pin!(watcher(api.clone(), config).default_backoff());
    let mut listed = false;
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Init) => {
                listed = false;
                continue;
            }
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => {
                listed = true;
                Some(object)
            }
            Ok(watcher::Event::InitDone) if listed => continue,
            Ok(watcher::Event::InitDone | watcher::Event::Delete(_)) => None,
            Err(
                watcher::Error::InitialListFailed(kube::Error::Api(e))
                | watcher::Error::WatchStartFailed(kube::Error::Api(e)),
            ) if e.code == 403 || e.code == 405 => break,
            Err(_) => continue,
        };
        let object = object.map(|o| serde_json::to_value(o).unwrap_or_default());
        if updates.send((index, object)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::time::sleep(POLL_MAX).await;
        let object = match api.get_opt(&name).await {
            Ok(found) => found.map(|o| serde_json::to_value(o).unwrap_or_default()),
            Err(_) => continue,
        };
        if updates.send((index, object)).await.is_err() {
            return;
        }
    }
}

/// Waits until `condition` holds for the object `name` (None when it does not exist), for at
/// most `timeout`; returns whether it held. It watches the object; where the identity may
/// only get it (an impersonated ServiceAccount without list and watch), it reads it every
/// 500 ms instead.
pub async fn until<K, C>(api: Api<K>, name: &str, condition: C, timeout: Duration) -> bool
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
    C: Fn(Option<&K>) -> bool + Clone + Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let watched = tokio::time::timeout(timeout, await_condition(api.clone(), name, condition.clone())).await;
    match watched {
        Ok(Ok(_)) => return true,
        Err(_) => return false,
        Ok(Err(_)) => {}
    }
    while Instant::now() < deadline {
        match api.get_opt(name).await {
            Ok(found) if condition(found.as_ref()) => return true,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_object_ends_the_wait_only_when_failing_fast() {
        let id = ObjectId {
            namespace: "ns".into(),
            name: "migrate".into(),
            group: "batch".into(),
            kind: "Job".into(),
        };
        let failed = || Health::Failed("Job has reached the specified backoff limit".into());
        let Err(Unhealthy::Failed(message)) = verdict(&id, failed(), true) else {
            panic!("a failed object ends the wait at once");
        };
        assert_eq!(
            message,
            "Job/ns/migrate status: 'Failed': Job has reached the specified backoff limit"
        );
        // DisableFailFastBehavior: waited on like one in progress; the timeout names its state.
        assert_eq!(verdict(&id, failed(), false).ok(), Some(Some("Failed")));
        assert_eq!(verdict(&id, Health::Current, false).ok(), Some(None));
    }
}
