//! Wiring of a controller binary: logging, the client, probes and metrics, leader election and
//! graceful shutdown on SIGTERM. `main.rs` of each controller stays a few lines:
//!
//! ```no_run
//! # async fn f(args: driftless_runtime::args::CommonArgs) -> anyhow::Result<()> {
//! let rt = driftless_runtime::runtime::Runtime::start("source-controller", args, &[]).await?;
//! let work = rt.shutdown().wait();   // start the kind controllers here instead
//! rt.run(work).await
//! # }
//! ```

use crate::{
    args::CommonArgs,
    leader::{LeaderElector, LeaseTiming},
    metrics::{self, Metrics, Readiness},
    reconcile::LoopSettings,
    telemetry,
};
use kube::Client;
use sha2::{Digest as _, Sha256};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// A clonable shutdown signal, fired on SIGTERM or SIGINT.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown was requested.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + Clone + 'static {
        let rx = self.0.clone();
        let fut = async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        };
        futures::FutureExt::shared(Box::pin(fut))
    }
}

/// The running process: client, flags, metrics, readiness and shutdown.
pub struct Runtime {
    /// Client for the cluster (from KUBECONFIG or the in-cluster service account).
    pub client: Client,
    /// Common flags.
    pub args: CommonArgs,
    /// Controller name, e.g. `source-controller`.
    pub name: String,
    /// Process metrics.
    pub metrics: Metrics,
    /// Feature gates in force (`--feature-gates` over the controller's defaults).
    pub gates: crate::features::FeatureGates,
    readiness: Readiness,
    shutdown: Shutdown,
}

impl Runtime {
    /// Initialises logging, connects to the cluster, installs signal handlers and starts the
    /// metrics and probe endpoints.
    ///
    /// `gates` are the controller's feature gates with Flux's defaults; `--feature-gates` naming
    /// another one stops the start, as in Flux.
    pub async fn start(name: &str, args: CommonArgs, gates: &[(&str, bool)]) -> anyhow::Result<Self> {
        telemetry::init(&args);
        let gates =
            crate::features::FeatureGates::parse(&args.feature_gates, gates).map_err(anyhow::Error::msg)?;
        let client = crate::apiserver::infer().await?;
        // notification-controller listens on `--events-addr`; the others send there too.
        if name != "notification-controller" && !args.events_addr.is_empty() {
            crate::events::forward_to(&args.events_addr)?;
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            let _ = tx.send(true);
        });
        let shutdown = Shutdown(rx);
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let server = metrics::serve(
            args.metrics_addr,
            args.health_addr,
            metrics.clone(),
            readiness.clone(),
            shutdown.wait(),
        );
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(%err, "metrics/probe server failed");
            }
        });
        tracing::info!(controller = name, version = env!("CARGO_PKG_VERSION"), "starting");
        Ok(Self {
            client,
            args,
            name: name.to_string(),
            metrics,
            gates,
            readiness,
            shutdown,
        })
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Loop settings from the flags, with this controller's default concurrency.
    pub fn loop_settings(&self, default_concurrency: u16) -> LoopSettings {
        LoopSettings {
            concurrency: self.args.concurrent.unwrap_or(default_concurrency),
            namespace: self.args.watch_namespace(),
            label_selector: self.args.label_selector().map(str::to_string),
            min_retry_delay: self.args.min_retry_delay,
            max_retry_delay: self.args.max_retry_delay,
            jitter_percent: self.args.interval_jitter_percentage,
        }
    }

    /// Runs `work` (the controllers) — after winning the election when it is enabled — until it
    /// ends on shutdown. Losing leadership is an error: the process must exit so that only the
    /// new leader reconciles.
    pub async fn run(self, work: impl Future<Output = ()>) -> anyhow::Result<()> {
        if !self.args.enable_leader_election {
            self.readiness.set_ready();
            work.await;
            crate::events::drain(EVENTS_DRAIN).await;
            tracing::info!("stopped");
            return Ok(());
        }
        // A standby is healthy and ready; it only does not reconcile.
        self.readiness.set_ready();
        let elector = LeaderElector::new(
            self.client.clone(),
            &CommonArgs::runtime_namespace(),
            &lease_name(&self.name, &self.args.watch_label_selector),
            LeaseTiming {
                lease_duration: self.args.leader_election_lease_duration,
                renew_deadline: self.args.leader_election_renew_deadline,
                retry_period: self.args.leader_election_retry_period,
            },
        );
        tokio::select! {
            _ = elector.acquire() => {}
            _ = self.shutdown.wait() => return Ok(()),
        }
        let lost = tokio::select! {
            _ = work => false,
            _ = elector.keep_renewing() => true,
        };
        if lost {
            anyhow::bail!("leader election lost");
        }
        crate::events::drain(EVENTS_DRAIN).await;
        if self.args.leader_election_release_on_cancel {
            elector.release().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How long a stopping controller may take to write the events its last reconciles published
/// (they are written after a short linger: `events::drain`).
const EVENTS_DRAIN: Duration = Duration::from_secs(5);

/// Who this process is, for event `reportingInstance` and lease holder ids: `POD_NAME` (set
/// from the downward API in the install manifests), else the host name.
pub fn instance_name() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "driftless".into())
}

impl Runtime {
    /// Runs a controller binary whose kinds are still to come: probes, metrics and leader
    /// election only, until shutdown.
    pub async fn run_idle(self, pending_kinds: &str) -> anyhow::Result<()> {
        tracing::warn!("no kinds are reconciled by this build yet: {pending_kinds} arrive with their issues");
        let work = self.shutdown.wait();
        self.run(work).await
    }
}

/// Flux's lease id: `<controller>-leader-election`, made distinct per shard by the first 8 hex
/// digits of the SHA-256 of the label selector, as Flux's `leaderelection.GenerateID` does. Every
/// version of every controller (Flux's included) must derive the same name, or two of them would
/// elect two leaders: hence a specified hash, not std's `DefaultHasher` (whose output may change
/// between Rust releases).
fn lease_name(controller: &str, label_selector: &str) -> String {
    if label_selector.is_empty() {
        return format!("{controller}-leader-election");
    }
    let digest = Sha256::digest(label_selector.as_bytes());
    format!("{controller}-leader-election-{}", hex::encode(&digest[..4]))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::lease_name;

    #[test]
    fn the_lease_name_is_fluxs_without_a_selector() {
        assert_eq!(
            lease_name("source-controller", ""),
            "source-controller-leader-election"
        );
    }

    /// Pinned: a different name for the same shard would let two controller versions both lead.
    #[test]
    fn the_lease_name_of_a_shard_never_changes() {
        assert_eq!(
            lease_name("source-controller", "shard=a"),
            "source-controller-leader-election-3d8dfb26"
        );
        // Flux's own test vector for `GenerateID(id, "bar")`: `<id>-fcde2b2e`.
        assert_eq!(lease_name("foo", "bar"), "foo-leader-election-fcde2b2e");
        assert_ne!(
            lease_name("source-controller", "shard=b"),
            lease_name("source-controller", "shard=a")
        );
    }
}
