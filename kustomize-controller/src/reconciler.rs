//! The Kustomization reconciler: Flux's pipeline, one step per function.
//!
//! ```text
//! source artifact ─▶ dependsOn ─▶ download + verify ─▶ client (impersonation / kubeConfig)
//!   ─▶ build (generate, kustomize, SOPS check, postBuild) ─▶ apply in stages (dry-run first)
//!   ─▶ inventory + prune ─▶ health ─▶ status
//! ```

use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_api::kustomize::{FIELD_MANAGER, Kustomization, KustomizationStatus};
use driftless_api::meta::{Artifact, ReconcileStatus, reasons};
use driftless_artifact::fetch::{FetchError, Fetcher};
use driftless_runtime::conditions::{self, Status};
use driftless_runtime::duration;
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use crate::apply::{self, Applied, AppliedObject, Discovery, ObjectId, Observed, field_text, group_version};
use crate::health::{self, Health};
use crate::{generator, source, substitute};

const HEALTHY: &str = "Healthy";

/// Health is polled soon after the apply (most objects are ready within a moment: a controller
/// only has to observe them), then less and less often, up to every 2 s. A fixed 2 s first
/// wait held each worker for 2 s per Kustomization (measured: half of W1's time at N = 1000).
const HEALTH_POLL_FIRST: Duration = Duration::from_millis(100);
const HEALTH_POLL_MAX: Duration = Duration::from_secs(2);

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub no_cross_namespace_refs: bool,
    pub requeue_dependency: Duration,
    pub default_service_account: String,
    pub default_kubeconfig_service_account: String,
}

pub struct KustomizationReconciler {
    fetcher: Fetcher,
    discovery: Arc<Discovery>,
    /// What the last applies and reads saw, so unchanged objects need no second read.
    observed: Observed,
    settings: Settings,
    /// The controller's own connection, to derive impersonating clients from.
    config: kube::Config,
    /// ServiceAccount tokens for `kubeConfig.configMapRef`, reused until close to expiry.
    tokens: std::sync::Mutex<HashMap<TokenKey, (String, Instant)>>,
}

/// What a workload-identity token is for: namespace, ServiceAccount, audiences.
type TokenKey = (String, String, Vec<String>);
/// How long a requested workload-identity token is valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A cached token is replaced when less than this is left of it.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(600);

impl KustomizationReconciler {
    pub fn new(settings: Settings, config: kube::Config) -> Self {
        Self {
            fetcher: Fetcher::default(),
            discovery: Arc::new(Discovery::default()),
            observed: Observed::default(),
            settings,
            config,
            tokens: Default::default(),
        }
    }
}

/// Runs file-system work (build, decryption) off the async runtime; its errors fail the build.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ReconcileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| build_failed(e.to_string()))?
        .map_err(build_failed)
}

fn timeout_of(ks: &Kustomization) -> Duration {
    ks.spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .or_else(|| duration::parse(&ks.spec.interval).ok())
        .unwrap_or(Duration::from_secs(300))
}

fn build_failed(message: impl Into<String>) -> ReconcileError {
    ReconcileError::transient(reasons::BUILD_FAILED, message)
}

fn apply_failed(message: impl Into<String>) -> ReconcileError {
    ReconcileError::transient(reasons::RECONCILIATION_FAILED, message)
}

impl Reconciler for KustomizationReconciler {
    type Kind = Kustomization;

    async fn apply(
        &self,
        ks: &Kustomization,
        status: &mut KustomizationStatus,
        ctx: &ReconcileContext<Kustomization>,
    ) -> Result<Success, ReconcileError> {
        // Step 2: invalid health expressions stall before anything else happens.
        let custom_health = health::compile(ks.spec.health_check_exprs.as_deref().unwrap_or_default())
            .map_err(|e| ReconcileError::stalled(reasons::INVALID_CEL_EXPRESSION, e))?;
        let artifact = source::artifact(
            &ctx.client,
            ks,
            self.settings.no_cross_namespace_refs,
            self.settings.requeue_dependency,
        )
        .await?;
        let revision = artifact.revision.clone();
        self.check_dependencies(&ctx.client, ks, &artifact).await?;
        status.last_attempted_revision = Some(revision.clone());
        let timeout = timeout_of(ks);
        let started = Instant::now();
        // Re-applying the revision already applied (an interval or a requested reconcile) writes
        // no progress: that keeps a no-op reconcile to the requests the apply itself needs.
        let previous = ks.status.as_ref();
        let quiet = previous.and_then(|s| s.last_applied_revision.as_deref()) == Some(revision.as_str())
            && previous.and_then(|s| s.observed_generation) == ks.metadata.generation;
        let progress = |message: &str| {
            let message = format!(
                "{message} for revision {revision} with a timeout of {}",
                humantime(timeout)
            );
            (!quiet).then_some(message)
        };

        if let Some(message) = progress("Fetching manifests") {
            ctx.progress(ks, status, &message).await;
        }
        let workdir = tempfile::tempdir()
            .map_err(|e| ReconcileError::transient(reasons::ARTIFACT_FAILED, e.to_string()))?;
        self.fetcher
            .fetch(&artifact.url, &artifact.digest, workdir.path())
            .await
            .map_err(|e| match e {
                FetchError::NotFound(_) => ReconcileError::waiting(
                    reasons::ARTIFACT_FAILED,
                    e.to_string(),
                    self.settings.requeue_dependency,
                ),
                other => ReconcileError::transient(reasons::ARTIFACT_FAILED, other.to_string()),
            })?;
        let path = ks.spec.path.clone().unwrap_or_default();
        let dir = generator::secure_join(workdir.path(), &path)
            .map_err(|e| ReconcileError::transient(reasons::ARTIFACT_FAILED, e))?;

        let client = self.client_for(ks, &ctx.client).await?;

        if let Some(message) = progress("Building manifests") {
            ctx.progress(ks, status, &message).await;
        }
        let objects = self.build(ks, &ctx.client, workdir.path(), &dir).await?;
        let digest = crate::history::digest(&objects);

        // From here on every outcome, failures too, is recorded in the history of this build.
        let outcome: Result<(), ReconcileError> = async {
            if let Some(message) = progress("Detecting drift") {
                ctx.progress(ks, status, &message).await;
            }
            let (applied, changes, current) = self.apply_objects(ks, &client, objects).await?;

            let mut inventory = apply::inventory(
                applied
                    .iter()
                    .map(|(id, version, _)| (id.clone(), version.clone())),
            );
            let stale =
                apply::stale_entries(ks.status.as_ref().and_then(|s| s.inventory.as_ref()), &inventory);
            let mut changes = changes;
            let mut prune_errors = Vec::new();
            if ks.spec.prune && !stale.is_empty() {
                let namespace = ks.namespace().unwrap_or_default();
                let (kept, deleted, errors) =
                    apply::prune(&client, &self.discovery, &stale, (&ks.name_any(), &namespace)).await;
                inventory.entries.extend(kept);
                inventory.entries.sort_by(|a, b| a.id.cmp(&b.id));
                changes.extend(deleted);
                prune_errors = errors;
            }
            status.inventory = Some(inventory);
            if !changes.is_empty() {
                let note = changes.join("\n");
                let metadata = [("revision", revision.as_str())];
                ctx.recorder
                    .publish(ks, EventType::Normal, reasons::PROGRESSING, &note, &metadata)
                    .await;
            }
            if !prune_errors.is_empty() {
                return Err(ReconcileError::transient(
                    reasons::PRUNE_FAILED,
                    prune_errors.join("\n"),
                ));
            }

            self.check_health(
                ks,
                status,
                ctx,
                &client,
                (&applied, &current),
                &custom_health,
                quiet,
                &revision,
                timeout.saturating_sub(started.elapsed()),
            )
            .await?;
            Ok(())
        }
        .await;
        let origin_revision = artifact
            .metadata
            .as_ref()
            .and_then(|m| m.get("org.opencontainers.image.revision"))
            .cloned();
        let mut history = status.history.clone().unwrap_or_default();
        let mut metadata = BTreeMap::from([("revision".to_string(), revision.clone())]);
        if let Some(origin) = &origin_revision {
            metadata.insert("originRevision".into(), origin.clone());
        }
        let outcome_reason = match &outcome {
            Ok(()) => reasons::RECONCILIATION_SUCCEEDED,
            Err(e) => e.reason.as_str(),
        };
        crate::history::upsert(
            &mut history,
            &digest,
            outcome_reason,
            started.elapsed(),
            metadata,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        );
        status.history = Some(history);
        outcome?;
        status.last_applied_revision = Some(revision.clone());
        status.last_applied_origin_revision = origin_revision;
        Ok(Success::new(
            reasons::RECONCILIATION_SUCCEEDED,
            format!("Applied revision: {revision}"),
        )
        .with_revision(revision))
    }

    async fn cleanup(
        &self,
        ks: &Kustomization,
        ctx: &ReconcileContext<Kustomization>,
    ) -> Result<(), ReconcileError> {
        let policy = ks.spec.deletion_policy.as_deref().unwrap_or("MirrorPrune");
        let delete = match policy {
            "Delete" | "WaitForTermination" => true,
            "Orphan" => false,
            _ => ks.spec.prune,
        };
        if !delete || ks.spec.suspend == Some(true) {
            return Ok(());
        }
        let Some(inventory) = ks.status.as_ref().and_then(|s| s.inventory.as_ref()) else {
            return Ok(());
        };
        let client = self.client_for(ks, &ctx.client).await?;
        let namespace = ks.namespace().unwrap_or_default();
        let (kept, _, errors) = apply::prune(
            &client,
            &self.discovery,
            &inventory.entries,
            (&ks.name_any(), &namespace),
        )
        .await;
        if !kept.is_empty() {
            return Err(ReconcileError::transient(
                reasons::PRUNE_FAILED,
                errors.join("\n"),
            ));
        }
        if policy == "WaitForTermination" {
            let deadline = Instant::now() + timeout_of(ks);
            for entry in &inventory.entries {
                let Some(id) = ObjectId::parse(&entry.id) else {
                    continue;
                };
                let Ok((resource, namespaced)) = self
                    .discovery
                    .resolve(&client, &id.group, &entry.v, &id.kind)
                    .await
                else {
                    continue;
                };
                let api = apply::api(&client, &resource, namespaced, &id.namespace);
                while matches!(api.get_opt(&id.name).await, Ok(Some(_))) {
                    if Instant::now() > deadline {
                        return Err(ReconcileError::transient(
                            reasons::PRUNE_FAILED,
                            format!("timeout waiting for {} to be terminated", id.display()),
                        ));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Ok(())
    }
}

/// A string field of a manifest, or "".
fn humantime(d: Duration) -> String {
    duration::format(d)
}

impl KustomizationReconciler {
    /// Step 4: every dependency exists, is Ready at its generation and, when it shares the
    /// source, has applied the same revision.
    async fn check_dependencies(
        &self,
        client: &Client,
        ks: &Kustomization,
        artifact: &Artifact,
    ) -> Result<(), ReconcileError> {
        let own_namespace = ks.namespace().unwrap_or_default();
        for dep in ks.spec.depends_on.iter().flatten() {
            let namespace = dep
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| own_namespace.clone());
            let not_ready = |why: &str| {
                ReconcileError::waiting(
                    reasons::DEPENDENCY_NOT_READY,
                    format!("dependency '{namespace}/{}' {why}", dep.name),
                    self.settings.requeue_dependency,
                )
            };
            let api: Api<Kustomization> = Api::namespaced(client.clone(), &namespace);
            let found = api.get_opt(&dep.name).await.map_err(|e| {
                ReconcileError::transient(
                    reasons::DEPENDENCY_NOT_READY,
                    format!("failed to get dependency: {e}"),
                )
            })?;
            let Some(found) = found else {
                return Err(not_ready("not found"));
            };
            let dep_status = found.status.clone().unwrap_or_default();
            let ready = dep_status
                .conditions
                .as_deref()
                .is_some_and(|c| conditions::is_true(c, driftless_api::meta::condition_types::READY));
            if found.metadata.generation != dep_status.observed_generation || !ready {
                return Err(not_ready("is not ready"));
            }
            if source::source_key(&found) == source::source_key(ks)
                && dep_status.last_applied_revision.as_deref() != Some(&artifact.revision)
            {
                return Err(not_ready("revision is not up to date"));
            }
        }
        Ok(())
    }

    /// Step 6: the client the objects are applied with.
    async fn client_for(&self, ks: &Kustomization, own: &Client) -> Result<Client, ReconcileError> {
        let namespace = ks.namespace().unwrap_or_default();
        let mut config = match ks.spec.kube_config.as_ref().and_then(|k| k.secret_ref.as_ref()) {
            Some(secret_ref) => {
                let secrets: Api<Secret> = Api::namespaced(own.clone(), &namespace);
                let secret = secrets.get(&secret_ref.name).await.map_err(|e| {
                    apply_failed(format!(
                        "failed to get kubeconfig secret '{}': {e}",
                        secret_ref.name
                    ))
                })?;
                let data = secret.data.unwrap_or_default();
                let key = secret_ref.key.clone().unwrap_or_default();
                let bytes = [key.as_str(), "value", "value.yaml"]
                    .iter()
                    .filter(|k| !k.is_empty())
                    .find_map(|k| data.get(*k))
                    .ok_or_else(|| {
                        apply_failed(format!(
                            "kubeconfig secret '{}' has no 'value' or 'value.yaml' key",
                            secret_ref.name
                        ))
                    })?;
                let text = String::from_utf8_lossy(&bytes.0);
                let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
                    .map_err(|e| apply_failed(format!("invalid kubeconfig: {e}")))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| apply_failed(format!("invalid kubeconfig: {e}")))?
            }
            None => match ks
                .spec
                .kube_config
                .as_ref()
                .and_then(|k| k.config_map_ref.as_ref())
            {
                Some(config_map_ref) => {
                    self.workload_identity(own, &namespace, &config_map_ref.name)
                        .await?
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
                Client::try_from(config).map_err(|e| apply_failed(format!("failed to build client: {e}")))
            }
        }
    }

    /// A connection to the remote cluster a `kubeConfig.configMapRef` names, authenticated with
    /// a short-lived token of a ServiceAccount of the Kustomization's namespace (provider
    /// `generic`: any cluster that trusts this cluster's ServiceAccount tokens, e.g. through
    /// OIDC). ConfigMap keys: `provider`, `address`, `ca.crt`, `audiences`,
    /// `serviceAccountName`.
    async fn workload_identity(
        &self,
        own: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Config, ReconcileError> {
        let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(own.clone(), namespace);
        let data = config_maps
            .get(name)
            .await
            .map_err(|e| {
                apply_failed(format!(
                    "failed to get kubeconfig ConfigMap '{namespace}/{name}': {e}"
                ))
            })?
            .data
            .unwrap_or_default();
        let key = |k: &str| {
            data.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let provider = key("provider").unwrap_or_else(|| "generic".into());
        if provider != "generic" {
            return Err(ReconcileError::stalled(
                reasons::RECONCILIATION_FAILED,
                format!(
                    "kubeconfig ConfigMap '{namespace}/{name}': provider '{provider}' needs the cloud's workload identity, which this controller does not support; use provider 'generic' or kubeConfig.secretRef"
                ),
            ));
        }
        let address = key("address").ok_or_else(|| {
            ReconcileError::stalled(
                reasons::RECONCILIATION_FAILED,
                format!("kubeconfig ConfigMap '{namespace}/{name}' has no 'address' key"),
            )
        })?;
        let account = key("serviceAccountName")
            .or_else(|| Some(self.settings.default_kubeconfig_service_account.clone()).filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                ReconcileError::stalled(
                    reasons::RECONCILIATION_FAILED,
                    format!(
                        "kubeconfig ConfigMap '{namespace}/{name}' has no 'serviceAccountName' and no --default-kubeconfig-service-account is set"
                    ),
                )
            })?;
        let audiences = match key("audiences") {
            Some(list) => list
                .split([',', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            None => vec![address.clone()],
        };
        let token = self
            .service_account_token(own, namespace, &account, audiences)
            .await?;
        let mut cluster = serde_json::json!({"server": address});
        if let Some(ca) = data.get("ca.crt") {
            cluster["certificate-authority-data"] =
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "remote", "cluster": cluster}],
            "users": [{"name": "workload-identity", "user": {"token": token}}],
            "contexts": [{"name": "remote", "context": {"cluster": "remote", "user": "workload-identity"}}],
            "current-context": "remote",
        }))
        .map_err(|e| apply_failed(format!("invalid kubeconfig ConfigMap '{namespace}/{name}': {e}")))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| apply_failed(format!("invalid kubeconfig ConfigMap '{namespace}/{name}': {e}")))
    }

    /// A token of ServiceAccount `namespace/account` for `audiences`: a cached one while it has
    /// more than [`TOKEN_RENEW_BEFORE`] left, else a new one from the TokenRequest API.
    async fn service_account_token(
        &self,
        own: &Client,
        namespace: &str,
        account: &str,
        audiences: Vec<String>,
    ) -> Result<String, ReconcileError> {
        let key = (namespace.to_string(), account.to_string(), audiences);
        let now = Instant::now();
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((token, _)) = cached.filter(|(_, expires)| *expires > now + TOKEN_RENEW_BEFORE) {
            return Ok(token);
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": key.2, "expirationSeconds": TOKEN_LIFETIME.as_secs()},
        });
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(own.clone(), namespace);
        let response: k8s_openapi::api::authentication::v1::TokenRequest = accounts
            .create_subresource("token", account, &kube::api::PostParams::default(), &request)
            .await
            .map_err(|e| {
                apply_failed(format!(
                    "failed to get a token for ServiceAccount '{namespace}/{account}': {e}"
                ))
            })?;
        let status = response.status.unwrap_or_default();
        // The apiserver may grant less than asked: its expiration counts, from the request on.
        let granted = status
            .expiration_timestamp
            .map(|t| {
                Duration::try_from(t.0.duration_since(k8s_openapi::jiff::Timestamp::now()))
                    .unwrap_or_default()
            })
            .unwrap_or(TOKEN_LIFETIME);
        let expires = now + granted.min(TOKEN_LIFETIME);
        let token = status.token.unwrap_or_default();
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (token.clone(), expires));
        Ok(token)
    }

    /// Step 7: generate and build, then the SOPS check and postBuild substitution.
    async fn build(
        &self,
        ks: &Kustomization,
        client: &Client,
        root: &Path,
        dir: &Path,
    ) -> Result<Vec<Value>, ReconcileError> {
        let spec = ks.spec.clone();
        let (root, dir) = (root.to_path_buf(), dir.to_path_buf());
        let (prepared, jail) = (dir.clone(), root.clone());
        // Only with decryption configured are secretGenerator files looked at (as Flux does):
        // without it, a reconcile reads no more files than the build does.
        let scan = ks.spec.decryption.is_some();
        let encrypted = blocking(move || {
            generator::prepare(&prepared, &spec)?;
            Ok(if scan {
                crate::sops::encrypted_generator_sources(&prepared, &jail)
            } else {
                Vec::new()
            })
        })
        .await?;
        // Files that secretGenerators read are decrypted before the build, Secrets after it;
        // the keys are read once for both.
        let mut keys = None;
        if !encrypted.is_empty()
            && let Some(decryption) = &ks.spec.decryption
        {
            let file_keys = Arc::new(self.decryption_keys(ks, client, decryption).await?);
            keys = Some(file_keys.clone());
            blocking(move || {
                encrypted
                    .iter()
                    .try_for_each(|file| crate::sops::decrypt_file(file, &file_keys))
            })
            .await?;
        }
        let mut objects =
            blocking(move || driftless_kustomize::build(&dir, Some(&root)).map_err(|e| e.to_string()))
                .await?;

        self.decrypt(ks, client, &mut objects, keys).await?;

        if let Some(post_build) = &ks.spec.post_build {
            let namespace = ks.namespace().unwrap_or_default();
            let vars = substitute::variables(client, &namespace, post_build)
                .await
                .map_err(build_failed)?;
            substitute::substitute_objects(&mut objects, &vars).map_err(build_failed)?;
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
                return Err(build_failed(format!(
                    "Secret/{namespace}/{name} is SOPS encrypted, configuring decryption is required for this secret to be reconciled"
                )));
            };
            if keys.is_none() {
                keys = Some(Arc::new(self.decryption_keys(ks, client, decryption).await?));
            }
            let Some(keys) = keys.as_ref() else { continue };
            crate::sops::decrypt(object, keys).map_err(|e| {
                build_failed(format!(
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
            return Err(build_failed(format!(
                "unsupported decryption provider '{}'",
                decryption.provider
            )));
        }
        let Some(secret_ref) = &decryption.secret_ref else {
            return Err(build_failed(
                "decryption.secretRef is required: only keys from a Secret (age, OpenPGP) are supported",
            ));
        };
        let namespace = ks.namespace().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&secret_ref.name)
            .await
            .map_err(|e| {
                build_failed(format!(
                    "cannot get sops decryption Secret '{namespace}/{}': {e}",
                    secret_ref.name
                ))
            })?;
        let data = secret.data.unwrap_or_default();
        crate::sops::Keys::from_secret_data(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
            .map_err(build_failed)
    }

    /// Step 8: ownership labels, then the stages in order, each validated before it is written.
    async fn apply_objects(
        &self,
        ks: &Kustomization,
        client: &Client,
        objects: Vec<Value>,
    ) -> Result<Applied, ReconcileError> {
        let (name, namespace) = (ks.name_any(), ks.namespace().unwrap_or_default());
        let mut labelled = objects;
        for object in labelled.iter_mut() {
            apply::label_owner(object, &name, &namespace);
        }
        let force = ks.spec.force == Some(true);
        let ignore = ks.spec.ignore.clone().unwrap_or_default();
        apply::apply_staged(
            client,
            &self.discovery,
            labelled,
            FIELD_MANAGER,
            force,
            &ignore,
            &self.observed,
        )
        .await
        .map_err(apply_failed)
    }

    /// Step 10: with `wait` every applied object, else the listed health checks, must become
    /// healthy within the timeout.
    #[allow(clippy::too_many_arguments)]
    async fn check_health(
        &self,
        ks: &Kustomization,
        status: &mut KustomizationStatus,
        ctx: &ReconcileContext<Kustomization>,
        client: &Client,
        (applied, current): (&[AppliedObject], &HashMap<ObjectId, Value>),
        custom: &[health::CustomHealth],
        quiet: bool,
        revision: &str,
        timeout: Duration,
    ) -> Result<(), ReconcileError> {
        let generation = ks.metadata.generation;
        let targets: Vec<(ObjectId, String)> = if ks.spec.wait == Some(true) {
            applied.iter().map(|(id, v, _)| (id.clone(), v.clone())).collect()
        } else {
            let own = ks.namespace().unwrap_or_default();
            ks.spec
                .health_checks
                .iter()
                .flatten()
                .map(|h| {
                    let api_version = h.api_version.clone().unwrap_or_default();
                    let (group, version) = group_version(&api_version);
                    let namespace = h
                        .namespace
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| own.clone());
                    (
                        ObjectId {
                            namespace,
                            name: h.name.clone(),
                            group,
                            kind: h.kind.clone(),
                        },
                        version,
                    )
                })
                .collect()
        };
        if targets.is_empty() {
            conditions::delete(status.conditions_mut(), HEALTHY);
            return Ok(());
        }
        if !quiet {
            conditions::set(
                status.conditions_mut(),
                HEALTHY,
                Status::Unknown,
                reasons::PROGRESSING,
                "Running health checks",
                generation,
            );
            ctx.progress(
                ks,
                status,
                &format!(
                    "Running health checks for revision {revision} with a timeout of {}",
                    humantime(timeout)
                ),
            )
            .await;
        }
        let deadline = Instant::now() + timeout;
        let unhealthy = |status: &mut KustomizationStatus, message: String| {
            conditions::set(
                status.conditions_mut(),
                HEALTHY,
                Status::False,
                reasons::HEALTH_CHECK_FAILED,
                &message,
                generation,
            );
            ReconcileError::transient(reasons::HEALTH_CHECK_FAILED, message)
        };
        let mut first = true;
        let mut poll = HEALTH_POLL_FIRST;
        loop {
            let mut pending = Vec::new();
            for (id, version) in &targets {
                // Objects the apply found unchanged and current need no second read.
                let known = current.get(id).map(|o| health::compute_with(o, custom));
                if first && known == Some(Health::Current) {
                    continue;
                }
                let state = match self.discovery.resolve(client, &id.group, version, &id.kind).await {
                    Err(e) => Health::InProgress(e),
                    Ok((resource, namespaced)) => {
                        let api = apply::api(client, &resource, namespaced, &id.namespace);
                        match api.get_opt(&id.name).await {
                            Ok(Some(object)) => {
                                let object = serde_json::to_value(object).unwrap_or_default();
                                self.observed.record(&object);
                                health::compute_with(&object, custom)
                            }
                            Ok(None) => Health::InProgress("NotFound".into()),
                            Err(e) => Health::InProgress(e.to_string()),
                        }
                    }
                };
                match state {
                    Health::Current => {}
                    Health::Failed(message) => {
                        return Err(unhealthy(
                            status,
                            format!("{} status: 'Failed': {message}", id.display()),
                        ));
                    }
                    Health::InProgress(_) => pending.push(format!("{} status: 'InProgress'", id.display())),
                }
            }
            first = false;
            if pending.is_empty() {
                conditions::set(
                    status.conditions_mut(),
                    HEALTHY,
                    Status::True,
                    reasons::SUCCEEDED,
                    "Health check passed",
                    generation,
                );
                return Ok(());
            }
            if Instant::now() + poll > deadline {
                return Err(unhealthy(
                    status,
                    format!("timeout waiting for: [{}]", pending.join(", ")),
                ));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(HEALTH_POLL_MAX);
            // A new revision makes this wait moot: give way to the reconcile that applies it
            // (Flux's CancelHealthCheckOnNewRevision). Checked once polls are slow, so that
            // short waits cost no source reads.
            if poll < HEALTH_POLL_MAX {
                continue;
            }
            if let Ok(latest) = source::artifact(
                &ctx.client,
                ks,
                self.settings.no_cross_namespace_refs,
                self.settings.requeue_dependency,
            )
            .await
                && latest.revision != revision
            {
                let message = format!(
                    "health check canceled: new revision '{}' is available",
                    latest.revision
                );
                conditions::set(
                    status.conditions_mut(),
                    HEALTHY,
                    Status::Unknown,
                    reasons::HEALTH_CHECK_CANCELED,
                    &message,
                    generation,
                );
                return Err(ReconcileError::transient(reasons::HEALTH_CHECK_CANCELED, message));
            }
        }
    }
}
