//! Step 7: who Helm acts as and on which cluster. Helm gets the same identity as the storage
//! reads: `--kube-as-user system:serviceaccount:<ns>:<sa>` for `serviceAccountName` (else
//! `--default-service-account`), `--kubeconfig` for `kubeConfig.secretRef` or for the cluster of
//! a `kubeConfig.configMapRef` (a ServiceAccount token as its user); without either,
//! Helm inherits the controller's own connection (`KUBECONFIG` or the in-cluster account).

use driftless_api::meta::reasons;
use driftless_runtime::reconcile::ReconcileError;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use crate::reconciler::{HelmReleaseReconciler, Run};

/// The spec names something that is not right: the user must fix it.
fn invalid(message: String) -> ReconcileError {
    ReconcileError::stalled(reasons::FAILED, message)
}

pub async fn connect(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(), ReconcileError> {
    let namespace = run.hr.namespace().unwrap_or_default();
    let spec = &run.hr.spec;
    let mut config = None;
    if let Some(kube_config) = &spec.kube_config {
        let (text, kubeconfig) = match (&kube_config.secret_ref, &kube_config.config_map_ref) {
            (Some(secret_ref), _) => {
                let secret = Api::<Secret>::namespaced(run.ctx.client.clone(), &namespace)
                    .get_opt(&secret_ref.name)
                    .await
                    .map_err(|e| {
                        ReconcileError::transient(
                            reasons::FAILED,
                            format!("failed to get kubeconfig secret '{}': {e}", secret_ref.name),
                        )
                    })?
                    .ok_or_else(|| {
                        ReconcileError::waiting(
                            reasons::FAILED,
                            format!("kubeconfig secret '{}' not found", secret_ref.name),
                            r.settings.requeue_dependency,
                        )
                    })?;
                let data = secret.data.unwrap_or_default();
                driftless_runtime::kubeconfig::from_secret(
                    &secret_ref.name,
                    &data,
                    secret_ref.key.as_deref(),
                    r.settings.kubeconfig,
                )
                .map_err(invalid)?
            }
            (None, Some(config_map_ref)) => r
                .workload_identity
                .kubeconfig(&run.ctx.client, &namespace, &config_map_ref.name)
                .await
                .map_err(|problem| {
                    problem.into_error_after(reasons::FAILED, r.settings.requeue_dependency)
                })?,
            (None, None) => {
                return Err(invalid("kubeConfig needs a secretRef or a configMapRef".into()));
            }
        };
        config = Some(
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| invalid(format!("invalid kubeconfig: {e}")))?,
        );
        let dir = run
            .workdir
            .as_ref()
            .map(|w| w.path().to_path_buf())
            .ok_or_else(|| {
                ReconcileError::transient(reasons::FAILED, "no work directory for the kubeconfig")
            })?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).map_err(|e| ReconcileError::transient(reasons::FAILED, e.to_string()))?;
        run.connection.kubeconfig = Some(path);
    }
    let account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| Some(r.settings.default_service_account.clone()).filter(|s| !s.is_empty()));
    if let Some(account) = account {
        let user = format!("system:serviceaccount:{namespace}:{account}");
        let config = config.get_or_insert_with(|| r.config.clone());
        config.auth_info.impersonate = Some(user.clone());
        run.connection.as_user = Some(user);
    }
    if let Some(config) = config {
        run.client = driftless_runtime::apiserver::client_for_one_reconcile(config)
            .map_err(|e| invalid(format!("failed to build client: {e}")))?;
    }
    Ok(())
}
