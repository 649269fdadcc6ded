//! Leader election with a coordination.k8s.io Lease, so two replicas never reconcile at once.
//!
//! The protocol is client-go's: a candidate takes the lease when it is free or its holder has
//! not renewed it within `leaseDurationSeconds`; the holder renews every retry period and gives
//! up leadership when it could not renew for the renew deadline. Every write carries the
//! lease's `resourceVersion`, so two candidates racing for an expired lease cannot both win.

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use std::time::{Duration, Instant};

/// Timing of the election (Flux's defaults: 35s / 30s / 5s).
#[derive(Clone, Debug)]
pub struct LeaseTiming {
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// One candidate for the leadership of a controller.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
}

impl LeaderElector {
    /// A candidate for lease `name` in `namespace` (Flux: `<controller>-leader-election`).
    pub fn new(client: Client, namespace: &str, name: &str, timing: LeaseTiming) -> Self {
        let identity = format!(
            "{}_{:016x}",
            crate::runtime::instance_name(),
            rand::random::<u64>()
        );
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity,
            timing,
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        let mut standing_by = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return;
                }
                Ok(false) if !standing_by => {
                    // Once, not every retry period: a standby may wait for hours.
                    tracing::info!(lease = %self.name, identity = %self.identity,
                        "lease held by another candidate, standing by");
                    standing_by = true;
                }
                Ok(false) => {}
                Err(err) => tracing::debug!(%err, "lease acquisition attempt failed"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the renew deadline; returns then
    /// (leadership is lost and the caller must stop reconciling).
    pub async fn keep_renewing(&self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "leadership taken by another candidate");
                    return;
                }
                Err(err) => tracing::warn!(%err, "failed to renew lease"),
            }
            if last_renewal.elapsed() > self.timing.renew_deadline {
                tracing::error!(lease = %self.name, "could not renew the lease within the renew deadline");
                return;
            }
        }
    }

    /// Releases the lease so a standby can take over at once.
    pub async fn release(&self) {
        if let Ok(mut lease) = self.api.get(&self.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(MicroTime(Timestamp::now()));
                if let Err(err) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    tracing::warn!(%err, "failed to release lease");
                } else {
                    tracing::info!(lease = %self.name, "released leadership");
                }
            }
        }
    }

    /// One step of the protocol: Ok(true) when we hold the lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration_secs = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let existing = self.api.get_opt(&self.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours {
            let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(duration_secs));
            let expired = match &spec.renew_time {
                Some(MicroTime(t)) => now.duration_since(*t) > SignedDuration::from_secs(held_for),
                None => true,
            };
            if holder.is_some() && !expired {
                return Ok(false);
            }
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(MicroTime(now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
