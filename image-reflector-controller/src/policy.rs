//! ImagePolicy: the latest image of an ImageRepository's scanned tags by the policy's rule,
//! published in `status.latestRef` (with the manifest digest when `digestReflectionPolicy`
//! asks), re-evaluated whenever the repository's scan changes.

use crate::{image::ImageName, select::Rule, tags::TagStore};
use driftless_api::{
    image::{ImagePolicy, ImagePolicyStatus, ImageRef, ImageRepository},
    meta::reasons as meta_reasons,
};
use driftless_runtime::{
    acl,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn},
    triggers,
    work::blocking,
};
use kube::{Api, Client, ResourceExt, runtime::watcher};
use std::{sync::Arc, time::Duration};

/// Condition reasons of ImagePolicies (Flux's).
pub mod reasons {
    /// The policy (range, order, filter) is invalid.
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    /// `digestReflectionPolicy: Always` without `interval`.
    pub const INTERVAL_NOT_CONFIGURED: &str = "IntervalNotConfigured";
    /// Choosing a tag failed (no tag in range, a non-numeric tag).
    pub const FAILURE: &str = "Failure";
}

/// Reconciles ImagePolicies: steps 1–4 of [`Reconciler::apply`].
pub struct ImagePolicyReconciler {
    tags: Arc<TagStore>,
    /// How long to wait for a repository that is missing or has no tags yet.
    requeue_dependency: Duration,
    /// `--no-cross-namespace-refs`.
    no_cross_namespace_refs: bool,
}

impl ImagePolicyReconciler {
    /// A reconciler reading tags from `tags`.
    pub fn new(tags: Arc<TagStore>, requeue_dependency: Duration, no_cross_namespace_refs: bool) -> Self {
        Self {
            tags,
            requeue_dependency,
            no_cross_namespace_refs,
        }
    }
}

/// What one reconcile carries from step to step.
struct Run<'a> {
    obj: &'a ImagePolicy,
    status: &'a mut ImagePolicyStatus,
    ctx: &'a ReconcileContext<ImagePolicy>,
    /// Step 1.
    rule: Option<Rule>,
    /// Step 2.
    repository: Option<ImageRepository>,
    /// Step 3: the chosen tag.
    tag: String,
}

fn missing_step(what: &str) -> ReconcileError {
    ReconcileError::transient(meta_reasons::FAILED, format!("{what} not resolved"))
}

impl ImagePolicyReconciler {
    /// Step 1: the rule compiles (one policy, a valid range and filter) and `Always` has an
    /// interval. Stalls otherwise.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        if spec.digest_reflection_policy.as_deref() == Some("Always") && spec.interval.is_none() {
            return Err(ReconcileError::stalled(
                reasons::INTERVAL_NOT_CONFIGURED,
                "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'",
            ));
        }
        let rule = Rule::new(&spec.policy, spec.filter_tags.as_ref())
            .map_err(|e| ReconcileError::stalled(reasons::INVALID_POLICY, e.to_string()))?;
        run.rule = Some(rule);
        Ok(())
    }

    /// Step 2: the ImageRepository, in another namespace only when its `accessFrom` allows;
    /// missing is a wait (DependencyNotReady), a denial stalls (AccessDenied).
    async fn repository(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let ns = run.obj.namespace().unwrap_or_default();
        let reference = &run.obj.spec.image_repository_ref;
        let repo_ns = reference.namespace.clone().unwrap_or_else(|| ns.clone());
        acl::check_cross_namespace(
            self.no_cross_namespace_refs,
            acl::Wording::CannotAccess,
            &ns,
            "ImageRepository",
            &repo_ns,
            &reference.name,
        )?;
        let api: Api<ImageRepository> = Api::namespaced(run.ctx.client.clone(), &repo_ns);
        let prefix = "failed to get the referred ImageRepository";
        let repo = match api.get_opt(&reference.name).await {
            Ok(Some(repo)) => repo,
            Ok(None) => {
                return Err(ReconcileError::waiting(
                    meta_reasons::DEPENDENCY_NOT_READY,
                    format!(
                        "{prefix}: referenced ImageRepository does not exist: imagerepositories.image.toolkit.fluxcd.io \"{}\" not found",
                        reference.name
                    ),
                    self.requeue_dependency,
                ));
            }
            Err(e) => {
                return Err(ReconcileError::transient(
                    meta_reasons::FAILED,
                    format!("{prefix}: {e}"),
                ));
            }
        };
        acl::check(
            &run.ctx.client,
            repo.spec.access_from.as_ref(),
            &repo_ns,
            &format!("{repo_ns}/{}", reference.name),
            &ns,
        )
        .await
        .map_err(|p| {
            p.map_message(|m| format!("{prefix}: {m}"))
                .into_error(meta_reasons::ACCESS_DENIED)
        })?;
        ImageName::parse(&repo.spec.image)
            .map_err(|e| ReconcileError::stalled(crate::repository::reasons::IMAGE_URL_INVALID, e))?;
        run.repository = Some(repo);
        Ok(())
    }

    /// Step 3: the latest tag of the repository's stored tags by the rule; no tags yet is a wait.
    async fn select(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let repo = run
            .repository
            .as_ref()
            .ok_or_else(|| missing_step("repository"))?;
        let no_tags = || {
            ReconcileError::waiting(
                meta_reasons::DEPENDENCY_NOT_READY,
                format!(
                    "retrying in {} error: no tags in database",
                    driftless_runtime::duration::format(self.requeue_dependency)
                ),
                self.requeue_dependency,
            )
        };
        // The tags of the image the repository names now, once it has been scanned.
        let image = ImageName::parse(&repo.spec.image)
            .map_err(|e| ReconcileError::stalled(crate::repository::reasons::IMAGE_URL_INVALID, e))?
            .canonical();
        let scanned = repo
            .status
            .as_ref()
            .and_then(|s| s.canonical_image_name.as_deref());
        if scanned != Some(image.as_str()) {
            return Err(no_tags());
        }
        let store = self.tags.clone();
        let tags = blocking(Duration::from_secs(30), move || store.read(&image))
            .await
            .map_err(|e| ReconcileError::transient(meta_reasons::FAILED, format!("reading tags: {e}")))?
            .filter(|t| !t.is_empty())
            .ok_or_else(no_tags)?;
        let rule = run.rule.as_ref().ok_or_else(|| missing_step("policy"))?;
        run.tag = rule
            .latest(&tags)
            .map_err(|e| ReconcileError::transient(reasons::FAILURE, e))?
            .to_string();
        Ok(())
    }

    /// Step 4: the digest of the chosen tag (`Never`: none; `IfNotPresent`: looked up once per
    /// image and tag; `Always`: every reconcile), and the new `latestRef`; the previous one moves
    /// to `observedPreviousRef` when it changes.
    async fn record(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let repo = run
            .repository
            .as_ref()
            .ok_or_else(|| missing_step("repository"))?;
        let name = repo.spec.image.clone();
        let previous = run.status.latest_ref.clone();
        let digest = match run
            .obj
            .spec
            .digest_reflection_policy
            .as_deref()
            .unwrap_or("Never")
        {
            "Always" => Some(self.digest(run.ctx.client.clone(), repo, &run.tag).await?),
            "IfNotPresent" => match previous.as_ref() {
                Some(p)
                    if p.name == name
                        && p.tag == run.tag
                        && p.digest.as_deref().is_some_and(|d| !d.is_empty()) =>
                {
                    p.digest.clone()
                }
                _ => Some(self.digest(run.ctx.client.clone(), repo, &run.tag).await?),
            },
            _ => None,
        };
        let latest = ImageRef {
            name,
            tag: run.tag.clone(),
            digest,
        };
        if previous.as_ref() != Some(&latest) {
            run.status.observed_previous_ref = previous;
            run.status.latest_ref = Some(latest);
        }
        Ok(())
    }

    /// The manifest digest of `image:tag`, reached with the repository's registry settings.
    async fn digest(
        &self,
        client: Client,
        repo: &ImageRepository,
        tag: &str,
    ) -> Result<String, ReconcileError> {
        let spec = &repo.spec;
        let ns = repo.namespace().unwrap_or_default();
        let failed = |m: String| {
            ReconcileError::transient(
                meta_reasons::FAILED,
                format!("failed fetching digest of {}:{tag}: {m}", spec.image),
            )
        };
        let image = ImageName::parse(&spec.image).map_err(failed)?;
        let registry = crate::repository::registry_access(repo, &ns)
            .puller(&client, &image.pull_name())
            .await
            .map_err(|p| {
                p.map_message(|m| format!("failed fetching digest of {}:{tag}: {m}", spec.image))
                    .into_error(meta_reasons::FAILED)
            })?;
        registry.manifest_digest(tag).await.map_err(failed)
    }
}

/// The Ready message: `Latest image tag for <image> resolved to <tag>[ with digest <d>][ (previously <image>:<tag>[@<d>])]`.
fn ready_message(status: &ImagePolicyStatus) -> String {
    let Some(latest) = &status.latest_ref else {
        return String::new();
    };
    let mut message = format!("Latest image tag for {} resolved to {}", latest.name, latest.tag);
    if let Some(d) = latest.digest.as_deref().filter(|d| !d.is_empty()) {
        message.push_str(&format!(" with digest {d}"));
    }
    if let Some(previous) = status.observed_previous_ref.as_ref().filter(|p| *p != latest) {
        message.push_str(&format!(" (previously {}:{}", previous.name, previous.tag));
        if let Some(d) = previous.digest.as_deref().filter(|d| !d.is_empty()) {
            message.push_str(&format!("@{d}"));
        }
        message.push(')');
    }
    message
}

impl Reconciler for ImagePolicyReconciler {
    type Kind = ImagePolicy;

    /// 1. `validate`: the rule compiles; `Always` has an interval.
    /// 2. `repository`: the ImageRepository, through its ACL.
    /// 3. `select`: the latest stored tag by the rule.
    /// 4. `record`: its digest as the policy asks, and `latestRef`.
    async fn apply(
        &self,
        obj: &ImagePolicy,
        status: &mut ImagePolicyStatus,
        ctx: &ReconcileContext<ImagePolicy>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            rule: None,
            repository: None,
            tag: String::new(),
        };
        self.validate(&mut run).await?;
        self.repository(&mut run).await?;
        self.select(&mut run).await?;
        self.record(&mut run).await?;
        Ok(Success::new(meta_reasons::SUCCEEDED, ready_message(run.status)))
    }

    async fn cleanup(
        &self,
        _obj: &ImagePolicy,
        _ctx: &ReconcileContext<ImagePolicy>,
    ) -> Result<(), ReconcileError> {
        Ok(())
    }
}

/// Re-evaluates the policies of an ImageRepository whose scan result changed.
pub fn repository_triggers(client: Client, namespace: Option<String>) -> TriggerFn<ImagePolicy> {
    Box::new(move |store| {
        triggers::referrers(
            &client,
            namespace.as_deref(),
            store,
            watcher::Config::default(),
            |repo: &ImageRepository| {
                let status = repo.status.as_ref()?;
                let scan = status.last_scan_result.as_ref()?;
                Some(triggers::hash_of((&status.canonical_image_name, &scan.revision)))
            },
            |policy: &ImagePolicy, repo: &ImageRepository| {
                let reference = &policy.spec.image_repository_ref;
                let policy_ns = policy.namespace().unwrap_or_default();
                reference.name == repo.name_any()
                    && reference.namespace.as_deref().unwrap_or(&policy_ns)
                        == repo.namespace().unwrap_or_default()
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_messages_name_the_previous_image() {
        let r = |tag: &str, digest: Option<&str>| ImageRef {
            name: "foo/bar".into(),
            tag: tag.into(),
            digest: digest.map(str::to_string),
        };
        let mut status = ImagePolicyStatus {
            latest_ref: Some(r("1.1.0", None)),
            observed_previous_ref: Some(r("1.0.0", None)),
            ..Default::default()
        };
        assert_eq!(
            ready_message(&status),
            "Latest image tag for foo/bar resolved to 1.1.0 (previously foo/bar:1.0.0)"
        );
        status.latest_ref = Some(r("1.1.0", Some("sha256:ab")));
        status.observed_previous_ref = None;
        assert_eq!(
            ready_message(&status),
            "Latest image tag for foo/bar resolved to 1.1.0 with digest sha256:ab"
        );
    }
}
