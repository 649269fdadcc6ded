//! Step 8: the release state machine (Flux's `atomic_release`). The stored release is
//! observed, its state decides the next action, and the loop goes on until the release is in
//! sync or an action fails:
//!
//! | state | when | action |
//! |---|---|---|
//! | Absent | no release, or only an uninstalled one | install |
//! | Unmanaged | a release this HelmRelease has no history of | upgrade |
//! | OutOfSync | chart, version or values differ from the stored release | upgrade |
//! | Locked | the latest revision is `pending-*` (a killed action) | unlock: mark it failed |
//! | Untested | tests enabled and the deployed revision's tests never ran | test |
//! | Failed | the latest revision failed, or its tests did (unless ignored) | retry the action (counted against `retries`) |
//! | Drifted | `driftDetection` on and the cluster differs from the deployed manifest | correct it (`enabled`) or report it (`warn`), [`crate::drift`] |
//! | InSync | none of the above | nothing |
//!
//! A failed install or upgrade (or its tests, unless ignored) is counted; with
//! `RemediateOnFailure` it is remediated at once (a failed install is uninstalled, a failed
//! upgrade rolled back or uninstalled as `upgrade.remediation.strategy` says) while retries
//! remain, and on the last failure when `remediateLastFailure`; once retries are exhausted the
//! HelmRelease stalls with `RetriesExceeded` until its spec, chart or values change, or a
//! `resetAt`/`forceAt` request. With `RetryOnFailure` nothing is remediated and the action is
//! retried every `retryInterval`.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use driftless_api::helm::{HelmRelease, condition_types, reasons as helm_reasons};
use driftless_api::meta::{FORCE_AT_ANNOTATION, RESET_AT_ANNOTATION};
use driftless_runtime::duration;
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::ReconcileError;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::helm::{POST_RENDERER, timeout_arg};
use crate::reconciler::{HelmReleaseReconciler, Run};
use crate::release::{self, Release};

/// Most actions one reconcile runs (install, test, and an unlock before them, with room).
const MAX_ACTIONS: usize = 6;

/// The observed state of the release.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    Absent,
    Unmanaged,
    OutOfSync,
    Locked,
    Untested,
    Failed,
    InSync,
}

/// The two actions whose failures are counted and remediated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Install,
    Upgrade,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Upgrade => "upgrade",
        }
    }
}

/// The state of the stored release against what the HelmRelease wants.
pub fn state(run: &Run<'_>) -> State {
    let Some(latest) = run.releases.first() else {
        return State::Absent;
    };
    if latest.info.status == "uninstalled" || latest.info.status == "uninstalling" {
        return State::Absent;
    }
    if latest.is_pending() {
        return State::Locked;
    }
    if latest.info.status == "failed" {
        return State::Failed;
    }
    let known = run.made.contains(&latest.version)
        || run.status.history.as_ref().is_some_and(|h| {
            h.iter()
                .any(|s| s.name == latest.name && s.version == latest.version)
        });
    if !known {
        return State::Unmanaged;
    }
    if latest.chart_name() != run.chart.name
        || latest.chart_version() != run.chart.version
        || latest.config_digest() != run.config_digest
        || post_render_changed(run)
    {
        return State::OutOfSync;
    }
    if tests_enabled(run.hr) {
        if !tested(run, latest) {
            return State::Untested;
        }
        // A failed test is a failed release unless test failures are ignored, as in Flux.
        let action = last_action(run);
        let ignored = run.hr.spec.test.as_ref().and_then(|t| t.ignore_failures) == Some(true)
            || policy(run.hr, action).ignore_test_failures;
        let failed = latest
            .test_hooks()
            .filter(|h| selected(run.hr, &h.name))
            .any(|h| h.last_run.as_ref().is_some_and(|r| r.phase == "Failed"));
        if failed && !ignored {
            return State::Failed;
        }
    }
    State::InSync
}

/// Whether post-renderers or common metadata changed since they were last applied.
fn post_render_changed(run: &Run<'_>) -> bool {
    let status = &*run.status;
    status
        .observed_post_renderers_digest
        .as_deref()
        .unwrap_or(&digest_of(&None::<()>))
        != digest_of(&run.hr.spec.post_renderers)
        || status
            .observed_common_metadata_digest
            .as_deref()
            .unwrap_or(&digest_of(&None::<()>))
            != digest_of(&run.hr.spec.common_metadata)
}

/// `sha256:<hex>` of a spec field as JSON.
pub fn digest_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_value(value).unwrap_or_default();
    release::config_digest(&json)
}

fn tests_enabled(hr: &HelmRelease) -> bool {
    hr.spec.test.as_ref().and_then(|t| t.enable) == Some(true)
}

/// Whether the test hooks the filters select ran for this revision (a release without any is
/// tested by definition).
fn tested(run: &Run<'_>, release: &Release) -> bool {
    let mut hooks = release
        .test_hooks()
        .filter(|h| selected(run.hr, &h.name))
        .peekable();
    if hooks.peek().is_none() {
        return true;
    }
    hooks.any(|h| {
        h.last_run
            .as_ref()
            .is_some_and(|r| r.started_at.is_some() && !r.phase.is_empty() && r.phase != "Unknown")
    })
}

/// Whether `helm test` runs the hook `name` under the HelmRelease's filters.
fn selected(hr: &HelmRelease, name: &str) -> bool {
    let filters = hr
        .spec
        .test
        .as_ref()
        .and_then(|t| t.filters.clone())
        .unwrap_or_default();
    let includes: Vec<_> = filters.iter().filter(|f| f.exclude != Some(true)).collect();
    if filters.iter().any(|f| f.exclude == Some(true) && f.name == name) {
        return false;
    }
    includes.is_empty() || includes.iter().any(|f| f.name == name)
}

/// The failure counters, retries and remediation of one action.
struct Policy {
    strategy_retry: bool,
    retries: i64,
    remediate_last: bool,
    ignore_test_failures: bool,
    uninstall_on_upgrade_failure: bool,
}

fn policy(hr: &HelmRelease, action: Action) -> Policy {
    let spec = &hr.spec;
    let test_ignore = spec
        .test
        .as_ref()
        .and_then(|t| t.ignore_failures)
        .unwrap_or(false);
    match action {
        Action::Install => {
            let install = spec.install.clone().unwrap_or_default();
            let remediation = install.remediation.unwrap_or_default();
            let retries = remediation.retries.unwrap_or(0);
            Policy {
                strategy_retry: install.strategy.is_some_and(|s| s.name == "RetryOnFailure"),
                retries,
                remediate_last: remediation.remediate_last_failure.unwrap_or(retries > 0),
                ignore_test_failures: remediation.ignore_test_failures.unwrap_or(test_ignore),
                uninstall_on_upgrade_failure: false,
            }
        }
        Action::Upgrade => {
            let upgrade = spec.upgrade.clone().unwrap_or_default();
            let remediation = upgrade.remediation.unwrap_or_default();
            let retries = remediation.retries.unwrap_or(0);
            Policy {
                strategy_retry: upgrade.strategy.is_some_and(|s| s.name == "RetryOnFailure"),
                retries,
                remediate_last: remediation.remediate_last_failure.unwrap_or(retries > 0),
                ignore_test_failures: remediation.ignore_test_failures.unwrap_or(test_ignore),
                uninstall_on_upgrade_failure: remediation.strategy.as_deref() == Some("uninstall"),
            }
        }
    }
}

fn failures_of(run: &Run<'_>, action: Action) -> i64 {
    match action {
        Action::Install => run.status.install_failures.unwrap_or(0),
        Action::Upgrade => run.status.upgrade_failures.unwrap_or(0),
    }
}

fn exhausted(policy: &Policy, failures: i64) -> bool {
    !policy.strategy_retry && policy.retries >= 0 && failures > policy.retries
}

/// Runs the state machine (step 8).
pub async fn reconcile_release(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(), ReconcileError> {
    prepare_attempt(run);
    // Each kind of action runs at most once per reconcile, as in Flux: a release that does not
    // converge is retried by the next reconcile, not by a burst of revisions.
    let mut ran: Vec<&'static str> = Vec::new();
    for _ in 0..MAX_ACTIONS {
        run.releases = release::history(&run.client, &run.release_namespace, &run.release_name)
            .await
            .map_err(|m| ReconcileError::transient(driftless_api::meta::reasons::FAILED, m))?;
        let mut state = state(run);
        if state == State::InSync && run.force.is_some() {
            state = State::OutOfSync;
        }
        tracing::debug!(?state, release = %run.release_name, "release state");
        match state {
            State::InSync => return crate::drift::detect(r, run).await,
            State::Absent => {
                check_retries(run, Action::Install)?;
                once(&mut ran, "install")?;
                run_action(r, run, Action::Install).await?;
            }
            State::Unmanaged => {
                once(&mut ran, "upgrade")?;
                run_action(r, run, Action::Upgrade).await?;
            }
            State::OutOfSync if chart_renamed(run) => {
                // `chartNameChangeStrategy: Reinstall` (Flux's default): another chart is
                // another application; the release is uninstalled, then installed anew.
                once(&mut ran, "uninstall")?;
                uninstall(r, run, "the chart name changed").await?;
                forget_condition(run, condition_types::REMEDIATED);
            }
            State::OutOfSync => {
                check_retries(run, Action::Upgrade)?;
                once(&mut ran, "upgrade")?;
                run_action(r, run, Action::Upgrade).await?;
            }
            State::Failed => {
                let action = last_action(run);
                check_retries(run, action)?;
                let policy = policy(run.hr, action);
                if failures_of(run, action) > 0 && !policy.strategy_retry {
                    // A failure not remediated yet (its remediation failed, or the controller
                    // stopped): remediate now, then the next loop retries the action.
                    once(&mut ran, "remediate")?;
                    remediate(r, run, action, &policy).await?;
                } else {
                    once(&mut ran, action.name())?;
                    run_action(r, run, action).await?;
                }
            }
            State::Locked => {
                once(&mut ran, "unlock")?;
                unlock(run).await?;
            }
            State::Untested => {
                if ran.contains(&"test") {
                    // Failed tests that are ignored leave the revision untested.
                    return crate::drift::detect(r, run).await;
                }
                once(&mut ran, "test")?;
                test(r, run).await?;
            }
        }
    }
    Ok(())
}

/// The deployed release has another chart than the one to release, and the policy says to
/// reinstall on such a change.
fn chart_renamed(run: &Run<'_>) -> bool {
    let in_place = run
        .hr
        .spec
        .upgrade
        .as_ref()
        .and_then(|u| u.chart_name_change_strategy.as_deref())
        == Some("InPlaceUpdate");
    !in_place
        && run
            .releases
            .first()
            .is_some_and(|latest| latest.chart_name() != run.chart.name)
}

/// Records that `what` runs in this reconcile; a second time is an error retried later.
fn once(ran: &mut Vec<&'static str>, what: &'static str) -> Result<(), ReconcileError> {
    if ran.contains(&what) {
        return Err(ReconcileError::transient(
            driftless_api::meta::reasons::FAILED,
            format!("the release is not in sync after its {what}; retrying"),
        ));
    }
    ran.push(what);
    Ok(())
}

/// The action that made the latest revision: the one last attempted, else install for a first
/// revision and upgrade after it.
fn last_action(run: &Run<'_>) -> Action {
    match run.status.last_attempted_release_action.as_deref() {
        Some("install") => Action::Install,
        Some("upgrade") => Action::Upgrade,
        _ if run
            .releases
            .iter()
            .any(|r| r.info.status == "superseded" || r.version > 1) =>
        {
            Action::Upgrade
        }
        _ => Action::Install,
    }
}

/// Resets the failure counters for a new attempt (a new generation, chart version or values,
/// or a `resetAt` request) and records what is attempted; notes a `forceAt` request.
fn prepare_attempt(run: &mut Run<'_>) {
    let annotations = run.hr.annotations();
    let reset = annotations
        .get(RESET_AT_ANNOTATION)
        .filter(|t| Some(t.as_str()) != run.status.last_handled_reset_at.as_deref())
        .cloned();
    run.force = annotations
        .get(FORCE_AT_ANNOTATION)
        .filter(|t| Some(t.as_str()) != run.status.last_handled_force_at.as_deref())
        .cloned();
    let oci_digest = run.oci_digest();
    let status = &mut *run.status;
    let new_attempt = status.last_attempted_generation != run.hr.metadata.generation
        || status.last_attempted_revision.as_deref() != Some(run.chart.version.as_str())
        || status.last_attempted_config_digest.as_deref() != Some(run.config_digest.as_str());
    if new_attempt || reset.is_some() || run.force.is_some() {
        status.failures = None;
        status.install_failures = None;
        status.upgrade_failures = None;
    }
    if let Some(token) = reset {
        status.last_handled_reset_at = Some(token);
    }
    status.last_attempted_generation = run.hr.metadata.generation;
    status.last_attempted_revision = Some(run.chart.version.clone());
    // An OCI chart's digest (`<tag>@sha256:…`), as Flux tracks it.
    status.last_attempted_revision_digest = oci_digest;
    status.last_attempted_config_digest = Some(run.config_digest.clone());
    status.last_attempted_values_checksum = None;
    status.storage_namespace = Some(run.release_namespace.clone());
}

/// Fails with `RetriesExceeded` when `active` has used up its retries, unless a `forceAt`
/// request overrides it.
fn check_retries(run: &Run<'_>, active: Action) -> Result<(), ReconcileError> {
    let failures = failures_of(run, active);
    if run.force.is_some() || !exhausted(&policy(run.hr, active), failures) {
        return Ok(());
    }
    let conds = run.status.conditions.as_deref().unwrap_or_default();
    let (reason, last) = [condition_types::TEST_SUCCESS, condition_types::RELEASED]
        .iter()
        .find_map(|t| driftless_runtime::conditions::get(conds, t).filter(|c| c.status == "False"))
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| (failed_reason(active).to_string(), String::new()));
    Err(ReconcileError::stalled_because(
        &reason,
        helm_reasons::RETRIES_EXCEEDED,
        format!("Failed to {} after {failures} attempt(s): {last}", active.name()),
    ))
}

fn failed_reason(action: Action) -> &'static str {
    match action {
        Action::Install => helm_reasons::INSTALL_FAILED,
        Action::Upgrade => helm_reasons::UPGRADE_FAILED,
    }
}

/// Installs or upgrades; a failure is counted and remediated.
async fn run_action(
    r: &HelmReleaseReconciler,
    run: &mut Run<'_>,
    action: Action,
) -> Result<(), ReconcileError> {
    let failed_reason = failed_reason(action);
    let before = run.releases.first().map(|r| r.version);
    if let Some(token) = run.force.take() {
        run.status.last_handled_force_at = Some(token);
    }
    let timeout = action_timeout(run, action);
    r.progress(run, action.name(), timeout).await;
    apply_crds(r, run, action).await?;
    let args =
        action_args(r, run, action, timeout).map_err(|e| ReconcileError::transient(failed_reason, e))?;
    let started = std::time::Instant::now();
    let mut outcome = r
        .helm
        .run(&args, &run.connection, timeout)
        .await
        .map(|_| ())
        .map_err(|e| e.message);
    if outcome.is_ok() && waits_here(run, disable_wait(run.hr, action)) {
        let stored = latest(run).await?;
        let left = timeout.saturating_sub(started.elapsed());
        if let Err(why) = wait_for_health(r, run, &stored, left).await {
            // As Helm records a failed wait: the revision is failed in storage, so the next
            // reconcile sees a failed release (remediated or retried as the policy says).
            let description = format!("{} failed: {why}", action.name());
            mark_failed(run, &stored, &description).await?;
            outcome = Err(why);
        }
    }
    run.status.last_attempted_release_action = Some(action.name().into());
    run.status.last_attempted_release_action_duration = Some(duration::format(run.started.elapsed()));
    match outcome {
        Ok(()) => {
            let (name, succeeded) = match action {
                Action::Install => ("install", helm_reasons::INSTALL_SUCCEEDED),
                Action::Upgrade => ("upgrade", helm_reasons::UPGRADE_SUCCEEDED),
            };
            let stored = latest(run).await?;
            let message = format!(
                "Helm {name} succeeded for release {} with chart {}",
                stored.full_name(),
                run.chart_ref()
            );
            run.condition(condition_types::RELEASED, true, succeeded, &message);
            forget_condition(run, condition_types::REMEDIATED);
            forget_condition(run, condition_types::TEST_SUCCESS);
            run.status.observed_post_renderers_digest = Some(digest_of(&run.hr.spec.post_renderers));
            run.status.observed_common_metadata_digest = Some(digest_of(&run.hr.spec.common_metadata));
            run.event(EventType::Normal, succeeded, &message).await;
            run.done = Some((succeeded.to_string(), message));
            Ok(())
        }
        Err(why) => {
            let message = format!(
                "Helm {} failed for release {}/{} with chart {}: {why}",
                action.name(),
                run.release_namespace,
                run.release_name,
                run.chart_ref(),
            );
            run.condition(condition_types::RELEASED, false, failed_reason, &message);
            // Helm refuses some failures (a values schema, a locked name) before it stores a
            // revision: there is nothing to remediate then.
            let stored = latest(run).await.ok().map(|r| r.version) != before;
            Err(action_failed(r, run, action, failed_reason, message, stored).await)
        }
    }
}

/// Counts a failure of `action` (its own, or of its tests) and remediates it as the policy
/// says; returns the error the reconcile ends with.
async fn action_failed(
    r: &HelmReleaseReconciler,
    run: &mut Run<'_>,
    action: Action,
    reason: &str,
    message: String,
    stored: bool,
) -> ReconcileError {
    // This event carries the release's chart and app version, which `finish`'s would not: the
    // errors below are marked reported, except a stall, whose message is new.
    run.event(EventType::Warning, reason, &message).await;
    // Refused before Helm stored a revision (a values schema, the apiserver unreachable,
    // another operation in progress): nothing to remediate or count, as in Flux; retried.
    if !stored {
        return ReconcileError::transient(reason, message).reported();
    }
    let policy = policy(run.hr, action);
    run.status.failures = Some(run.status.failures.unwrap_or(0) + 1);
    let count = match action {
        Action::Install => run.status.install_failures.get_or_insert(0),
        Action::Upgrade => run.status.upgrade_failures.get_or_insert(0),
    };
    *count += 1;
    let count = *count;
    if policy.strategy_retry {
        return ReconcileError::transient(reason, message).reported();
    }
    let exhausted = exhausted(&policy, count);
    let mut outcome = (reason.to_string(), message.clone());
    if !exhausted || policy.remediate_last {
        match remediate(r, run, action, &policy).await {
            Ok(remediated) => outcome = remediated,
            Err(e) => return e,
        }
    }
    if exhausted {
        ReconcileError::stalled_because(
            &outcome.0,
            helm_reasons::RETRIES_EXCEEDED,
            format!("Failed to {} after {count} attempt(s): {message}", action.name()),
        )
    } else {
        // The failure, and the remediation's outcome, had their events above.
        ReconcileError::transient(&outcome.0, outcome.1).reported()
    }
}

/// Remediates a failed `action`: a failed install is uninstalled, a failed upgrade rolled back
/// (or uninstalled with `strategy: uninstall`). A revision a killed action left locked is
/// unlocked first, as Helm refuses to act on it.
async fn remediate(
    r: &HelmReleaseReconciler,
    run: &mut Run<'_>,
    action: Action,
    policy: &Policy,
) -> Result<(String, String), ReconcileError> {
    run.releases = release::history(&run.client, &run.release_namespace, &run.release_name)
        .await
        .map_err(|m| ReconcileError::transient(driftless_api::meta::reasons::FAILED, m))?;
    if run.releases.first().is_some_and(Release::is_pending) {
        unlock(run).await?;
    }
    match action {
        Action::Install => uninstall(r, run, "install").await,
        Action::Upgrade if policy.uninstall_on_upgrade_failure => uninstall(r, run, "upgrade").await,
        Action::Upgrade => rollback(r, run).await,
    }
}

/// The CRD policy of an action: install's default is Create (Helm installs `crds/`), upgrade's
/// Skip (Helm never touches `crds/` on upgrade); the deprecated `skipCRDs` means Skip.
fn crd_policy(hr: &HelmRelease, action: Action) -> &str {
    match action {
        Action::Install => {
            let install = hr.spec.install.as_ref();
            match install.and_then(|i| i.crds.as_deref()) {
                Some(policy) => policy,
                None if install.and_then(|i| i.skip_crds) == Some(true) => "Skip",
                None => "Create",
            }
        }
        Action::Upgrade => hr
            .spec
            .upgrade
            .as_ref()
            .and_then(|u| u.crds.as_deref())
            .unwrap_or("Skip"),
    }
}

/// Applies the chart's `crds/` (and its unpacked subcharts') through the shared apply engine
/// before an upgrade with `Create` or `CreateReplace`, or an install with `CreateReplace`:
/// `Create` only creates the missing ones, `CreateReplace` also updates existing ones. Helm
/// itself handles an install's `Create` and never updates CRDs.
async fn apply_crds(
    r: &HelmReleaseReconciler,
    run: &mut Run<'_>,
    action: Action,
) -> Result<(), ReconcileError> {
    let policy = crd_policy(run.hr, action);
    let ours = match action {
        Action::Install => policy == "CreateReplace",
        Action::Upgrade => policy != "Skip",
    };
    if !ours {
        return Ok(());
    }
    let reason = failed_reason(action);
    let mut objects = crate::chart::crds(&run.chart_dir).map_err(|m| ReconcileError::stalled(reason, m))?;
    if objects.is_empty() {
        return Ok(());
    }
    if policy == "Create" {
        let api: Api<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        > = Api::all(run.client.clone());
        let mut missing = Vec::new();
        for object in objects {
            let name = object
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            let exists = api
                .get_opt(name)
                .await
                .map_err(|e| ReconcileError::transient(reason, format!("failed to get CRD {name}: {e}")))?
                .is_some();
            if !exists {
                missing.push(object);
            }
        }
        objects = missing;
    }
    let options = driftless_apply::ApplyOptions {
        manager: driftless_api::helm::FIELD_MANAGER,
        group: driftless_api::helm::GROUP,
        force: false,
        ignore: &[],
        dry_run: false,
        ..Default::default()
    };
    let (_, changes, _) =
        driftless_apply::apply_staged(&run.client, &r.discovery, objects, &options, &r.observed)
            .await
            .map_err(|e| match e.failure {
                driftless_apply::ApplyFailure::Invalid => ReconcileError::stalled(reason, e.message),
                _ => ReconcileError::transient(reason, e.message),
            })?;
    if !changes.is_empty() {
        tracing::info!(changes = %changes.join(", "), "chart CRDs applied");
    }
    Ok(())
}

/// Rolls a failed upgrade back to the newest earlier revision that was deployed.
async fn rollback(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(String, String), ReconcileError> {
    let releases = release::history(&run.client, &run.release_namespace, &run.release_name)
        .await
        .map_err(|m| ReconcileError::transient(helm_reasons::ROLLBACK_FAILED, m))?;
    let failed_version = releases.first().map(|r| r.version).unwrap_or_default();
    let Some(target) = releases
        .iter()
        .find(|r| {
            r.version < failed_version && (r.info.status == "superseded" || r.info.status == "deployed")
        })
        .cloned()
    else {
        return Err(ReconcileError::stalled(
            helm_reasons::MISSING_ROLLBACK_TARGET,
            format!(
                "no earlier deployed revision of release {}/{} to roll back to",
                run.release_namespace, run.release_name
            ),
        ));
    };
    let spec = run.hr.spec.rollback.clone().unwrap_or_default();
    let timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(run.timeout);
    r.progress(run, "rollback", timeout).await;
    let mut args = vec![
        "rollback".to_string(),
        run.release_name.clone(),
        target.version.to_string(),
        "--namespace".into(),
        run.release_namespace.clone(),
        "--timeout".into(),
        timeout_arg(timeout),
        "--history-max".into(),
        max_history(run.hr).to_string(),
    ];
    wait_flags(&mut args, run.hr, spec.disable_wait, spec.disable_wait_for_jobs);
    flag(&mut args, spec.disable_hooks, "--no-hooks");
    apply_flags(&mut args, spec.force, spec.server_side_apply.as_deref());
    flag(&mut args, spec.cleanup_on_fail, "--cleanup-on-fail");
    let target_ref = format!("{}@{}", target.chart_name(), target.chart_version());
    match r.helm.run(&args, &run.connection, timeout).await {
        Ok(_) => {
            let message = format!(
                "Helm rollback to previous release {} with chart {target_ref} succeeded",
                target.full_name()
            );
            run.condition(
                condition_types::REMEDIATED,
                true,
                helm_reasons::ROLLBACK_SUCCEEDED,
                &message,
            );
            run.event(EventType::Normal, helm_reasons::ROLLBACK_SUCCEEDED, &message)
                .await;
            Ok((helm_reasons::ROLLBACK_SUCCEEDED.into(), message))
        }
        Err(e) => {
            let message = format!(
                "Helm rollback to previous release {} with chart {target_ref} failed: {}",
                target.full_name(),
                e.message
            );
            run.condition(
                condition_types::REMEDIATED,
                false,
                helm_reasons::ROLLBACK_FAILED,
                &message,
            );
            Err(ReconcileError::transient(helm_reasons::ROLLBACK_FAILED, message))
        }
    }
}

/// Uninstalls a release whose install (or upgrade, with `strategy: uninstall`) failed.
async fn uninstall(
    r: &HelmReleaseReconciler,
    run: &mut Run<'_>,
    after: &str,
) -> Result<(String, String), ReconcileError> {
    let stored = release::history(&run.client, &run.release_namespace, &run.release_name)
        .await
        .map_err(|m| ReconcileError::transient(helm_reasons::UNINSTALL_FAILED, m))?;
    let full_name = stored
        .first()
        .map(Release::full_name)
        .unwrap_or_else(|| format!("{}/{}", run.release_namespace, run.release_name));
    let args = uninstall_args(run.hr, &run.release_name, &run.release_namespace, run.timeout);
    let timeout = uninstall_timeout(run.hr, run.timeout);
    r.progress(run, "uninstall", timeout).await;
    let chart_ref = run.chart_ref();
    match r.helm.run(&args, &run.connection, timeout).await {
        Ok(_) => {
            let message = format!("Helm uninstall succeeded for release {full_name} with chart {chart_ref}");
            run.condition(
                condition_types::REMEDIATED,
                true,
                helm_reasons::UNINSTALL_SUCCEEDED,
                &message,
            );
            run.event(EventType::Normal, helm_reasons::UNINSTALL_SUCCEEDED, &message)
                .await;
            tracing::info!(after, "release uninstalled");
            Ok((helm_reasons::UNINSTALL_SUCCEEDED.into(), message))
        }
        Err(e) => {
            let message = format!(
                "Helm uninstall failed for release {full_name} with chart {chart_ref}: {}",
                e.message
            );
            run.condition(
                condition_types::REMEDIATED,
                false,
                helm_reasons::UNINSTALL_FAILED,
                &message,
            );
            Err(ReconcileError::transient(helm_reasons::UNINSTALL_FAILED, message))
        }
    }
}

/// `helm uninstall` arguments from `spec.uninstall`.
pub fn uninstall_args(hr: &HelmRelease, name: &str, namespace: &str, fallback: Duration) -> Vec<String> {
    let spec = hr.spec.uninstall.clone().unwrap_or_default();
    let mut args = vec![
        "uninstall".to_string(),
        name.to_string(),
        "--namespace".into(),
        namespace.to_string(),
        "--timeout".into(),
        timeout_arg(uninstall_timeout(hr, fallback)),
        "--ignore-not-found".into(),
        "--cascade".into(),
        spec.deletion_propagation
            .clone()
            .unwrap_or_else(|| "background".into()),
    ];
    if spec.disable_wait != Some(true) {
        args.push(wait_arg(hr));
    }
    flag(&mut args, spec.disable_hooks, "--no-hooks");
    flag(&mut args, spec.keep_history, "--keep-history");
    args
}

/// `spec.uninstall.timeout`, else `spec.timeout`.
pub fn uninstall_timeout(hr: &HelmRelease, fallback: Duration) -> Duration {
    hr.spec
        .uninstall
        .as_ref()
        .and_then(|u| u.timeout.as_deref())
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(fallback)
}

/// Runs the release's tests; a failure counts against the action that made the revision
/// unless test failures are ignored.
async fn test(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(), ReconcileError> {
    let spec = run.hr.spec.test.clone().unwrap_or_default();
    let timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(run.timeout);
    r.progress(run, "test", timeout).await;
    let mut args = vec![
        "test".to_string(),
        run.release_name.clone(),
        "--namespace".into(),
        run.release_namespace.clone(),
        "--timeout".into(),
        timeout_arg(timeout),
    ];
    for filter in spec.filters.iter().flatten() {
        args.push("--filter".into());
        if filter.exclude == Some(true) {
            args.push(format!("!name={}", filter.name));
        } else {
            args.push(format!("name={}", filter.name));
        }
    }
    let outcome = r.helm.run(&args, &run.connection, timeout).await;
    let stored = latest(run).await?;
    let hooks = stored.test_hooks().filter(|h| selected(run.hr, &h.name)).count();
    let chart_ref = run.chart_ref();
    match outcome {
        Ok(_) => {
            let detail = match hooks {
                0 => "no test hooks".to_string(),
                n => format!("{n} test hook(s) completed successfully"),
            };
            let message = format!(
                "Helm test succeeded for release {} with chart {chart_ref}: {detail}",
                stored.full_name()
            );
            run.condition(
                condition_types::TEST_SUCCESS,
                true,
                helm_reasons::TEST_SUCCEEDED,
                &message,
            );
            run.event(EventType::Normal, helm_reasons::TEST_SUCCEEDED, &message)
                .await;
            run.done = Some((helm_reasons::TEST_SUCCEEDED.into(), message));
            Ok(())
        }
        Err(e) => {
            let message = format!(
                "Helm test failed for release {} with chart {chart_ref}: {}",
                stored.full_name(),
                e.message
            );
            run.condition(
                condition_types::TEST_SUCCESS,
                false,
                helm_reasons::TEST_FAILED,
                &message,
            );
            let action = last_action(run);
            let ignored = spec.ignore_failures == Some(true) || policy(run.hr, action).ignore_test_failures;
            if ignored {
                run.event(EventType::Warning, helm_reasons::TEST_FAILED, &message)
                    .await;
                return Ok(());
            }
            Err(action_failed(r, run, action, helm_reasons::TEST_FAILED, message, true).await)
        }
    }
}

/// Marks a `pending-*` revision left by a killed action as failed, as Flux unlocks it, so the
/// next action can run; Helm refuses to act on a locked release.
async fn unlock(run: &mut Run<'_>) -> Result<(), ReconcileError> {
    let Some(latest) = run.releases.first().cloned() else {
        return Ok(());
    };
    let previous = latest.info.status.clone();
    mark_failed(
        run,
        &latest,
        &format!("Release unlocked from stale '{previous}' state"),
    )
    .await?;
    tracing::info!(release = %latest.full_name(), %previous, "unlocked release");
    Ok(())
}

/// Records the stored revision `stored` as failed with `description`, in Helm's own storage
/// format (the gzipped release JSON and the `status` label), as Helm records a failed action.
async fn mark_failed(run: &Run<'_>, stored: &Release, description: &str) -> Result<(), ReconcileError> {
    let name = format!("sh.helm.release.v1.{}.v{}", stored.name, stored.version);
    let secrets: Api<Secret> = Api::namespaced(run.client.clone(), &run.release_namespace);
    let failed = |e: String| {
        ReconcileError::transient(
            driftless_api::meta::reasons::FAILED,
            format!("failed to mark release {} failed: {e}", stored.full_name()),
        )
    };
    let secret = secrets.get(&name).await.map_err(|e| failed(e.to_string()))?;
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("release"))
        .ok_or_else(|| failed("no release data".into()))?;
    let mut json = release::decode_value(&data.0).map_err(failed)?;
    json["info"]["status"] = "failed".into();
    json["info"]["description"] = description.into();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(json.to_string().as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(gz.finish().map_err(|e| failed(e.to_string()))?);
    let patch = serde_json::json!({
        "metadata": {"labels": {"status": "failed"}},
        "data": {"release": ByteString(encoded.into_bytes())},
    });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// The newest stored revision (after an action wrote it).
async fn latest(run: &mut Run<'_>) -> Result<Release, ReconcileError> {
    run.releases = release::history(&run.client, &run.release_namespace, &run.release_name)
        .await
        .map_err(|m| ReconcileError::transient(driftless_api::meta::reasons::FAILED, m))?;
    if let Some(latest) = run.releases.first() {
        run.made.push(latest.version);
    }
    run.releases.first().cloned().ok_or_else(|| {
        ReconcileError::transient(
            driftless_api::meta::reasons::FAILED,
            format!(
                "release {}/{} not found after the action",
                run.release_namespace, run.release_name
            ),
        )
    })
}

fn forget_condition(run: &mut Run<'_>, type_: &str) {
    if let Some(conds) = run.status.conditions.as_mut() {
        driftless_runtime::conditions::delete(conds, type_);
    }
}

fn action_timeout(run: &Run<'_>, action: Action) -> Duration {
    let spec = &run.hr.spec;
    let timeout = match action {
        Action::Install => spec.install.as_ref().and_then(|i| i.timeout.clone()),
        Action::Upgrade => spec.upgrade.as_ref().and_then(|u| u.timeout.clone()),
    };
    timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(run.timeout)
}

/// `spec.maxHistory`, Flux's default 5 (0 is unlimited, as for Helm).
fn max_history(hr: &HelmRelease) -> i64 {
    hr.spec.max_history.unwrap_or(5)
}

/// The wait strategy: Flux's default poller is kstatus, Helm's `watcher`.
fn wait_arg(hr: &HelmRelease) -> String {
    match hr.spec.wait_strategy.as_ref().map(|w| w.name.as_str()) {
        Some("legacy") => "--wait=legacy".into(),
        _ => "--wait=watcher".into(),
    }
}

/// `enabled|disabled|auto` as Helm's `true|false|auto`.
fn server_side(policy: Option<&str>) -> Option<&'static str> {
    match policy {
        Some("enabled") => Some("true"),
        Some("disabled") => Some("false"),
        Some("auto") => Some("auto"),
        _ => None,
    }
}

/// `--wait=<strategy>` and `--wait-for-jobs`, unless disabled (install, upgrade, rollback).
fn wait_flags(
    args: &mut Vec<String>,
    hr: &HelmRelease,
    disable_wait: Option<bool>,
    disable_jobs: Option<bool>,
) {
    if disable_wait != Some(true) {
        args.push(wait_arg(hr));
        flag(args, Some(disable_jobs != Some(true)), "--wait-for-jobs");
    }
}

/// Whether the release's objects are waited for by the controller rather than by Helm: the
/// poller wait (not `legacy`) with `healthCheckExprs`, which Helm's own waiter cannot evaluate.
fn waits_here(run: &Run<'_>, disable_wait: Option<bool>) -> bool {
    !run.custom_health.is_empty()
        && disable_wait != Some(true)
        && run.hr.spec.wait_strategy.as_ref().map(|w| w.name.as_str()) != Some("legacy")
}

/// The `disableWait` of `action`.
fn disable_wait(hr: &HelmRelease, action: Action) -> Option<bool> {
    match action {
        Action::Install => hr.spec.install.as_ref().and_then(|i| i.disable_wait),
        Action::Upgrade => hr.spec.upgrade.as_ref().and_then(|u| u.disable_wait),
    }
}

/// Waits until every object of the stored release is healthy by kstatus or by the
/// `healthCheckExprs` that name its kind, within `timeout`; the error says which are not.
async fn wait_for_health(
    r: &HelmReleaseReconciler,
    run: &Run<'_>,
    stored: &Release,
    timeout: Duration,
) -> Result<(), String> {
    let objects = release::manifest_objects(&stored.manifest)?;
    let targets: Vec<(driftless_apply::ObjectId, String)> = objects
        .iter()
        .map(|o| {
            let api_version = o.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
            let (group, version) = driftless_apply::object::group_version(api_version);
            let field = |p: &str| {
                o.pointer(p)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let namespace = Some(field("/metadata/namespace"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| run.release_namespace.clone());
            let id = driftless_apply::ObjectId {
                namespace,
                name: field("/metadata/name"),
                group,
                kind: field("/kind"),
            };
            (id, version)
        })
        .collect();
    let wait = driftless_apply::HealthWait {
        client: &run.client,
        discovery: &r.discovery,
        observed: &r.observed,
        custom: &run.custom_health,
        fail_fast: true,
    };
    let never = || async { None };
    wait.until_healthy(&targets, &Default::default(), timeout, never)
        .await
        .map_err(|unhealthy| match unhealthy {
            driftless_apply::wait::Unhealthy::Failed(m)
            | driftless_apply::wait::Unhealthy::Timeout(m)
            | driftless_apply::wait::Unhealthy::Canceled(m) => m,
        })
}

/// `disableOpenAPIValidation` and `disableSchemaValidation` (install, upgrade).
fn validation_flags(args: &mut Vec<String>, openapi: Option<bool>, schema: Option<bool>) {
    flag(args, openapi, "--disable-openapi-validation");
    flag(args, schema, "--skip-schema-validation");
}

/// How an upgrade or rollback writes objects. `force` replaces them, which Helm refuses under
/// server-side apply, so it applies client-side; otherwise `--force-conflicts` takes back the
/// fields a drift correction applied as helm-controller, with the `serverSideApply` policy.
fn apply_flags(args: &mut Vec<String>, force: Option<bool>, server_side_apply: Option<&str>) {
    if force == Some(true) {
        args.push("--force-replace".into());
        args.push("--server-side=false".into());
    } else {
        args.push("--force-conflicts".into());
        if let Some(ssa) = server_side(server_side_apply) {
            args.push(format!("--server-side={ssa}"));
        }
    }
}

fn flag(args: &mut Vec<String>, set: Option<bool>, name: &str) {
    if set == Some(true) {
        args.push(name.into());
    }
}

/// `helm install` or `helm upgrade` arguments: chart directory, values file, post-renderer
/// spec (both written into the run's work directory) and the action's options.
fn action_args(
    r: &HelmReleaseReconciler,
    run: &Run<'_>,
    action: Action,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let workdir = run
        .workdir
        .as_ref()
        .ok_or_else(|| "the chart was not downloaded".to_string())?
        .path();
    let values = workdir.join("values.json");
    std::fs::write(&values, run.values.to_string()).map_err(|e| e.to_string())?;
    let mut args = vec![
        action.name().to_string(),
        run.release_name.clone(),
        run.chart_dir.to_string_lossy().into_owned(),
        "--namespace".into(),
        run.release_namespace.clone(),
        "--values".into(),
        values.to_string_lossy().into_owned(),
        "--timeout".into(),
        timeout_arg(timeout),
    ];
    if r.helm.has_post_renderer() {
        let spec = crate::post_render::Spec {
            name: run.hr.name_any(),
            namespace: run.hr.namespace().unwrap_or_default(),
            common_metadata: run.hr.spec.common_metadata.clone(),
            post_renderers: run.hr.spec.post_renderers.clone().unwrap_or_default(),
            strategy: run.hr.spec.post_render_strategy.clone(),
        };
        let path = workdir.join("post-render.json");
        std::fs::write(&path, serde_json::to_vec(&spec).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        args.extend([
            "--post-renderer".into(),
            POST_RENDERER.into(),
            "--post-renderer-args".into(),
            path.to_string_lossy().into_owned(),
        ]);
    }
    match action {
        Action::Install => {
            let spec = run.hr.spec.install.clone().unwrap_or_default();
            // With `healthCheckExprs` the controller waits for the objects itself (see
            // `wait_for_health`): Helm waits for hooks only, its default.
            if !waits_here(run, spec.disable_wait) {
                wait_flags(&mut args, run.hr, spec.disable_wait, spec.disable_wait_for_jobs);
            }
            flag(&mut args, spec.disable_hooks, "--no-hooks");
            validation_flags(
                &mut args,
                spec.disable_openapi_validation,
                spec.disable_schema_validation,
            );
            flag(&mut args, spec.create_namespace, "--create-namespace");
            let replace = spec.replace == Some(true) || !run.releases.is_empty();
            flag(&mut args, Some(replace), "--replace");
            // CreateReplace: the controller applied the chart's CRDs already (see `apply_crds`).
            flag(
                &mut args,
                Some(crd_policy(run.hr, action) != "Create"),
                "--skip-crds",
            );
            if spec.disable_take_ownership != Some(true) {
                args.push("--take-ownership".into());
            }
            if spec.server_side_apply == Some(false) {
                args.push("--server-side=false".into());
            }
        }
        Action::Upgrade => {
            let spec = run.hr.spec.upgrade.clone().unwrap_or_default();
            args.push("--history-max".into());
            args.push(max_history(run.hr).to_string());
            if spec.preserve_values == Some(true) {
                args.push("--reuse-values".into());
            } else {
                args.push("--reset-values".into());
            }
            // With `healthCheckExprs` the controller waits for the objects itself (see
            // `wait_for_health`): Helm waits for hooks only, its default.
            if !waits_here(run, spec.disable_wait) {
                wait_flags(&mut args, run.hr, spec.disable_wait, spec.disable_wait_for_jobs);
            }
            flag(&mut args, spec.disable_hooks, "--no-hooks");
            validation_flags(
                &mut args,
                spec.disable_openapi_validation,
                spec.disable_schema_validation,
            );
            apply_flags(&mut args, spec.force, spec.server_side_apply.as_deref());
            flag(&mut args, spec.cleanup_on_fail, "--cleanup-on-fail");
            if spec.disable_take_ownership != Some(true) {
                args.push("--take-ownership".into());
            }
        }
    }
    Ok(args)
}
