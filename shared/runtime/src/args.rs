//! Flags every controller shares, named as Flux names them (Flux API reference §8.1).

use crate::duration;
use clap::{ArgAction, Args};
use std::{net::SocketAddr, time::Duration};

/// Parses a Go duration flag value.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// Parses a Go-style listen address (`:8080`, `127.0.0.1:8080`).
pub fn addr_arg(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|e| format!("invalid address {s:?}: {e}"))
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogEncoding {
    /// One JSON object per line (Flux's default).
    Json,
    /// Human-readable lines.
    Console,
}

/// The flags common to every controller.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Reconciles run at once; the controller's own default when unset (source 2, others 4).
    #[arg(long)]
    pub concurrent: Option<u16>,
    /// Watch objects in all namespaces; false watches only RUNTIME_NAMESPACE.
    #[arg(long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub watch_all_namespaces: bool,
    /// Only reconcile objects matching this label selector (sharding).
    #[arg(long, default_value = "")]
    pub watch_label_selector: String,
    /// Refuse references to objects in other namespaces.
    #[arg(long, action = ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub no_cross_namespace_refs: bool,
    /// Service account impersonated (or used for workload identity) when an object names none.
    #[arg(long, default_value = "")]
    pub default_service_account: String,
    /// Service account whose token reaches a remote cluster (`kubeConfig.configMapRef`) when
    /// the ConfigMap names none.
    #[arg(long, default_value = "")]
    pub default_kubeconfig_service_account: String,
    /// Where events are sent (Flux's flag): each controller records Kubernetes Events and also
    /// POSTs every event here as Flux's event JSON, as Flux's recorder does (our
    /// notification-controller takes both and sends each once). notification-controller listens
    /// here (default `:9090`).
    #[arg(long, env = "EVENTS_ADDR", default_value = "")]
    pub events_addr: String,
    /// Retry period for dependencies and sources that are not ready.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub requeue_dependency: Duration,
    /// Address of the Prometheus endpoint.
    #[arg(long, env = "METRICS_ADDR", default_value = ":8080", value_parser = addr_arg)]
    pub metrics_addr: SocketAddr,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, default_value = ":9440", value_parser = addr_arg)]
    pub health_addr: SocketAddr,
    /// Log level: trace, debug, info or error.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log encoding.
    #[arg(long, value_enum, default_value_t = LogEncoding::Json)]
    pub log_encoding: LogEncoding,
    /// Elect a leader through a coordination.k8s.io Lease so only one replica reconciles.
    #[arg(long, action = ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub enable_leader_election: bool,
    /// How long a lease is valid without renewal.
    #[arg(long, default_value = "35s", value_parser = duration_arg)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub leader_election_renew_deadline: Duration,
    /// How often candidates try to acquire or renew the lease.
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub leader_election_retry_period: Duration,
    /// Release the lease on graceful shutdown so a standby takes over at once.
    #[arg(long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election_release_on_cancel: bool,
    /// Shortest retry delay after a transient failure.
    #[arg(long, default_value = "750ms", value_parser = duration_arg)]
    pub min_retry_delay: Duration,
    /// Longest retry delay after repeated transient failures.
    #[arg(long, default_value = "15m", value_parser = duration_arg)]
    pub max_retry_delay: Duration,
    /// Jitter added to requeue intervals, in percent (below 100, as Flux requires).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..100))]
    pub interval_jitter_percentage: u8,
    /// Accepted for compatibility with Flux's manifests.
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f32,
    /// Accepted for compatibility with Flux's manifests.
    #[arg(long, default_value_t = 300)]
    pub kube_api_burst: u32,
    /// Feature gates, `Gate=true,…`: each controller has Flux's, with Flux's defaults; an unknown
    /// gate stops the start (`driftless_runtime::features`).
    #[arg(long, default_value = "")]
    pub feature_gates: String,
}

impl CommonArgs {
    /// Namespace the controller runs in (`RUNTIME_NAMESPACE`, default `flux-system`).
    pub fn runtime_namespace() -> String {
        Self::runtime_namespace_env().unwrap_or_else(|| "flux-system".into())
    }

    fn runtime_namespace_env() -> Option<String> {
        std::env::var("RUNTIME_NAMESPACE").ok().filter(|s| !s.is_empty())
    }

    /// The namespace to watch, or None for all namespaces: with `--watch-all-namespaces=false`,
    /// `RUNTIME_NAMESPACE` (all of them when it is unset, as in Flux).
    pub fn watch_namespace(&self) -> Option<String> {
        if self.watch_all_namespaces {
            return None;
        }
        Self::runtime_namespace_env()
    }

    /// The label selector to watch with, if any.
    pub fn label_selector(&self) -> Option<&str> {
        (!self.watch_label_selector.is_empty()).then_some(self.watch_label_selector.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn flux_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "x",
            "--watch-all-namespaces=false",
            "--enable-leader-election",
            "--metrics-addr=:18080",
            "--health-addr=127.0.0.1:19440",
            "--requeue-dependency=5s",
            "--log-encoding=console",
        ])
        .unwrap();
        assert!(!cli.common.watch_all_namespaces);
        assert!(cli.common.enable_leader_election);
        assert_eq!(cli.common.metrics_addr, "0.0.0.0:18080".parse().unwrap());
        assert_eq!(cli.common.requeue_dependency, Duration::from_secs(5));
        assert_eq!(cli.common.log_encoding, LogEncoding::Console);
    }
}
