//! Step 7: the build. Flux's generated kustomization.yaml and the native kustomize engine
//! (`driftless-build`, shared with the CLI), SOPS decryption (of the files secretGenerators read
//! before the build, of Secrets after it), then postBuild substitution.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::reasons;
use driftless_apply::field_text;
use driftless_build::{BuildError, substitute};
use driftless_runtime::reconcile::ReconcileError;
use driftless_runtime::work::{Blocking, blocking};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use crate::reconciler::{KustomizationReconciler, build_failed};

/// The artifact or the spec is wrong for decryption (no `decryption`, a wrong key, an
/// unsupported provider): the user must fix it.
fn invalid(message: impl Into<String>) -> ReconcileError {
    ReconcileError::stalled(reasons::BUILD_FAILED, message)
}

impl KustomizationReconciler {
    /// Prepares the kustomization.yaml in `dir`, decrypts the files its secretGenerators read,
    /// builds it (reading nothing outside `root`), decrypts Secrets, and substitutes postBuild
    /// variables. Blocking work runs off the async runtime within `timeout`.
    pub(crate) async fn build_objects(
        &self,
        ks: &Kustomization,
        client: &Client,
        root: &Path,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Vec<Value>, ReconcileError> {
        let failed = |e: BuildError| build_failed(e, self.settings.requeue_dependency);
        let off_runtime = |e: Blocking<BuildError>| match e {
            Blocking::Failed(e) => failed(e),
            other => ReconcileError::transient(reasons::BUILD_FAILED, other.to_string()),
        };
        // Fields Flux honours that need what this controller does not have: refused by name,
        // never accepted silently. Without the gate, Flux's own refusal comes first.
        if ks
            .spec
            .decryption
            .as_ref()
            .and_then(|d| d.service_account_name.as_deref())
            .is_some_and(|s| !s.is_empty())
        {
            if !self.settings.object_level_workload_identity {
                return Err(ReconcileError::stalled(
                    reasons::FEATURE_GATE_DISABLED,
                    format!(
                        "to use spec.decryption.serviceAccountName for decryption authentication please enable the {} feature gate in the controller",
                        driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY.0
                    ),
                ));
            }
            return Err(failed(BuildError::Invalid(
                "spec.decryption.serviceAccountName (KMS workload identity) is not supported: \
                 use decryption.secretRef with age or OpenPGP keys"
                    .into(),
            )));
        }
        let spec = ks.spec.clone();
        let (root, dir) = (root.to_path_buf(), dir.to_path_buf());
        let (prepared, jail) = (dir.clone(), root.clone());
        // Only with decryption configured are secretGenerator files looked at (as Flux does):
        // without it, a reconcile reads no more files than the build does.
        let scan = ks.spec.decryption.is_some();
        let encrypted = blocking(timeout, move || {
            driftless_build::generator::prepare(&prepared, &spec)?;
            Ok(if scan {
                crate::sops::encrypted_generator_sources(&prepared, &jail)
            } else {
                Vec::new()
            })
        })
        .await
        .map_err(off_runtime)?;
        // Files that secretGenerators read are decrypted before the build, Secrets after it;
        // the keys are read once for both.
        let mut keys = None;
        if !encrypted.is_empty()
            && let Some(decryption) = &ks.spec.decryption
        {
            let file_keys = Arc::new(self.decryption_keys(ks, client, decryption).await?);
            keys = Some(file_keys.clone());
            blocking(timeout, move || {
                encrypted
                    .iter()
                    .try_for_each(|file| crate::sops::decrypt_file(file, &file_keys))
                    .map_err(BuildError::Invalid)
            })
            .await
            .map_err(off_runtime)?;
        }
        let remote_bases = !self.settings.no_remote_bases;
        let mut objects = blocking(timeout, move || {
            driftless_build::kustomize(&dir, &root, remote_bases)
        })
        .await
        .map_err(off_runtime)?;

        self.decrypt(ks, client, &mut objects, keys).await?;

        if let Some(post_build) = &ks.spec.post_build {
            let namespace = ks.namespace().unwrap_or_default();
            let vars = substitute::variables(client, &namespace, post_build)
                .await
                .map_err(failed)?;
            substitute::substitute_objects(
                &mut objects,
                &vars,
                post_build,
                self.settings.strict_substitutions,
            )
            .map_err(failed)?;
        }
        if let Some(metadata) = &ks.spec.common_metadata {
            driftless_build::set_common_metadata(&mut objects, metadata);
        }
        Ok(objects)
    }

    /// SOPS-encrypted Secrets are decrypted with the age and OpenPGP keys of `decryption.secretRef`; without
    /// decryption configured they fail the build rather than reach the cluster encrypted.
    async fn decrypt(
        &self,
        ks: &Kustomization,
        client: &Client,
        objects: &mut [Value],
        mut keys: Option<Arc<crate::sops::Keys>>,
    ) -> Result<(), ReconcileError> {
        for object in objects.iter_mut() {
            if object.get("kind").and_then(Value::as_str) != Some("Secret")
                || !crate::sops::is_encrypted(object)
            {
                continue;
            }
            if object
                .pointer("/metadata/annotations/kustomize.toolkit.fluxcd.io~1decrypt")
                .and_then(Value::as_str)
                == Some("disabled")
            {
                continue;
            }
            let name = field_text(object, "/metadata/name");
            let namespace = field_text(object, "/metadata/namespace");
            let Some(decryption) = &ks.spec.decryption else {
                return Err(invalid(format!(
                    "Secret/{namespace}/{name} is SOPS encrypted, configuring decryption is required for this secret to be reconciled"
                )));
            };
            if keys.is_none() {
                keys = Some(Arc::new(self.decryption_keys(ks, client, decryption).await?));
            }
            let Some(keys) = keys.as_ref() else { continue };
            crate::sops::decrypt(object, keys).map_err(|e| {
                invalid(format!(
                    "failed to decrypt and format '{namespace}/{name}' Secret data: {e}"
                ))
            })?;
        }
        Ok(())
    }

    async fn decryption_keys(
        &self,
        ks: &Kustomization,
        client: &Client,
        decryption: &driftless_api::kustomize::Decryption,
    ) -> Result<crate::sops::Keys, ReconcileError> {
        if decryption.provider != "sops" {
            return Err(invalid(format!(
                "unsupported decryption provider '{}'",
                decryption.provider
            )));
        }
        // Without a Secret of its own, the keys of `--sops-age-secret` in the controller's
        // namespace decrypt, as Flux's fallback does.
        let (namespace, name) = match (&decryption.secret_ref, &self.settings.sops_age_secret) {
            (Some(secret_ref), _) => (ks.namespace().unwrap_or_default(), secret_ref.name.clone()),
            (None, Some(fallback)) => fallback.clone(),
            (None, None) => {
                return Err(invalid(
                    "decryption.secretRef is required: only keys from a Secret (age, OpenPGP) are supported \
                     (or --sops-age-secret)",
                ));
            }
        };
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&name)
            .await
            .map_err(|e| match e {
                kube::Error::Api(ref api) if api.code == 404 => ReconcileError::waiting(
                    reasons::BUILD_FAILED,
                    format!("sops decryption Secret '{namespace}/{}' not found", name),
                    self.settings.requeue_dependency,
                ),
                e => ReconcileError::transient(
                    reasons::BUILD_FAILED,
                    format!("cannot get sops decryption Secret '{namespace}/{}': {e}", name),
                ),
            })?;
        let data = secret.data.unwrap_or_default();
        crate::sops::Keys::from_secret_data(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
            .map_err(invalid)
    }
}
