//! Step 7: who Helm acts as and on which cluster. Helm gets the same identity as the storage
//! reads: `--kube-as-user system:serviceaccount:<ns>:<sa>` for `serviceAccountName` (else
//! `--default-service-account`), `--kubeconfig` for `kubeConfig.secretRef`; without either,
//! Helm inherits the controller's own connection (`KUBECONFIG` or the in-cluster account).

use driftless_api::meta::reasons;
use driftless_runtime::reconcile::ReconcileError;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

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
        let Some(secret_ref) = &kube_config.secret_ref else {
            return Err(invalid(
                "kubeConfig.configMapRef is not supported by helm-controller yet; use kubeConfig.secretRef"
                    .into(),
            ));
        };
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
        let key = secret_ref.key.clone().unwrap_or_default();
        let bytes = [key.as_str(), "value", "value.yaml"]
            .iter()
            .filter(|k| !k.is_empty())
            .find_map(|k| data.get(*k))
            .ok_or_else(|| {
                invalid(format!(
                    "kubeconfig secret '{}' has no 'value' or 'value.yaml' key",
                    secret_ref.name
                ))
            })?;
        let text = String::from_utf8_lossy(&bytes.0).into_owned();
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| invalid(format!("invalid kubeconfig: {e}")))?;
        if runs_or_reads(&kubeconfig) {
            return Err(invalid(format!(
                "kubeconfig secret '{}' uses exec, an auth provider or file paths, which helm-controller does not run or read",
                secret_ref.name
            )));
        }
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
        run.client = Client::try_from(config).map_err(|e| invalid(format!("failed to build client: {e}")))?;
    }
    Ok(())
}

/// Whether a kubeconfig would make the controller run a command (`exec`, an auth provider) or
/// read its own files (token, certificate and key paths): a tenant's kubeconfig must carry
/// its credentials inline, as Flux requires without `--insecure-kubeconfig-exec`.
fn runs_or_reads(kubeconfig: &kube::config::Kubeconfig) -> bool {
    let users = kubeconfig.auth_infos.iter().filter_map(|n| n.auth_info.as_ref());
    let clusters = kubeconfig.clusters.iter().filter_map(|n| n.cluster.as_ref());
    users.into_iter().any(|a| {
        a.exec.is_some()
            || a.auth_provider.is_some()
            || a.token_file.is_some()
            || a.client_certificate.is_some()
            || a.client_key.is_some()
    }) || clusters.into_iter().any(|c| c.certificate_authority.is_some())
}
