//! helm-controller: reconciles HelmReleases by driving the real `helm` CLI (Helm 4), so
//! releases are Helm's own: `helm list`, `helm history` and `helm rollback` see and handle
//! them, and a cluster moved from Flux keeps its releases.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the HelmRelease controller with its triggers. The
//! same binary is Helm's post-renderer (`helm-controller post-render`, [`post_render`]).

pub mod actions;
pub mod chart;
mod connect;
mod deletion;
mod drift;
pub mod helm;
pub mod post_render;
pub mod reconciler;
mod record;
pub mod release;
pub mod triggers;
pub mod values;

use std::path::PathBuf;
use std::sync::Arc;

use driftless_api::helm::STATUS_FIELD_MANAGER;
use driftless_runtime::{args::CommonArgs, reconcile::KindController, runtime::Runtime};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "helm-controller";
/// Reconcile slots per permitted Helm process.
const RECONCILES_PER_HELM_PROCESS: u16 = 4;

/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "helm-controller",
    version,
    about = "Driftless helm-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The `helm` binary (Helm 4) the controller drives.
    #[arg(long, env = "HELM_BIN", default_value = "helm")]
    pub helm_path: PathBuf,
    /// What kubeConfig Secrets may do.
    #[command(flatten)]
    pub kubeconfig: driftless_runtime::kubeconfig::KubeconfigPolicy,
    /// `--token-cache-max-size`, `--token-cache-max-duration` (`kubeConfig.configMapRef` tokens).
    #[command(flatten)]
    pub token_cache: driftless_runtime::workload_identity::TokenCacheLimits,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    ("DetectDrift", false),
    ("CorrectDrift", false),
    ("AllowDNSLookups", false),
    ("OOMWatch", false),
    ("AdoptLegacyReleases", false),
    ("DisableChartDigestTracking", false),
    ("AdditiveCELDependencyCheck", false),
    ("ExternalArtifact", false),
    ("DisableConfigWatchers", false),
    driftless_runtime::features::DIRECT_SOURCE_FETCH,
    ("UseHelm3Defaults", false),
    ("CancelHealthCheckOnNewRevision", false),
    ("DefaultToRetryOnFailure", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    driftless_artifact::install_crypto_provider();
    let config = kube::Config::infer().await?;
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let settings = reconciler::Settings {
        no_cross_namespace_refs: rt.args.no_cross_namespace_refs,
        requeue_dependency: rt.args.requeue_dependency,
        default_service_account: rt.args.default_service_account.clone(),
        kubeconfig: args.kubeconfig,
        allow_external_artifact: rt.gates.enabled("ExternalArtifact"),
        additive_ready_expr: rt.gates.enabled("AdditiveCELDependencyCheck"),
        default_kubeconfig_service_account: rt.args.default_kubeconfig_service_account.clone(),
        token_cache: args.token_cache,
        object_level_workload_identity: rt
            .gates
            .enabled(driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY.0),
        sources: driftless_runtime::sources::SourceCache::new(
            rt.gates
                .enabled(driftless_runtime::features::DIRECT_SOURCE_FETCH.0),
        ),
    };
    let sources = settings.sources.clone();
    let post_renderer = std::env::current_exe()?;
    let mut loop_settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    // `--concurrent` bounds the Helm actions running at once (in Flux, one per reconcile); the
    // reconciles themselves get more slots, so their API reads, status writes and waits for a
    // chart overlap with the actions instead of keeping a slot idle (W6: docs/benchmarks.md).
    let helm = helm::Helm::new(
        args.helm_path,
        Some(&post_renderer),
        usize::from(loop_settings.concurrency),
    )?;
    loop_settings.concurrency = loop_settings
        .concurrency
        .saturating_mul(RECONCILES_PER_HELM_PROCESS);
    let controller = Arc::new(
        KindController::new(
            reconciler::HelmReleaseReconciler::new(helm, settings, config),
            rt.client.clone(),
            CONTROLLER_NAME,
            STATUS_FIELD_MANAGER,
            rt.metrics.clone(),
            loop_settings.clone(),
        )
        .with_triggers(triggers::triggers(
            rt.client.clone(),
            loop_settings.namespace.clone(),
            sources,
        )),
    );
    let shutdown = rt.shutdown().clone();
    rt.run(async move { controller.run(shutdown.wait()).await }).await
}

#[cfg(test)]
mod flux_args_tests {
    use super::*;
    use clap::Parser;

    /// The container args of Flux v2.9's Deployment, alone and with the multi-tenancy lockdown
    /// patch's: a cluster moved from Flux keeps its manifests.
    #[test]
    fn flux_deployment_args_are_accepted() {
        let lockdown: &[&str] = &[
            "--no-cross-namespace-refs=true",
            "--default-service-account=default",
        ];
        for extra in [&[][..], lockdown] {
            let args = driftless_runtime::testing::flux_deployment_args(CONTROLLER_NAME, extra);
            if let Err(e) = Args::try_parse_from(&args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
