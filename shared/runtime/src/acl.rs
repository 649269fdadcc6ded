//! Flux's cross-namespace access lists (`spec.accessFrom.namespaceSelectors`): an object in
//! another namespace may refer to this one only when its namespace's labels match a selector.

use crate::{reconcile::ReconcileError, secrets::Problem};
use driftless_api::meta::AccessFrom;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

/// How each of Flux's controllers words a blocked cross-namespace reference.
#[derive(Clone, Copy, Debug)]
pub enum Wording {
    /// kustomize-controller and image-automation-controller: "can't access '…'".
    CantAccess,
    /// image-reflector-controller: "cannot access '…'".
    CannotAccess,
    /// helm-controller: "cross-namespace references are not allowed: …".
    NotAllowed,
}

/// With `--no-cross-namespace-refs`, an object refers to its own namespace only: a reference from
/// `from_namespace` to `kind/namespace/name` elsewhere stalls with `AccessDenied`, in the words of
/// the Flux controller doing the same.
pub fn check_cross_namespace(
    no_cross_namespace_refs: bool,
    wording: Wording,
    from_namespace: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ReconcileError> {
    if no_cross_namespace_refs && namespace != from_namespace {
        let message = match wording {
            Wording::CantAccess => {
                format!(
                    "can't access '{kind}/{namespace}/{name}', cross-namespace references have been blocked"
                )
            }
            Wording::CannotAccess => {
                format!(
                    "cannot access '{kind}/{namespace}/{name}', cross-namespace references have been blocked"
                )
            }
            Wording::NotAllowed => {
                format!("cross-namespace references are not allowed: cannot access {kind} {namespace}/{name}")
            }
        };
        return Err(ReconcileError::stalled(
            driftless_api::meta::reasons::ACCESS_DENIED,
            message,
        ));
    }
    Ok(())
}

/// Flux's `ExternalArtifact` feature gate (off by default): a Kustomization or HelmRelease may
/// use an ExternalArtifact source only when it is on; otherwise it is refused as Flux does.
pub fn check_external_artifact(
    allowed: bool,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ReconcileError> {
    if kind == "ExternalArtifact" && !allowed {
        return Err(ReconcileError::stalled(
            driftless_api::meta::reasons::ACCESS_DENIED,
            format!("can't access '{kind}/{namespace}/{name}', ExternalArtifact feature gate is disabled"),
        ));
    }
    Ok(())
}

/// Whether an object in `from_namespace` may use `target` (`<namespace>/<name>`, in
/// `target_namespace`) whose ACL is `access_from`. Same-namespace references are always allowed;
/// a denial is [`Problem::Invalid`] (the user fixes labels or the ACL) with Flux's message.
pub async fn check(
    client: &Client,
    access_from: Option<&AccessFrom>,
    target_namespace: &str,
    target: &str,
    from_namespace: &str,
) -> Result<(), Problem> {
    if target_namespace == from_namespace {
        return Ok(());
    }
    let Some(acl) = access_from.filter(|a| !a.namespace_selectors.is_empty()) else {
        return Err(Problem::Invalid(format!(
            "access denied: '{target}' can't be accessed due to missing ACL labels on 'accessFrom'"
        )));
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = namespaces
        .get(from_namespace)
        .await
        .map_err(|e| Problem::of_read(&format!("namespace '{from_namespace}'"), e))?;
    let labels = namespace.metadata.labels.unwrap_or_default();
    let matches = acl.namespace_selectors.iter().any(|selector| {
        selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    if matches {
        Ok(())
    } else {
        Err(Problem::Invalid(format!(
            "access denied: '{target}' can't be accessed due to ACL labels mismatch on namespace '{from_namespace}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_artifacts_need_the_gate() {
        assert!(check_external_artifact(true, "ExternalArtifact", "ns", "a").is_ok());
        assert!(check_external_artifact(false, "GitRepository", "ns", "a").is_ok());
        let err = check_external_artifact(false, "ExternalArtifact", "ns", "a").unwrap_err();
        assert_eq!(
            err.message,
            "can't access 'ExternalArtifact/ns/a', ExternalArtifact feature gate is disabled"
        );
    }
}
