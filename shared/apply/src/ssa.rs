//! Server-side apply in Flux's stages, each validated by a dry-run before anything is written.

use std::collections::HashMap;

use futures::StreamExt;

use kube::Client;
use kube::api::DynamicObject;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::wait::Condition;
use kube::runtime::wait::conditions::is_deleted;
use serde_json::Value;

use crate::discovery::{Discovery, api};
use crate::ignore::{DriftIgnore, ignored_paths, remove_pointer, set_pointer};
use crate::object::{ObjectId, annotation, comparable, field_text};
use crate::observed::{Observed, identity};
use crate::takeover::{has_taken_over_managers, migrated_fields, take_over_fields};

/// Longest wait for an object deleted to be recreated (immutable fields changed, `force`).
const RECREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How objects are applied: the field manager, the API group whose per-object annotations steer
/// the apply (`<group>/ssa`, `<group>/force`, `<group>/reconcile`), whether immutable fields are
/// replaced by recreating the object, and the drift-ignore rules.
pub struct ApplyOptions<'a> {
    pub manager: &'a str,
    pub group: &'a str,
    pub force: bool,
    pub ignore: &'a [DriftIgnore],
    /// Plan only: every object is dry-run and compared, nothing is written (drift detection
    /// that reports without correcting).
    pub dry_run: bool,
    /// Objects planned and written at once within a stage (Flux's `--concurrent-ssa`).
    pub concurrency: usize,
    /// Kinds applied in a stage of their own, after the class definitions and before the rest
    /// (Flux's `--custom-apply-stage-kinds`).
    pub custom_stage: &'a [GroupKind],
    /// Field managers whose fields are taken over besides kubectl's (`--override-manager`).
    pub override_managers: &'a [String],
    /// The controller's own Apply entry recorded at another API version is moved to the
    /// applied one (Flux's `MigrateAPIVersion` gate).
    pub migrate_api_version: bool,
}

/// Flux's default of `--concurrent-ssa`.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl Default for ApplyOptions<'_> {
    fn default() -> Self {
        Self {
            manager: "",
            group: "",
            force: false,
            ignore: &[],
            dry_run: false,
            concurrency: DEFAULT_CONCURRENCY,
            custom_stage: &[],
            override_managers: &[],
            migrate_api_version: false,
        }
    }
}

/// A kind and its API group (empty for the core group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    /// Parses Flux's comma-separated `group/Kind` list (`Kind` alone is the core group), as
    /// `--custom-apply-stage-kinds` takes it.
    pub fn parse_list(list: &str) -> Result<Vec<GroupKind>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| match item.split_once('/') {
                None => Ok(GroupKind {
                    group: String::new(),
                    kind: item.to_string(),
                }),
                Some((_, kind)) if kind.is_empty() || kind.contains('/') => {
                    Err(format!("invalid group/kind format: {item}"))
                }
                Some((group, kind)) => Ok(GroupKind {
                    group: group.to_string(),
                    kind: kind.to_string(),
                }),
            })
            .collect()
    }
}

/// Why an apply failed, by whose move it is (the order is precedence: when several objects
/// fail, the error takes the first of these that any of them has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApplyFailure {
    /// The manifests or the rules are wrong, or the identity applying them lacks the rights
    /// (400, 403, 422, an invalid drift-ignore selector): the user must fix something.
    Invalid,
    /// The apiserver or the network failed: retrying may work.
    Unavailable,
    /// Something the objects need is not there yet (404: their namespace; a kind not served).
    Missing,
}

impl ApplyFailure {
    /// The class of an apiserver error.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(e) if matches!(e.code, 400 | 403 | 422) => ApplyFailure::Invalid,
            kube::Error::Api(e) if e.code == 404 => ApplyFailure::Missing,
            _ => ApplyFailure::Unavailable,
        }
    }
}

/// An apply that failed (a dry-run, the apply itself, a takeover or a recreate), with every
/// object's message, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub failure: ApplyFailure,
    pub message: String,
}

impl ApplyError {
    fn new(failure: ApplyFailure, message: impl Into<String>) -> Self {
        Self {
            failure,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApplyError {}

/// An object to apply, with where it goes.
pub struct Desired {
    pub id: ObjectId,
    pub version: String,
    pub object: Value,
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// What applying an object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Skipped,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Skipped => "skipped",
        }
    }
}

/// What applying produced: each object with its version and manifest, the change lines for the
/// event, and the live state of each object as the apply last saw it (the dry-run's result for
/// unchanged objects, the apply's response for written ones): its first health sample.
pub type Applied = (Vec<AppliedObject>, Vec<String>, HashMap<ObjectId, Value>);

/// An applied object: its id, version and manifest.
pub type AppliedObject = (ObjectId, String, Value);

/// Flux's apply stages: cluster definitions first, then classes, then the custom stage's kinds,
/// then everything else.
pub fn stage_of(object: &Value, custom_stage: &[GroupKind]) -> usize {
    let kind = field_text(object, "/kind");
    match kind.as_str() {
        "CustomResourceDefinition" | "Namespace" | "ClusterRole" => 0,
        k if k.ends_with("Class") => 1,
        k => {
            let api_version = field_text(object, "/apiVersion");
            let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
            if custom_stage.iter().any(|gk| gk.kind == k && gk.group == group) {
                2
            } else {
                3
            }
        }
    }
}

/// Applies `objects` in Flux's stages with field manager `manager`, each stage validated by a
/// dry-run before anything in it is written, and CRDs established before the stages that may
/// use them.
pub async fn apply_staged(
    client: &Client,
    discovery: &Discovery,
    objects: Vec<Value>,
    options: &ApplyOptions<'_>,
    observed: &Observed,
) -> Result<Applied, ApplyError> {
    let mut stages: [Vec<Value>; 4] = Default::default();
    for object in objects {
        stages[stage_of(&object, options.custom_stage)].push(object);
    }
    let mut applied = Vec::new();
    let mut current = HashMap::new();
    let mut changes = Vec::new();
    for (index, stage) in stages.into_iter().enumerate() {
        if stage.is_empty() {
            continue;
        }
        let mut desired = Vec::with_capacity(stage.len());
        for object in stage {
            let described = discovery.describe(client, object).await;
            desired.push(described.map_err(|m| ApplyError::new(ApplyFailure::Missing, m))?);
        }
        let actions = apply_stage(client, &desired, options, observed).await?;
        let mut changed_definitions = Vec::new();
        for (d, (action, live)) in desired.into_iter().zip(actions) {
            if matches!(action, Action::Created | Action::Configured) {
                changes.push(format!("{} {}", d.id.display(), action.verb()));
                if d.id.kind == "CustomResourceDefinition" {
                    changed_definitions.push(d.id.clone());
                }
            }
            if let Some(object) = live {
                current.insert(d.id.clone(), object);
            }
            applied.push((d.id, d.version, d.object));
        }
        if index == 0 && !changed_definitions.is_empty() && !options.dry_run {
            // New or changed CRDs must be served before the next stage uses their kinds;
            // an unchanged stage costs no waiting and no rediscovery.
            discovery.wait_established(client, &changed_definitions).await;
        }
    }
    Ok((applied, changes, current))
}

/// Applies one stage: every object is validated by a server-side dry-run first, and nothing is
/// written when any of them fails. Returns what happened to each object, with its live state as
/// the dry-run found it (unchanged objects) or the apply returned it (written ones). Up to `options.concurrency` objects are planned at once (Flux's
/// `--concurrent-ssa`); the writes then go one after another, in order, and stop at the first
/// that fails, as Flux's `ApplyAll` does.
pub async fn apply_stage(
    client: &Client,
    objects: &[Desired],
    options: &ApplyOptions<'_>,
    observed: &Observed,
) -> Result<Vec<(Action, Option<Value>)>, ApplyError> {
    let concurrency = options.concurrency.max(1);
    // The futures are made before they are streamed: a stream of a closure's futures borrowing
    // `objects` would not be `Send` for every lifetime the controllers' futures need.
    let plans: Vec<_> = objects
        .iter()
        .map(|desired| plan(client, desired, options, observed))
        .collect();
    let planned: Vec<Result<Plan, (ApplyFailure, String)>> =
        futures::stream::iter(plans).buffered(concurrency).collect().await;
    let mut plans = Vec::with_capacity(planned.len());
    let mut errors = Vec::new();
    for result in planned {
        match result {
            Ok(plan) => plans.push(plan),
            Err(error) => errors.push(error),
        }
    }
    if let Some(failure) = errors.iter().map(|(f, _)| *f).min() {
        let lines: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
        return Err(ApplyError::new(failure, lines.join("\n")));
    }
    if options.dry_run {
        return Ok(plans.into_iter().map(|plan| (plan.action, None)).collect());
    }
    let mut actions = Vec::with_capacity(plans.len());
    for (desired, plan) in objects.iter().zip(plans) {
        actions.push(write(client, desired, plan, options.manager, observed).await?);
    }
    Ok(actions)
}

/// What the dry-run decided for one object.
struct Plan {
    action: Action,
    /// Delete and create again (immutable fields changed, `force`).
    recreate: bool,
    /// What is applied: the manifest, minus drift-ignored fields on objects that exist.
    manifest: Value,
    /// Managed fields to write before applying (Flux's cleanup of kubectl's managers).
    takeover: Option<Value>,
    /// The live object, when the dry-run found it unchanged: health is judged from it.
    live: Option<Value>,
}

impl Plan {
    fn of(action: Action, manifest: Value) -> Self {
        Self {
            action,
            recreate: false,
            manifest,
            takeover: None,
            live: None,
        }
    }
}

/// Plans one object: reads it only when its manifest depends on the live state, dry-runs the
/// apply, and compares the result with the live object (known from earlier applies when it
/// can be).
async fn plan(
    client: &Client,
    desired: &Desired,
    options: &ApplyOptions<'_>,
    observed: &Observed,
) -> Result<Plan, (ApplyFailure, String)> {
    let manager = options.manager;
    let steer =
        |what: &str| annotation(&desired.object, &format!("{}/{what}", options.group)).map(str::to_string);
    let mut dry = PatchParams::apply(manager).force();
    dry.dry_run = true;
    let mut manifest = desired.object.clone();
    let api = api(
        client,
        &desired.resource,
        desired.namespaced,
        &desired.id.namespace,
    );
    let get_failed = |e: kube::Error| {
        (
            ApplyFailure::of(&e),
            format!("{} get failed: {e}", desired.id.display()),
        )
    };
    let ssa = steer("ssa");
    let ssa = ssa.as_deref();
    if steer("reconcile").as_deref() == Some("disabled") || ssa == Some("Ignore") {
        return Ok(Plan::of(Action::Skipped, manifest));
    }
    let ignored = ignored_paths(options.ignore, &desired.object).map_err(|m| (ApplyFailure::Invalid, m))?;
    // Only objects whose manifest depends on the live state are read before the dry-run;
    // the others learn whether they exist from it.
    let mut read = None;
    if ssa == Some("IfNotPresent") || !ignored.is_empty() || options.migrate_api_version {
        read = Some(
            api.get_opt(&desired.id.name)
                .await
                .map_err(get_failed)?
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
        );
    }
    let migration = match &read {
        Some(Some(existing)) if !options.dry_run && ssa != Some("IfNotPresent") => {
            migrated_fields(existing, options, &desired.object)
        }
        _ => None,
    };
    if let Some(fields) = migration {
        let migrated = patch_managed_fields(&api, &desired.id.name, fields)
            .await
            .map_err(|e| {
                let message = format!(
                    "{} managed fields migration failed: {}",
                    desired.id.display(),
                    api_message(&e)
                );
                (ApplyFailure::of(&e), message)
            })?;
        // What follows (the takeover) starts from the migrated entries.
        read = Some(Some(migrated));
    }
    if let Some(Some(existing)) = &read {
        if ssa == Some("IfNotPresent") {
            return Ok(Plan::of(Action::Skipped, manifest));
        }
        // Ignored fields keep their live values (removing them would make server-side
        // apply delete the ones this manager owned).
        for pointer in &ignored {
            match existing.pointer(pointer) {
                Some(value) => set_pointer(&mut manifest, pointer, value.clone()),
                None => remove_pointer(&mut manifest, pointer),
            }
        }
    }
    let force = options.force || steer("force").as_deref() == Some("enabled");
    let result = match api.patch(&desired.id.name, &dry, &Patch::Apply(&manifest)).await {
        Ok(result) => serde_json::to_value(result).unwrap_or_default(),
        Err(kube::Error::Api(e)) if force && e.code == 422 && e.message.contains("immutable") => {
            let mut plan = Plan::of(Action::Created, manifest);
            plan.recreate = true;
            return Ok(plan);
        }
        Err(e) => {
            let message = format!("{} dry-run failed: {}", desired.id.display(), api_message(&e));
            return Err((ApplyFailure::of(&e), message));
        }
    };
    if identity(&result).is_none() {
        return Ok(Plan::of(Action::Created, manifest));
    }
    // The dry-run result still lists the managers to take over; their fields are merged
    // with what this manager owned before the apply, so the live object is needed.
    let takeover = ssa != Some("Merge") && has_taken_over_managers(&result, options);
    let known = match &read {
        Some(_) => None,
        None if takeover => None,
        None => observed.unchanged(&result),
    };
    if read.is_none() && known.is_none() {
        let existing = api
            .get_opt(&desired.id.name)
            .await
            .map_err(get_failed)?
            .map(|o| serde_json::to_value(o).unwrap_or_default());
        if let Some(existing) = &existing {
            observed.record(existing);
        }
        read = Some(existing);
    }
    let mut plan = Plan::of(Action::Configured, manifest);
    if takeover && let Some(Some(existing)) = &read {
        plan.takeover = take_over_fields(existing, options, &desired.object);
    }
    let unchanged = match (known, &read) {
        (Some(unchanged), _) => unchanged,
        (None, Some(Some(existing))) => comparable(existing) == comparable(&result),
        (None, _) => false,
    };
    if unchanged {
        // The live object is current (the dry-run returns it with its status).
        plan.action = Action::Unchanged;
        plan.live = Some(result);
    }
    Ok(plan)
}

/// Writes one planned object: its managed fields taken over, recreated or applied.
async fn write(
    client: &Client,
    desired: &Desired,
    plan: Plan,
    manager: &str,
    observed: &Observed,
) -> Result<(Action, Option<Value>), ApplyError> {
    let api = api(
        client,
        &desired.resource,
        desired.namespaced,
        &desired.id.namespace,
    );
    if plan.action != Action::Skipped
        && let Some(fields) = plan.takeover.clone()
    {
        patch_managed_fields(&api, &desired.id.name, fields)
            .await
            .map_err(|e| refused(desired, "field manager cleanup", &e))?;
    }
    if matches!(plan.action, Action::Created | Action::Configured) {
        if plan.recreate {
            let deleted = api
                .delete(&desired.id.name, &DeleteParams::foreground())
                .await
                .map_err(|e| refused(desired, "delete (to recreate)", &e))?;
            let uid = deleted.either(|o| o.metadata.uid, |s| s.details.map(|d| d.uid));
            let uid = uid.unwrap_or_default();
            // Still terminating after the timeout: the apply says what is wrong.
            let gone = move |o: Option<&DynamicObject>| is_deleted(&uid).matches_object(o);
            crate::wait::until(api.clone(), &desired.id.name, gone, RECREATE_TIMEOUT).await;
        }
        let params = PatchParams::apply(manager).force();
        let result = api
            .patch(&desired.id.name, &params, &Patch::Apply(&plan.manifest))
            .await
            .map_err(|e| refused(desired, "apply", &e))?;
        let result = serde_json::to_value(result).unwrap_or_default();
        observed.record(&result);
        // The object as the apply left it: its first health sample, read by nobody again (a
        // ServiceAccount or a Service is ready as written; a Deployment waits for its status).
        return Ok((plan.action, Some(result)));
    }
    Ok((plan.action, plan.live))
}

/// Replaces the managed fields of object `name` (a takeover, a migration); returns the object.
async fn patch_managed_fields(
    api: &kube::Api<DynamicObject>,
    name: &str,
    fields: Value,
) -> Result<Value, kube::Error> {
    let patch = serde_json::json!({"metadata": {"managedFields": fields}});
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(serde_json::to_value(patched).unwrap_or_default())
}

fn refused(desired: &Desired, what: &str, error: &kube::Error) -> ApplyError {
    ApplyError::new(
        ApplyFailure::of(error),
        format!("{} {what} failed: {}", desired.id.display(), api_message(error)),
    )
}

/// The apiserver's message for an API error (what users see in `kubectl`), else the error.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

/// What applying an object would change: the live object (None when it would be created) and
/// the object as a server-side dry-run apply of `manifest` says it would become.
pub struct Preview {
    pub desired: Desired,
    pub live: Option<Value>,
    pub after: Value,
}

/// Previews the apply of one object with field manager `manager` (forced, as the controllers
/// apply): a read and a server-side dry-run, nothing written. `driftless diff` is built on it.
pub async fn preview(
    client: &Client,
    discovery: &Discovery,
    manifest: Value,
    manager: &str,
) -> Result<Preview, ApplyError> {
    let desired = discovery
        .describe(client, manifest)
        .await
        .map_err(|m| ApplyError::new(ApplyFailure::Missing, m))?;
    let api = api(
        client,
        &desired.resource,
        desired.namespaced,
        &desired.id.namespace,
    );
    let live = api
        .get_opt(&desired.id.name)
        .await
        .map_err(|e| refused(&desired, "get", &e))?;
    let mut dry = PatchParams::apply(manager).force();
    dry.dry_run = true;
    let after = api
        .patch(&desired.id.name, &dry, &Patch::Apply(&desired.object))
        .await
        .map_err(|e| refused(&desired, "dry-run", &e))?;
    Ok(Preview {
        live: live.map(|o| serde_json::to_value(o).unwrap_or_default()),
        after: serde_json::to_value(after).unwrap_or_default(),
        desired,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `--custom-apply-stage-kinds` as Flux parses it, and the stage it puts its kinds in:
    /// after cluster and class definitions, before everything else.
    #[test]
    fn custom_stage_kinds_get_a_stage_of_their_own() {
        let custom = GroupKind::parse_list("rbac.authorization.k8s.io/Role, ConfigMap,").unwrap();
        assert_eq!(
            custom,
            [
                GroupKind {
                    group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into()
                },
                GroupKind {
                    group: String::new(),
                    kind: "ConfigMap".into()
                },
            ]
        );
        assert!(GroupKind::parse_list("a/b/c").is_err());
        let object =
            |api_version: &str, kind: &str| serde_json::json!({"apiVersion": api_version, "kind": kind});
        let stages: Vec<usize> = [
            object("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            object("storage.k8s.io/v1", "StorageClass"),
            object("rbac.authorization.k8s.io/v1", "Role"),
            object("v1", "ConfigMap"),
            object("example.com/v1", "ConfigMap"),
            object("apps/v1", "Deployment"),
        ]
        .iter()
        .map(|o| stage_of(o, &custom))
        .collect();
        assert_eq!(stages, [0, 1, 2, 2, 3, 3]);
        assert_eq!(stage_of(&object("v1", "ConfigMap"), &[]), 3);
    }
}
