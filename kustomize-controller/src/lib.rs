//! kustomize-controller: reconciles Kustomizations, from a source artifact to a reconciled
//! cluster (build with the native kustomize engine, server-side apply in stages, prune, health).
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the Kustomization controller with its triggers.

mod build;
mod client;
mod deletion;
mod health;
pub mod history;
pub mod reconciler;
pub mod sops;
pub mod source;
pub mod triggers;

use driftless_api::kustomize::STATUS_FIELD_MANAGER;
use driftless_runtime::{args::CommonArgs, reconcile::KindController, runtime::Runtime};
use std::sync::Arc;

/// Name used for events and the leader-election lease.
pub const CONTROLLER_NAME: &str = "kustomize-controller";
/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "kustomize-controller",
    version,
    about = "Driftless kustomize-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What kubeConfig Secrets may do.
    #[command(flatten)]
    pub kubeconfig: driftless_runtime::kubeconfig::KubeconfigPolicy,
    /// Refuse remote bases (Flux's multi-tenancy lockdown sets it); by default they are fetched
    /// (git repositories anonymously, http(s) files), as Flux does.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub no_remote_bases: bool,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    ("DisableStatusPollerCache", true),
    ("DisableFailFastBehavior", false),
    ("StrictPostBuildSubstitutions", true),
    ("GroupChangeLog", false),
    ("AdditiveCELDependencyCheck", false),
    ("ExternalArtifact", false),
    ("CancelHealthCheckOnNewRevision", false),
    ("DisableConfigWatchers", false),
    ("DirectSourceFetch", false),
    ("MigrateAPIVersion", false),
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
        default_kubeconfig_service_account: rt.args.default_kubeconfig_service_account.clone(),
        kubeconfig: args.kubeconfig,
        no_remote_bases: args.no_remote_bases,
        strict_substitutions: rt.gates.enabled("StrictPostBuildSubstitutions"),
        cancel_health_on_new_revision: rt.gates.enabled("CancelHealthCheckOnNewRevision"),
        allow_external_artifact: rt.gates.enabled("ExternalArtifact"),
    };
    let loop_settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let controller = Arc::new(
        KindController::new(
            reconciler::KustomizationReconciler::new(settings, config),
            rt.client.clone(),
            CONTROLLER_NAME,
            STATUS_FIELD_MANAGER,
            rt.metrics.clone(),
            loop_settings.clone(),
        )
        .with_triggers(triggers::triggers(
            rt.client.clone(),
            loop_settings.namespace.clone(),
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
            "--no-remote-bases=true",
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
