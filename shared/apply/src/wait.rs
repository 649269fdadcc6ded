//! Waiting for applied objects to become healthy (kstatus, or the `healthCheckExprs` that name
//! their kind), polled with a short first interval that backs off, and cancellable between polls.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use kube::runtime::wait::await_condition;
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

impl HealthWait<'_> {
    /// Waits until every target (id, version) is healthy, one fails, `timeout` passes, or
    /// `cancel` (asked once polls have slowed to their longest interval) returns a message.
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
                match health {
                    Health::Current => {}
                    Health::Failed(message) if self.fail_fast => {
                        return Err(Unhealthy::Failed(format!(
                            "{} status: 'Failed': {message}",
                            id.display()
                        )));
                    }
                    Health::Failed(_) => still.push((target, "Failed")),
                    Health::InProgress(_) => still.push((target, "InProgress")),
                }
            }
            first = false;
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() + poll > deadline {
                let described: Vec<String> = pending
                    .iter()
                    .map(|((id, _), state)| format!("{} status: '{state}'", id.display()))
                    .collect();
                return Err(Unhealthy::Timeout(format!(
                    "timeout waiting for: [{}]",
                    described.join(", ")
                )));
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

    /// The health of one live object (a missing one, or one that cannot be read, is in progress).
    async fn read(&self, id: &ObjectId, version: &str) -> Health {
        let (resource, namespaced) = match self
            .discovery
            .resolve(self.client, &id.group, version, &id.kind)
            .await
        {
            Ok(found) => found,
            Err(e) => return Health::InProgress(e),
        };
        match api(self.client, &resource, namespaced, &id.namespace)
            .get_opt(&id.name)
            .await
        {
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
