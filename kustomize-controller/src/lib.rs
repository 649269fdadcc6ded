//! kustomize-controller: reconciles Kustomizations, from a source artifact to a reconciled
//! cluster (build with the native kustomize engine, server-side apply in stages, prune, health).
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the Kustomization controller with its triggers.

mod build;
pub mod client;
mod deletion;
mod health;
pub mod history;
pub mod reconciler;
pub mod sops;
pub mod source;
pub mod triggers;

use driftless_api::kustomize::STATUS_FIELD_MANAGER;
use driftless_runtime::{
    args::CommonArgs,
    features::{DIRECT_SOURCE_FETCH, OBJECT_LEVEL_WORKLOAD_IDENTITY},
    reconcile::KindController,
    runtime::Runtime,
    sources::SourceCache,
};
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
    /// Objects of one apply stage planned and written at once.
    #[arg(long, default_value_t = driftless_apply::DEFAULT_CONCURRENCY)]
    pub concurrent_ssa: usize,
    /// Kinds (`group/Kind`, comma-separated; `Kind` alone for the core group) applied in a stage
    /// of their own, after cluster and class definitions and before everything else.
    #[arg(long, default_value = "")]
    pub custom_apply_stage_kinds: String,
    /// A field manager whose fields on applied objects are taken over, as kubectl's are
    /// (repeatable).
    #[arg(long = "override-manager")]
    pub override_managers: Vec<String>,
    /// Retries of an artifact download.
    #[arg(long, default_value_t = 9)]
    pub http_retry: u32,
    /// A Secret in RUNTIME_NAMESPACE whose age keys decrypt SOPS files of Kustomizations whose
    /// `decryption` names no Secret.
    #[arg(long, default_value = "")]
    pub sops_age_secret: String,
    /// Flux's allowlist of Vault/OpenBao servers for decryption with a ServiceAccount token;
    /// such decryption (`decryption.serviceAccountName`) is refused by this controller, so the
    /// list has nothing to allow.
    #[arg(long, default_value = "")]
    pub sops_vault_configmap: String,
    /// ServiceAccount for KMS decryption when `decryption.serviceAccountName` is unset (needs
    /// the ObjectLevelWorkloadIdentity gate, as in Flux; KMS itself is refused by field).
    #[arg(long, default_value = "")]
    pub default_decryption_service_account: String,
    /// Label selector of the ConfigMaps and Secrets whose changes reconcile the Kustomizations
    /// that use them.
    #[arg(long, default_value = triggers::WATCH_CONFIGS_SELECTOR)]
    pub watch_configs_label_selector: String,
    /// `--token-cache-max-size`, `--token-cache-max-duration`.
    #[command(flatten)]
    pub token_cache: driftless_runtime::workload_identity::TokenCacheLimits,
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
    DIRECT_SOURCE_FETCH,
    ("MigrateAPIVersion", false),
    OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    driftless_artifact::install_crypto_provider();
    let config = kube::Config::infer().await?;
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let workload_identity = rt.gates.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY.0);
    let default_accounts = !args.default_decryption_service_account.is_empty()
        || !rt.args.default_kubeconfig_service_account.is_empty();
    if default_accounts && !workload_identity {
        anyhow::bail!(
            "invalid configuration: cannot set default service accounts when the feature gate {} is not enabled",
            OBJECT_LEVEL_WORKLOAD_IDENTITY.0
        );
    }
    let custom_stage = driftless_apply::GroupKind::parse_list(&args.custom_apply_stage_kinds)
        .map_err(|e| anyhow::anyhow!("unable to parse --custom-apply-stage-kinds: {e}"))?;
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
        concurrent_ssa: args.concurrent_ssa,
        custom_stage,
        override_managers: args.override_managers,
        migrate_api_version: rt.gates.enabled("MigrateAPIVersion"),
        fail_fast: !rt.gates.enabled("DisableFailFastBehavior"),
        additive_ready_expr: rt.gates.enabled("AdditiveCELDependencyCheck"),
        group_change_log: rt.gates.enabled("GroupChangeLog"),
        sops_age_secret: (!args.sops_age_secret.is_empty())
            .then(|| (CommonArgs::runtime_namespace(), args.sops_age_secret)),
        object_level_workload_identity: workload_identity,
        http_retry: args.http_retry,
        token_cache: args.token_cache,
        sources: SourceCache::new(rt.gates.enabled(DIRECT_SOURCE_FETCH.0)),
        // DisableConfigWatchers: changed ConfigMaps and Secrets no longer reconcile anything.
        watch_configs: (!rt.gates.enabled("DisableConfigWatchers"))
            .then_some(args.watch_configs_label_selector),
    };
    let watch_configs = settings.watch_configs.clone();
    let loop_settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let sources = settings.sources.clone();
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
            watch_configs,
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

    /// Every flag of Flux v2.9's kustomize-controller, with a value it takes; an unknown flag
    /// and an out-of-range jitter still stop the start.
    #[test]
    fn every_flux_flag_is_accepted() {
        let args = [
            "kustomize-controller",
            "--metrics-addr=:8080",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
            "--health-addr=:9440",
            "--concurrent=4",
            "--concurrent-ssa=8",
            "--requeue-dependency=30s",
            "--no-remote-bases=false",
            "--http-retry=3",
            "--default-service-account=",
            "--default-decryption-service-account=",
            "--default-kubeconfig-service-account=",
            "--sops-age-secret=sops-age",
            "--sops-vault-configmap=",
            "--override-manager=helm",
            "--override-manager=argocd-controller",
            "--custom-apply-stage-kinds=rbac.authorization.k8s.io/Role,ConfigMap",
            "--kube-api-qps=50",
            "--kube-api-burst=300",
            "--log-encoding=json",
            "--log-level=debug",
            "--enable-leader-election=false",
            "--leader-election-release-on-cancel=true",
            "--leader-election-lease-duration=35s",
            "--leader-election-renew-deadline=30s",
            "--leader-election-retry-period=5s",
            "--no-cross-namespace-refs=false",
            "--insecure-kubeconfig-exec=false",
            "--insecure-kubeconfig-tls=false",
            "--min-retry-delay=750ms",
            "--max-retry-delay=15m",
            "--feature-gates=GroupChangeLog=true,DisableFailFastBehavior=true",
            "--watch-all-namespaces=true",
            "--watch-label-selector=sharding.fluxcd.io/key=shard1",
            "--watch-configs-label-selector=reconcile.fluxcd.io/watch=Enabled",
            "--interval-jitter-percentage=10",
            "--token-cache-max-size=100",
            "--token-cache-max-duration=1h",
        ];
        let parsed = Args::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.concurrent_ssa, 8);
        assert_eq!(parsed.override_managers, ["helm", "argocd-controller"]);
        assert!(Args::try_parse_from(["kustomize-controller", "--no-such-flag=1"]).is_err());
        assert!(Args::try_parse_from(["kustomize-controller", "--interval-jitter-percentage=100"]).is_err());
    }
}
