//! Step 6: the client objects are applied with: the controller's own, one impersonating a
//! ServiceAccount, or one for a remote cluster (`kubeConfig.secretRef`, or
//! `kubeConfig.configMapRef` with a workload-identity token, `driftless_runtime::workload_identity`).

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::reasons;
use driftless_runtime::reconcile::ReconcileError;
use driftless_runtime::secrets::Problem;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::reconciler::KustomizationReconciler;

/// The spec names something that is not right: the user must fix it.
fn invalid(message: String) -> ReconcileError {
    ReconcileError::stalled(reasons::RECONCILIATION_FAILED, message)
}

impl KustomizationReconciler {
    /// A problem of a referenced object, by its class (not there yet: waited for as long as
    /// `--requeue-dependency` says).
    fn problem(&self, problem: Problem) -> ReconcileError {
        problem.into_error_after(reasons::RECONCILIATION_FAILED, self.settings.requeue_dependency)
    }

    pub(crate) async fn client_for(
        &self,
        ks: &Kustomization,
        own: &Client,
    ) -> Result<Client, ReconcileError> {
        let namespace = ks.namespace().unwrap_or_default();
        let mut config = match ks.spec.kube_config.as_ref().and_then(|k| k.secret_ref.as_ref()) {
            Some(secret_ref) => {
                let secrets: Api<Secret> = Api::namespaced(own.clone(), &namespace);
                let secret = secrets.get(&secret_ref.name).await.map_err(|e| {
                    self.problem(Problem::of_read(
                        &format!("kubeconfig secret '{}'", secret_ref.name),
                        e,
                    ))
                })?;
                let data = secret.data.unwrap_or_default();
                let (_, kubeconfig) = driftless_runtime::kubeconfig::from_secret(
                    &secret_ref.name,
                    &data,
                    secret_ref.key.as_deref(),
                    self.settings.kubeconfig,
                )
                .map_err(invalid)?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| invalid(format!("invalid kubeconfig: {e}")))?
            }
            None => match ks
                .spec
                .kube_config
                .as_ref()
                .and_then(|k| k.config_map_ref.as_ref())
            {
                Some(config_map_ref) => {
                    let (_, kubeconfig) = self
                        .workload_identity
                        .kubeconfig(own, &namespace, &config_map_ref.name)
                        .await
                        .map_err(|p| self.problem(p))?;
                    kube::Config::from_custom_kubeconfig(
                        kubeconfig,
                        &kube::config::KubeConfigOptions::default(),
                    )
                    .await
                    .map_err(|e| invalid(format!("invalid kubeconfig: {e}")))?
                }
                None => self.config.clone(),
            },
        };
        let account = ks
            .spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some(self.settings.default_service_account.clone()).filter(|s| !s.is_empty()));
        match account {
            None if ks.spec.kube_config.is_none() => Ok(own.clone()),
            account => {
                if let Some(account) = account {
                    config.auth_info.impersonate =
                        Some(format!("system:serviceaccount:{namespace}:{account}"));
                }
                driftless_runtime::apiserver::client_for_one_reconcile(config)
                    .map_err(|e| invalid(format!("failed to build client: {e}")))
            }
        }
    }
}
