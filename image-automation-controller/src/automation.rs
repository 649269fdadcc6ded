//! ImageUpdateAutomation: clone the GitRepository's branch, set the marked YAML values to the
//! ImagePolicies' latest images, commit (signed when asked) with the templated message, push.
//!
//! A run with nothing new (the same policy results, the branch still at the last observed
//! commit, no separate push branch or refspec) asks the remote for its refs and stops there,
//! without cloning. A push rejected because the branch moved starts over on the new tip.

use crate::{
    message,
    setters::{self, Setters},
};
use driftless_api::{
    image::{ImagePolicy, ImageRef, ImageUpdateAutomation, ImageUpdateAutomationStatus},
    meta::reasons as meta_reasons,
    source::{GitRepository, GitRepositoryRef},
};
use driftless_artifact::extract::confined;
use driftless_git::{
    auth::{self, GitCredentials},
    reference::{self, Resolved},
    sign::SigningKey,
    transport::{self as git, PushError},
};
use driftless_runtime::{
    conditions,
    events::EventType,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn},
    secrets::{self, Problem},
    triggers,
    work::{Blocking, blocking, timeout_of},
};
use kube::{Api, Client, ResourceExt, api::ListParams, runtime::watcher};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// Condition reasons of ImageUpdateAutomations (Flux's).
pub mod reasons {
    pub const INVALID_SOURCE_CONFIGURATION: &str = "InvalidSourceConfiguration";
    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    pub const UPDATE_FAILED: &str = "UpdateFailed";
    pub const INVALID_POLICY_SELECTOR: &str = "InvalidPolicySelector";
    pub const INVALID_UPDATE_STRATEGY: &str = "InvalidUpdateStrategy";
    pub const SOURCE_MANAGER_FAILED: &str = "SourceManagerFailed";
    pub const REMOVED_TEMPLATE_FIELD: &str = "RemovedTemplateField";
}

/// The Ready message of every successful run, as Flux's.
pub const UP_TO_DATE: &str = "repository up-to-date";
/// Default commit message.
pub const DEFAULT_MESSAGE: &str = "Update from image update automation";
/// Default Git timeout (a GitRepository without `spec.timeout`).
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a push rejected because the branch moved is tried again on the new tip.
const PUSH_ATTEMPTS: usize = 3;

/// Reconciles ImageUpdateAutomations: steps 1–5 of [`Reconciler::apply`].
#[derive(Default)]
pub struct ImageUpdateAutomationReconciler {
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
}

/// Where the automation reads and writes.
#[derive(Clone)]
struct Target {
    url: String,
    creds: GitCredentials,
    timeout: Duration,
    checkout: GitRepositoryRef,
    push_branch: String,
    refspec: Option<String>,
    push_options: Vec<String>,
}

/// What one reconcile carries from step to step.
struct Run<'a> {
    obj: &'a ImageUpdateAutomation,
    status: &'a mut ImageUpdateAutomationStatus,
    ctx: &'a ReconcileContext<ImageUpdateAutomation>,
    template: Option<message::MessageTemplate>,
    /// Step 1: `policySelector`, parsed.
    selector: Option<kube::core::Selector>,
    target: Option<Target>,
    signing: Option<SigningKey>,
    setters: Setters,
    observed: BTreeMap<String, ImageRef>,
    /// The push made by step 5, for the event.
    pushed: Option<Pushed>,
}

#[derive(Debug, Clone)]
struct Pushed {
    commit: String,
    message: String,
}

fn missing(what: &str) -> ReconcileError {
    ReconcileError::transient(meta_reasons::FAILED, format!("{what} not resolved"))
}

impl ImageUpdateAutomationReconciler {
    /// Step 1: the update strategy is Setters, the policy selector and the message template
    /// parse. Each failure stalls.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        match spec.update.as_ref().map(|u| u.strategy.as_str()) {
            None => {
                return Err(ReconcileError::stalled(
                    reasons::INVALID_UPDATE_STRATEGY,
                    "no update strategy",
                ));
            }
            Some("Setters") => {}
            Some(other) => {
                return Err(ReconcileError::stalled(
                    reasons::INVALID_UPDATE_STRATEGY,
                    format!("unsupported update strategy: {other}"),
                ));
            }
        }
        if let Some(selector) = &spec.policy_selector {
            let parsed = kube::core::Selector::try_from(selector.clone()).map_err(|e| {
                ReconcileError::stalled(
                    reasons::INVALID_POLICY_SELECTOR,
                    format!("failed to parse policy selector: {e}"),
                )
            })?;
            run.selector = Some(parsed);
        }
        let source = spec
            .git
            .as_ref()
            .and_then(|g| g.commit.message_template.as_deref());
        let template = message::MessageTemplate::parse(source.unwrap_or(DEFAULT_MESSAGE)).map_err(|e| {
            ReconcileError::stalled(
                reasons::GIT_OPERATION_FAILED,
                format!("failed to update source: unable to create commit message template from spec: {e}"),
            )
        })?;
        run.template = Some(template);
        Ok(())
    }

    /// Step 2: the GitRepository (URL, credentials, proxy, timeout), the checkout ref and the
    /// push branch, and the commit signing key.
    async fn source(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let ns = run.obj.namespace().unwrap_or_default();
        let spec = &run.obj.spec;
        if spec.source_ref.kind != "GitRepository" {
            return Err(ReconcileError::stalled(
                reasons::INVALID_SOURCE_CONFIGURATION,
                format!("source kind '{}' not supported", spec.source_ref.kind),
            ));
        }
        let git_spec = spec.git.as_ref().ok_or_else(|| {
            ReconcileError::stalled(reasons::INVALID_SOURCE_CONFIGURATION, "no git spec provided")
        })?;
        let source_ns = spec.source_ref.namespace.clone().unwrap_or_else(|| ns.clone());
        driftless_runtime::acl::check_cross_namespace(
            self.no_cross_namespace_refs,
            driftless_runtime::acl::Wording::CantAccess,
            &ns,
            "GitRepository",
            &source_ns,
            &spec.source_ref.name,
        )?;
        let api: Api<GitRepository> = Api::namespaced(run.ctx.client.clone(), &source_ns);
        let failed = |m: String| format!("failed configuring source manager: {m}");
        let repo = match api.get_opt(&spec.source_ref.name).await {
            Ok(Some(repo)) => repo,
            Ok(None) => {
                return Err(ReconcileError::waiting(
                    reasons::SOURCE_MANAGER_FAILED,
                    failed(format!(
                        "referenced git repository does not exist: gitrepositories.source.toolkit.fluxcd.io \"{}\" not found",
                        spec.source_ref.name
                    )),
                    secrets::REFERENCE_REQUEUE,
                ));
            }
            Err(e) => {
                return Err(ReconcileError::transient(
                    reasons::SOURCE_MANAGER_FAILED,
                    failed(e.to_string()),
                ));
            }
        };
        if let Some(message) = auth::unsupported_provider(
            repo.spec.provider.as_deref(),
            repo.spec.service_account_name.as_deref(),
        ) {
            return Err(ReconcileError::stalled(
                reasons::INVALID_SOURCE_CONFIGURATION,
                failed(message),
            ));
        }
        let class = |p: Problem| {
            p.map_message(|m| failed(m.to_string()))
                .into_error(reasons::SOURCE_MANAGER_FAILED)
        };
        let timeout = timeout_of(repo.spec.timeout.as_deref(), GIT_TIMEOUT);
        let creds = auth::repository_credentials(&run.ctx.client, &repo, timeout)
            .await
            .map_err(|e| match e {
                auth::CredentialsError::Provider(problem) => ReconcileError::stalled(
                    reasons::INVALID_SOURCE_CONFIGURATION,
                    failed(problem.message().to_string()),
                ),
                auth::CredentialsError::Authentication(problem) => class(problem),
            })?;
        let checkout = git_spec
            .checkout
            .as_ref()
            .map(|c| c.reference.clone())
            .or_else(|| repo.spec.reference.clone())
            .unwrap_or_default();
        let push = git_spec.push.clone().unwrap_or_default();
        let push_branch = push
            .branch
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| checkout.branch.clone().filter(|b| !b.is_empty()))
            .ok_or_else(|| {
                ReconcileError::stalled(
                    reasons::INVALID_SOURCE_CONFIGURATION,
                    "push spec not provided, and cannot be inferred from .spec.git.checkout.ref or GitRepository .spec.ref",
                )
            })?;
        if let Some(key) = &git_spec.commit.signing_key {
            let name = &key.secret_ref.name;
            let data = secrets::secret_data(&run.ctx.client, &ns, name)
                .await
                .map_err(|p| p.into_error(reasons::GIT_OPERATION_FAILED))?;
            let kind = key.key_type.clone().unwrap_or_default();
            let secret = format!("{ns}/{name}");
            let key = blocking(Duration::from_secs(30), move || {
                SigningKey::from_secret(&kind, &secret, &data)
            })
            .await
            .map_err(|e| match e {
                // The Secret's content is wrong: the user fixes it.
                Blocking::Failed(m) => ReconcileError::stalled(reasons::GIT_OPERATION_FAILED, m),
                other => ReconcileError::transient(reasons::GIT_OPERATION_FAILED, other.to_string()),
            })?;
            run.signing = Some(key);
        }
        run.target = Some(Target {
            url: repo.spec.url.clone(),
            creds,
            timeout,
            checkout,
            push_branch,
            refspec: push.refspec.clone().filter(|r| !r.is_empty()),
            push_options: push
                .options
                .iter()
                .flatten()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect(),
        });
        Ok(())
    }

    /// Step 3: the ImagePolicies of the namespace that `policySelector` selects and that have a
    /// latest image: their setters and `observedPolicies`.
    async fn policies(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let ns = run.obj.namespace().unwrap_or_default();
        let api: Api<ImagePolicy> = Api::namespaced(run.ctx.client.clone(), &ns);
        let mut params = ListParams::default();
        if let Some(selector) = &run.selector {
            params = params.labels_from(selector);
        }
        let policies = api.list(&params).await.map_err(|e| {
            ReconcileError::transient(meta_reasons::FAILED, format!("failed to list ImagePolicies: {e}"))
        })?;
        for policy in policies {
            let Some(latest) = policy.status.as_ref().and_then(|s| s.latest_ref.clone()) else {
                continue;
            };
            run.setters.add(&ns, &policy.name_any(), &latest);
            run.observed.insert(policy.name_any(), latest);
        }
        Ok(())
    }

    /// Step 4: nothing new since the last run (same policy results, no separate push branch or
    /// refspec, the checkout branch still at the observed commit): done without a clone.
    async fn unchanged(&self, run: &mut Run<'_>) -> Result<bool, ReconcileError> {
        let target = run.target.as_ref().ok_or_else(|| missing("source"))?;
        let same_branch = target.checkout.branch.as_deref() == Some(target.push_branch.as_str());
        let observed = run.status.observed_policies.clone().unwrap_or_default();
        let Some(last) = run.status.observed_source_revision.clone() else {
            return Ok(false);
        };
        if observed != run.observed || !same_branch || target.refspec.is_some() {
            return Ok(false);
        }
        let t = target.clone();
        let resolved = blocking(t.timeout, move || resolve(&t, Instant::now() + t.timeout))
            .await
            .map_err(|e| git_failed("failed to checkout source", e))?;
        Ok(resolved.0.revision == last)
    }

    /// Step 5: clone, apply the setters under `update.path`, commit and push; a push rejected
    /// because the branch moved is tried again from a fresh clone of the new tip.
    async fn update(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let target = run.target.clone().ok_or_else(|| missing("source"))?;
        let path = run
            .obj
            .spec
            .update
            .as_ref()
            .and_then(|u| u.path.clone())
            .unwrap_or_default();
        let update_path = confined(std::path::Path::new(path.trim_start_matches("./"))).ok_or_else(|| {
            ReconcileError::stalled(reasons::UPDATE_FAILED, format!("invalid update path '{path}'"))
        })?;
        let ns = run.obj.namespace().unwrap_or_default();
        let template = run.template.take().ok_or_else(|| missing("template"))?;
        let git_spec = run.obj.spec.git.clone().unwrap_or_default();
        let author_email = git_spec.commit.author.email.clone();
        // The name is optional in the API; libgit2 refuses an empty one, so the email stands in.
        let author_name = git_spec
            .commit
            .author
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| author_email.clone());
        let values = git_spec
            .commit
            .message_template_values
            .clone()
            .unwrap_or_default();
        let timeout = target.timeout * u32::try_from(PUSH_ATTEMPTS).unwrap_or(1);
        let job = UpdateJob {
            target,
            update_path,
            template,
            automation: (ns, run.obj.name_any()),
            values,
            author_name,
            author_email,
            setters: run.setters.clone(),
            signing: run.signing.take(),
            // One deadline for the whole run, every attempt included, so nothing outlives it.
            deadline: Instant::now() + timeout,
        };
        let outcome = blocking(timeout, move || job.run()).await;
        let outcome = outcome.map_err(|e| match e {
            Blocking::Failed(UpdateError::Template(t)) => t,
            Blocking::Failed(UpdateError::Update(m)) => ReconcileError::transient(reasons::UPDATE_FAILED, m),
            Blocking::Failed(UpdateError::Git(m)) => ReconcileError::transient(
                reasons::GIT_OPERATION_FAILED,
                format!("failed to update source: {m}"),
            ),
            other => ReconcileError::transient(
                reasons::GIT_OPERATION_FAILED,
                format!("failed to update source: {other}"),
            ),
        })?;
        if let Some(pushed) = &outcome.pushed {
            run.status.last_push_commit = Some(pushed.commit.clone());
            run.status.last_push_time = Some(conditions::now());
        }
        run.status.observed_source_revision = Some(outcome.revision);
        run.pushed = outcome.pushed;
        Ok(())
    }
}

enum UpdateError {
    Git(String),
    Update(String),
    Template(ReconcileError),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Git(m) | UpdateError::Update(m) => f.write_str(m),
            UpdateError::Template(e) => f.write_str(&e.message),
        }
    }
}

struct Outcome {
    pushed: Option<Pushed>,
    revision: String,
}

/// Everything step 5 needs, run off the async runtime.
struct UpdateJob {
    target: Target,
    update_path: std::path::PathBuf,
    template: message::MessageTemplate,
    automation: (String, String),
    values: BTreeMap<String, String>,
    author_name: String,
    author_email: String,
    setters: Setters,
    signing: Option<SigningKey>,
    deadline: Instant,
}

/// How one attempt ended: done, or refused because the push branch moved meanwhile.
enum Attempt {
    Done(Outcome),
    Moved(String),
}

impl UpdateJob {
    fn run(&self) -> Result<Outcome, UpdateError> {
        let mut last_rejection = String::new();
        for _ in 0..PUSH_ATTEMPTS {
            match self.attempt()? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Moved(why) => last_rejection = why,
            }
        }
        Err(UpdateError::Git(format!(
            "{last_rejection} (the branch kept moving: gave up after {PUSH_ATTEMPTS} attempts)"
        )))
    }

    fn remote(&self) -> git::Remote<'_> {
        git::Remote {
            url: &self.target.url,
            creds: &self.target.creds,
            deadline: self.deadline,
        }
    }

    fn attempt(&self) -> Result<Attempt, UpdateError> {
        let target = &self.target;
        let dir = tempfile::tempdir().map_err(|e| UpdateError::Git(e.to_string()))?;
        let (resolved, base, switching) = resolve(target, self.deadline).map_err(UpdateError::Git)?;
        // An existing push branch is built on; otherwise the checkout commit is.
        let base_target = if switching == Some(true) {
            Resolved {
                commit: base.clone(),
                refspec: format!("+refs/heads/{0}:refs/remotes/origin/{0}", target.push_branch),
                depth: 1,
                ..resolved.clone()
            }
        } else {
            resolved.clone()
        };
        git::checkout(&self.remote(), &base_target, dir.path(), &[], false)
            .map_err(|e| UpdateError::Git(e.0))?;
        let root = confined_root(dir.path(), &self.update_path)?;
        let updated = setters::update_tree(&root, &self.setters)
            .map_err(|e| UpdateError::Update(format!("failed to apply policies: {e}")))?;
        if !updated.problems.is_empty() {
            tracing::info!(files = ?updated.problems, "files that are not YAML were skipped");
        }
        // Flux records the checkout commit when the push goes to another branch.
        let checked_out = resolved.revision.clone();
        if updated.written == 0 {
            return Ok(Attempt::Done(Outcome {
                pushed: None,
                revision: checked_out,
            }));
        }
        let message = self
            .template
            .render(
                &self.automation.0,
                &self.automation.1,
                &updated.changes,
                &self.values,
            )
            .map_err(UpdateError::Template)?;
        let author = git::Author {
            name: &self.author_name,
            email: &self.author_email,
        };
        let commit = git::commit_all(
            dir.path(),
            &target.push_branch,
            &message,
            &author,
            self.signing.as_ref(),
        )
        .map_err(|e| UpdateError::Git(e.0))?;
        let Some(commit) = commit else {
            return Ok(Attempt::Done(Outcome {
                pushed: None,
                revision: checked_out,
            }));
        };
        let branch_ref = format!("refs/heads/{}", target.push_branch);
        let force = if switching.is_some() { "+" } else { "" };
        let branch_spec = format!("{force}{branch_ref}:{branch_ref}");
        match git::push(&self.remote(), dir.path(), &[branch_spec], &target.push_options) {
            Ok(()) => {}
            Err(PushError::Rejected(why)) => {
                // Only a branch that moved is worth another try; a refusal of the same tip (a
                // protected branch, a hook) is final.
                let moved = resolve(target, self.deadline).is_ok_and(|(_, tip, _)| tip != base);
                return if moved {
                    Ok(Attempt::Moved(why))
                } else {
                    Err(UpdateError::Git(why))
                };
            }
            Err(PushError::Failed(e)) => return Err(UpdateError::Git(e.0)),
        }
        if let Some(spec) = &target.refspec {
            let spec = spec.replacen("HEAD:", &format!("{branch_ref}:"), 1);
            git::push(&self.remote(), dir.path(), &[spec], &target.push_options)
                .map_err(|e| UpdateError::Git(format!("pushed '{}', then: {e}", target.push_branch)))?;
        }
        let revision = if switching.is_some() {
            checked_out
        } else {
            format!("{}@sha1:{commit}", target.push_branch)
        };
        Ok(Attempt::Done(Outcome {
            revision,
            pushed: Some(Pushed { commit, message }),
        }))
    }
}

/// `update.path` inside the checkout at `dir`, symlinks resolved: a path that leaves the
/// checkout (through `..` or a committed symlink) is refused.
fn confined_root(
    dir: &std::path::Path,
    update_path: &std::path::Path,
) -> Result<std::path::PathBuf, UpdateError> {
    let checkout = dir.canonicalize().map_err(|e| UpdateError::Git(e.to_string()))?;
    let shown = update_path.display();
    let root = checkout
        .join(update_path)
        .canonicalize()
        .map_err(|e| UpdateError::Update(format!("failed to apply policies: update path '{shown}': {e}")))?;
    if !root.starts_with(&checkout) {
        return Err(UpdateError::Update(format!(
            "failed to apply policies: update path '{shown}' leaves the repository"
        )));
    }
    Ok(root)
}

fn git_failed(what: &str, e: Blocking<String>) -> ReconcileError {
    ReconcileError::transient(reasons::GIT_OPERATION_FAILED, format!("{what}: {e}"))
}

/// The checkout ref resolved on the remote, the commit to build on (the push branch's tip when
/// it differs from the checkout branch and exists, else the checkout commit) and, when the push
/// branch differs, whether it exists.
fn resolve(target: &Target, deadline: Instant) -> Result<(Resolved, String, Option<bool>), String> {
    let remote = git::Remote {
        url: &target.url,
        creds: &target.creds,
        deadline,
    };
    let refs = git::list_remote(&remote).map_err(|e| e.0)?;
    let resolved = reference::resolve(Some(&target.checkout), &refs).map_err(|e| e.to_string())?;
    let checkout_branch = target.checkout.branch.as_deref().unwrap_or_default();
    if checkout_branch == target.push_branch {
        let commit = resolved.commit.clone();
        return Ok((resolved, commit, None));
    }
    let push_ref = format!("refs/heads/{}", target.push_branch);
    match refs.refs.iter().find(|r| r.name == push_ref) {
        Some(tip) => {
            let tip = tip.oid.clone();
            Ok((resolved, tip, Some(true)))
        }
        None => {
            let commit = resolved.commit.clone();
            Ok((resolved, commit, Some(false)))
        }
    }
}

impl Reconciler for ImageUpdateAutomationReconciler {
    type Kind = ImageUpdateAutomation;

    /// 1. `validate`: update strategy, policy selector, message template.
    /// 2. `source`: the GitRepository, refs, push branch, signing key.
    /// 3. `policies`: the selected ImagePolicies' latest images.
    /// 4. `unchanged`: nothing new since the last run → done without a clone.
    /// 5. `update`: clone, set, commit, push.
    async fn apply(
        &self,
        obj: &ImageUpdateAutomation,
        status: &mut ImageUpdateAutomationStatus,
        ctx: &ReconcileContext<ImageUpdateAutomation>,
    ) -> Result<Success, ReconcileError> {
        status.last_automation_run_time = Some(conditions::now());
        let mut run = Run {
            obj,
            status,
            ctx,
            template: None,
            selector: None,
            target: None,
            signing: None,
            setters: Setters::default(),
            observed: BTreeMap::new(),
            pushed: None,
        };
        self.validate(&mut run).await?;
        self.source(&mut run).await?;
        self.policies(&mut run).await?;
        if !self.unchanged(&mut run).await? {
            self.update(&mut run).await?;
        }
        run.status.observed_policies = Some(run.observed.clone());
        if let (Some(pushed), Some(target)) = (&run.pushed, &run.target) {
            let mut summary = format!(
                "pushed commit '{}' to branch '{}'",
                &pushed.commit[..pushed.commit.len().min(7)],
                target.push_branch
            );
            if let Some(refspec) = &target.refspec {
                summary.push_str(&format!(" and refspecs '{refspec}'"));
            }
            summary.push('\n');
            summary.push_str(&pushed.message);
            ctx.recorder
                .publish(obj, EventType::Normal, meta_reasons::SUCCEEDED, &summary, &[])
                .await;
        }
        Ok(Success::new(meta_reasons::SUCCEEDED, UP_TO_DATE))
    }

    async fn cleanup(
        &self,
        _obj: &ImageUpdateAutomation,
        _ctx: &ReconcileContext<ImageUpdateAutomation>,
    ) -> Result<(), ReconcileError> {
        Ok(())
    }
}

/// Runs the automations of a namespace when one of its ImagePolicies picks a new image.
pub fn policy_triggers(client: Client, namespace: Option<String>) -> TriggerFn<ImageUpdateAutomation> {
    Box::new(move |store| {
        triggers::referrers(
            &client,
            namespace.as_deref(),
            store,
            watcher::Config::default(),
            |policy: &ImagePolicy| {
                let latest = policy.status.as_ref()?.latest_ref.as_ref()?;
                Some(triggers::hash_of((&latest.name, &latest.tag, &latest.digest)))
            },
            |automation: &ImageUpdateAutomation, policy: &ImagePolicy| {
                automation.namespace() == policy.namespace()
            },
        )
    })
}
