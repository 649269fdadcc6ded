//! Deletion of a HelmRelease (the runtime's step 1 calls it before removing the finalizer):
//! its release is uninstalled as `spec.uninstall` says, unless the HelmRelease is suspended
//! (Flux leaves a suspended release alone) or the identity Helm acts as is gone, and the
//! HelmChart its template made is deleted.

use driftless_api::helm::{HelmRelease, reasons as helm_reasons};
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError};

use crate::reconciler::{HelmReleaseReconciler, Run};

/// Whether the identity Helm acts as still exists: without its kubeconfig Secret or its
/// ServiceAccount the release cannot be uninstalled, and, as Flux does, deletion goes on
/// without (a finalizer that can never be removed would block the namespace forever).
async fn can_act(
    r: &HelmReleaseReconciler,
    hr: &HelmRelease,
    ctx: &ReconcileContext<HelmRelease>,
) -> Result<bool, ReconcileError> {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use kube::{Api, ResourceExt};
    let namespace = hr.namespace().unwrap_or_default();
    let unavailable =
        |e: kube::Error| ReconcileError::transient(helm_reasons::UNINSTALL_FAILED, e.to_string());
    if let Some(secret) = hr.spec.kube_config.as_ref().and_then(|k| k.secret_ref.as_ref()) {
        let found = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&secret.name)
            .await
            .map_err(unavailable)?;
        if found.is_none() {
            tracing::warn!(secret = %secret.name, "kubeconfig secret gone: the release is left installed");
            return Ok(false);
        }
        // The account lives in the remote cluster: not checked here.
        return Ok(true);
    }
    let account = hr
        .spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| Some(r.settings.default_service_account.clone()).filter(|s| !s.is_empty()));
    if let Some(account) = account {
        let found = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&account)
            .await
            .map_err(unavailable)?;
        if found.is_none() {
            tracing::warn!(%account, "service account gone: the release is left installed");
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn cleanup(
    r: &HelmReleaseReconciler,
    hr: &HelmRelease,
    ctx: &ReconcileContext<HelmRelease>,
) -> Result<(), ReconcileError> {
    let mut status = hr.status.clone().unwrap_or_default();
    let mut run = Run::for_deletion(hr, &mut status, ctx);
    let installed = hr
        .status
        .as_ref()
        .and_then(|s| s.history.as_ref())
        .is_some_and(|h| !h.is_empty());
    if hr.spec.suspend != Some(true) && installed && can_act(r, hr, ctx).await? {
        crate::connect::connect(r, &mut run).await?;
        let releases = crate::release::history(&run.client, &run.release_namespace, &run.release_name)
            .await
            .map_err(|m| ReconcileError::transient(helm_reasons::UNINSTALL_FAILED, m))?;
        let present = releases.first().is_some_and(|r| r.info.status != "uninstalled");
        if present {
            let args =
                crate::actions::uninstall_args(hr, &run.release_name, &run.release_namespace, run.timeout);
            let timeout = crate::actions::uninstall_timeout(hr, run.timeout);
            r.helm.run(&args, &run.connection, timeout).await.map_err(|e| {
                ReconcileError::transient(
                    helm_reasons::UNINSTALL_FAILED,
                    format!(
                        "Helm uninstall failed for release {}/{}: {}",
                        run.release_namespace, run.release_name, e.message
                    ),
                )
            })?;
            tracing::info!(release = %run.release_name, namespace = %run.release_namespace, "uninstalled");
        }
    }
    if let Some(chart) = hr.status.as_ref().and_then(|s| s.helm_chart.clone()) {
        crate::chart::delete_helm_chart(&ctx.client, &chart).await?;
    }
    Ok(())
}
