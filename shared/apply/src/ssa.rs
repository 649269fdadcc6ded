//! Server-side apply in Flux's stages, each validated by a dry-run before anything is written.

use std::collections::HashMap;

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
use crate::takeover::{has_taken_over_managers, take_over_fields};

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
/// event, and the live state of the objects the apply found unchanged.
pub type Applied = (Vec<AppliedObject>, Vec<String>, HashMap<ObjectId, Value>);

/// An applied object: its id, version and manifest.
pub type AppliedObject = (ObjectId, String, Value);

/// Flux's apply stages: cluster definitions first, then classes, then everything else.
pub fn stage_of(kind: &str) -> usize {
    match kind {
        "CustomResourceDefinition" | "Namespace" | "ClusterRole" => 0,
        k if k.ends_with("Class") => 1,
        _ => 2,
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
    let mut stages: [Vec<Value>; 3] = Default::default();
    for object in objects {
        let kind = field_text(&object, "/kind");
        stages[stage_of(&kind)].push(object);
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
/// written when any of them fails. Returns what happened to each object, with the live state of
/// the objects found unchanged.
pub async fn apply_stage(
    client: &Client,
    objects: &[Desired],
    options: &ApplyOptions<'_>,
    observed: &Observed,
) -> Result<Vec<(Action, Option<Value>)>, ApplyError> {
    let manager = options.manager;
    let steer = |object: &'_ Value, what: &str| {
        annotation(object, &format!("{}/{what}", options.group)).map(str::to_string)
    };
    let params = PatchParams::apply(manager).force();
    let mut dry = params.clone();
    dry.dry_run = true;
    let mut plans = Vec::with_capacity(objects.len());
    // Managed fields to rewrite before applying (Flux's cleanup of kubectl's managers).
    let mut takeovers: Vec<(usize, Option<Value>)> = Vec::new();
    // What is applied: the manifest, minus drift-ignored fields on objects that exist.
    let mut manifests: Vec<Value> = objects.iter().map(|d| d.object.clone()).collect();
    let mut live: Vec<(usize, Value)> = Vec::new();
    let mut errors = Vec::new();
    for (desired, manifest) in objects.iter().zip(manifests.iter_mut()) {
        let api = api(
            client,
            &desired.resource,
            desired.namespaced,
            &desired.id.namespace,
        );
        let ssa = steer(&desired.object, "ssa");
        let ssa = ssa.as_deref();
        if steer(&desired.object, "reconcile").as_deref() == Some("disabled") || ssa == Some("Ignore") {
            plans.push((Action::Skipped, false));
            continue;
        }
        let ignored = ignored_paths(options.ignore, &desired.object)
            .map_err(|m| ApplyError::new(ApplyFailure::Invalid, m))?;
        // Only objects whose manifest depends on the live state are read before the dry-run;
        // the others learn whether they exist from it.
        let mut read = None;
        if ssa == Some("IfNotPresent") || !ignored.is_empty() {
            match api.get_opt(&desired.id.name).await {
                Ok(existing) => read = Some(existing.map(|o| serde_json::to_value(o).unwrap_or_default())),
                Err(e) => {
                    errors.push((
                        ApplyFailure::of(&e),
                        format!("{} get failed: {e}", desired.id.display()),
                    ));
                    plans.push((Action::Skipped, false));
                    continue;
                }
            }
        }
        if let Some(Some(existing)) = &read {
            if ssa == Some("IfNotPresent") {
                plans.push((Action::Skipped, false));
                continue;
            }
            // Ignored fields keep their live values (removing them would make server-side
            // apply delete the ones this manager owned).
            for pointer in &ignored {
                match existing.pointer(pointer) {
                    Some(value) => set_pointer(manifest, pointer, value.clone()),
                    None => remove_pointer(manifest, pointer),
                }
            }
        }
        let force = options.force || steer(&desired.object, "force").as_deref() == Some("enabled");
        let result = match api.patch(&desired.id.name, &dry, &Patch::Apply(&*manifest)).await {
            Ok(result) => serde_json::to_value(result).unwrap_or_default(),
            Err(kube::Error::Api(e)) if force && e.code == 422 && e.message.contains("immutable") => {
                plans.push((Action::Created, true));
                continue;
            }
            Err(e) => {
                let message = format!("{} dry-run failed: {}", desired.id.display(), api_message(&e));
                errors.push((ApplyFailure::of(&e), message));
                plans.push((Action::Skipped, false));
                continue;
            }
        };
        if identity(&result).is_none() {
            plans.push((Action::Created, false));
            continue;
        }
        // The dry-run result still lists the managers to take over; their fields are merged
        // with what this manager owned before the apply, so the live object is needed.
        let takeover = ssa != Some("Merge") && has_taken_over_managers(&result, manager);
        let known = match &read {
            Some(_) => None,
            None if takeover => None,
            None => observed.unchanged(&result),
        };
        if read.is_none() && known.is_none() {
            match api.get_opt(&desired.id.name).await {
                Ok(existing) => {
                    let existing = existing.map(|o| serde_json::to_value(o).unwrap_or_default());
                    if let Some(existing) = &existing {
                        observed.record(existing);
                    }
                    read = Some(existing);
                }
                Err(e) => {
                    errors.push((
                        ApplyFailure::of(&e),
                        format!("{} get failed: {e}", desired.id.display()),
                    ));
                    plans.push((Action::Skipped, false));
                    continue;
                }
            }
        }
        if takeover && let Some(Some(existing)) = &read {
            takeovers.push((plans.len(), take_over_fields(existing, manager, &desired.object)));
        }
        let unchanged = match (known, &read) {
            (Some(unchanged), _) => unchanged,
            (None, Some(Some(existing))) => comparable(existing) == comparable(&result),
            (None, _) => false,
        };
        if unchanged {
            // The live object is current (the dry-run returns it with its status): health can
            // be judged from it.
            live.push((plans.len(), result));
            plans.push((Action::Unchanged, false));
        } else {
            plans.push((Action::Configured, false));
        }
    }
    if let Some(failure) = errors.iter().map(|(f, _)| *f).min() {
        let lines: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
        return Err(ApplyError::new(failure, lines.join("\n")));
    }
    if options.dry_run {
        return Ok(plans.into_iter().map(|(action, _)| (action, None)).collect());
    }
    let mut actions = Vec::with_capacity(objects.len());
    for (index, ((desired, manifest), (action, recreate))) in
        objects.iter().zip(&manifests).zip(plans).enumerate()
    {
        if action != Action::Skipped
            && let Some((_, Some(fields))) = takeovers.iter().find(|(i, _)| *i == index)
        {
            let api = api(
                client,
                &desired.resource,
                desired.namespaced,
                &desired.id.namespace,
            );
            let patch = serde_json::json!({"metadata": {"managedFields": fields}});
            api.patch(&desired.id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| refused(desired, "field manager cleanup", &e))?;
        }
        if matches!(action, Action::Created | Action::Configured) {
            let api = api(
                client,
                &desired.resource,
                desired.namespaced,
                &desired.id.namespace,
            );
            if recreate {
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
            let result = api
                .patch(&desired.id.name, &params, &Patch::Apply(manifest))
                .await
                .map_err(|e| refused(desired, "apply", &e))?;
            observed.record(&serde_json::to_value(result).unwrap_or_default());
        }
        let current = live
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, object)| object.clone());
        actions.push((action, current));
    }
    Ok(actions)
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
