//! Steps 8 and 9: server-side apply in Flux's stages, the inventory, and pruning.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use driftless_api::kustomize::{IgnoreRule, annotations};
use driftless_api::meta::{ResourceInventory, ResourceRef};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};
use serde_json::Value;

/// An object's identity as Flux's inventory writes it: `<namespace>_<name>_<group>_<kind>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
    pub group: String,
    pub kind: String,
}

impl ObjectId {
    pub fn inventory_id(&self) -> String {
        format!("{}_{}_{}_{}", self.namespace, self.name, self.group, self.kind)
    }

    pub fn parse(id: &str) -> Option<ObjectId> {
        let mut parts = id.splitn(4, '_');
        Some(ObjectId {
            namespace: parts.next()?.to_string(),
            name: parts.next()?.to_string(),
            group: parts.next()?.to_string(),
            kind: parts.next()?.to_string(),
        })
    }

    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped, as Flux's messages say.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

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

pub fn field_text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `group/version` (or a core `version`) split into group and version.
pub fn group_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), api_version.to_string()),
    }
}

/// Group, version and kind.
type GvkKey = (String, String, String);

/// API resources by group/version/kind, discovered once and reused across reconciles.
#[derive(Default)]
pub struct Discovery {
    cache: Mutex<HashMap<GvkKey, (ApiResource, ApiCapabilities)>>,
}

impl Discovery {
    pub async fn resolve(
        &self,
        client: &Client,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), String> {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some((resource, caps)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok((resource, caps.scope == Scope::Namespaced));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| {
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            format!("no matches for kind \"{kind}\" in version \"{api_version}\": {e}")
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (resource.clone(), caps));
        }
        Ok((resource, namespaced))
    }

    /// Where `object` goes: its id, API resource and scope. A namespaced object without a
    /// namespace goes to `default`; a cluster-scoped one loses any namespace it names.
    pub async fn describe(&self, client: &Client, mut object: Value) -> Result<Desired, String> {
        let api_version = field_text(&object, "/apiVersion");
        let kind = field_text(&object, "/kind");
        let (group, version) = group_version(&api_version);
        let (resource, namespaced) = self.resolve(client, &group, &version, &kind).await?;
        let name = field_text(&object, "/metadata/name");
        let mut namespace = field_text(&object, "/metadata/namespace");
        if namespaced && namespace.is_empty() {
            namespace = "default".into();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("namespace".into(), Value::String(namespace.clone()));
            }
        }
        if !namespaced {
            namespace.clear();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("namespace");
            }
        }
        Ok(Desired {
            id: ObjectId {
                namespace,
                name,
                group,
                kind,
            },
            version,
            object,
            resource,
            namespaced,
        })
    }

    /// Waits (up to 30 s) for new or changed CRDs to be established, then forgets what was
    /// discovered so the next stage sees their kinds.
    pub async fn wait_established(&self, client: &Client, definitions: &[(ObjectId, String)]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (id, version) in definitions {
            let Ok((resource, _)) = self.resolve(client, &id.group, version, &id.kind).await else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            while Instant::now() < deadline {
                let established = api
                    .get_opt(&id.name)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| {
                        crate::health::compute(&serde_json::to_value(o).unwrap_or_default())
                            == crate::health::Health::Current
                    })
                    .unwrap_or(true);
                if established {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        self.invalidate();
    }

    /// Forgets what was learned, after CRDs changed.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}

/// The API of one kind, in `namespace` when the kind is namespaced.
pub fn api(client: &Client, resource: &ApiResource, namespaced: bool, namespace: &str) -> Api<DynamicObject> {
    if namespaced {
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    }
}

/// Stamps Flux's ownership labels (`kustomize.toolkit.fluxcd.io/name` and `…/namespace`).
pub fn label_owner(object: &mut Value, name: &str, namespace: &str) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(labels) = labels {
            labels.insert(annotations::OWNER_NAME.into(), Value::String(name.into()));
            labels.insert(
                annotations::OWNER_NAMESPACE.into(),
                Value::String(namespace.into()),
            );
        }
    }
}

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
    manager: &str,
    force: bool,
    ignore: &[IgnoreRule],
    observed: &Observed,
) -> Result<Applied, String> {
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
            desired.push(discovery.describe(client, object).await?);
        }
        let actions = apply_stage(client, &desired, manager, force, ignore, observed).await?;
        let mut changed_definitions = Vec::new();
        for (d, (action, live)) in desired.into_iter().zip(actions) {
            if matches!(action, Action::Created | Action::Configured) {
                changes.push(format!("{} {}", d.id.display(), action.verb()));
                if d.id.kind == "CustomResourceDefinition" {
                    changed_definitions.push((d.id.clone(), d.version.clone()));
                }
            }
            if let Some(object) = live {
                current.insert(d.id.clone(), object);
            }
            applied.push((d.id, d.version, d.object));
        }
        if index == 0 && !changed_definitions.is_empty() {
            // New or changed CRDs must be served before the next stage uses their kinds;
            // an unchanged stage costs no waiting and no rediscovery.
            discovery.wait_established(client, &changed_definitions).await;
        }
    }
    Ok((applied, changes, current))
}

/// Field managers whose fields the controller takes over, as Flux's cleanup does: objects
/// created with `kubectl apply` or `kubectl create` keep fields owned by those managers, and
/// fields removed from Git would then never be removed from the cluster.
fn taken_over(entry: &Value, manager: &str) -> bool {
    if entry
        .get("subresource")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return false;
    }
    let operation = entry.get("operation").and_then(Value::as_str).unwrap_or_default();
    match entry.get("manager").and_then(Value::as_str).unwrap_or_default() {
        "kubectl" => true,
        "before-first-apply" => operation == "Update",
        m => m == manager && operation == "Update",
    }
}

/// Union of two `fieldsV1` trees.
fn merge_fields(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (key, value) in from {
            merge_fields(
                into.entry(key.clone())
                    .or_insert_with(|| Value::Object(Default::default())),
                value,
            );
        }
    }
}

fn has_taken_over_managers(object: &Value, manager: &str) -> bool {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| taken_over(e, manager)))
}

/// The object's managed fields with the taken-over managers' fields moved to `manager`'s Apply
/// entry, or None when there is nothing to take over.
fn take_over_fields(live: &Value, manager: &str, desired: &Value) -> Option<Value> {
    if !has_taken_over_managers(live, manager) {
        return None;
    }
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let api_version = desired.get("apiVersion").cloned().unwrap_or(Value::Null);
    let mut merged = Value::Object(Default::default());
    let mut kept = Vec::new();
    for entry in entries {
        let own_apply = entry.get("manager").and_then(Value::as_str) == Some(manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply");
        if taken_over(entry, manager) || own_apply {
            merge_fields(&mut merged, entry.get("fieldsV1").unwrap_or(&Value::Null));
        } else {
            kept.push(entry.clone());
        }
    }
    kept.push(serde_json::json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "fieldsType": "FieldsV1",
        "fieldsV1": merged,
    }));
    Some(Value::Array(kept))
}

/// The JSON pointers the drift-ignore rules that select `object` exclude.
fn ignored_paths(rules: &[IgnoreRule], object: &Value) -> Result<Vec<String>, String> {
    let mut paths = Vec::new();
    for rule in rules {
        let selected = match &rule.target {
            None => true,
            Some(t) => {
                let selector = driftless_kustomize::kustomization::Selector {
                    group: t.group.clone().unwrap_or_default(),
                    version: t.version.clone().unwrap_or_default(),
                    kind: t.kind.clone().unwrap_or_default(),
                    name: t.name.clone().unwrap_or_default(),
                    namespace: t.namespace.clone().unwrap_or_default(),
                    label_selector: t.label_selector.clone().unwrap_or_default(),
                    annotation_selector: t.annotation_selector.clone().unwrap_or_default(),
                };
                driftless_kustomize::selects(&selector, object).map_err(|e| format!("ignore rule: {e}"))?
            }
        };
        if selected {
            paths.extend(rule.paths.iter().cloned());
        }
    }
    Ok(paths)
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Sets the field a JSON pointer names, when its parent exists.
fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let Some(parent) = object.pointer_mut(&pointer[..pointer.rfind('/').unwrap_or(0)]) else {
        return;
    };
    let tokens = pointer_tokens(pointer);
    let Some(last) = tokens.last() else { return };
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// Removes the field a JSON pointer (RFC 6901) names, if present.
fn remove_pointer(object: &mut Value, pointer: &str) {
    let tokens = pointer_tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut at = object;
    for token in parents {
        let next = match at {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        let Some(next) = next else { return };
        at = next;
    }
    match at {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Fields the apiserver owns; two versions of an object that differ only here are the same.
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// What the controller last saw of the objects it applies: per object (by uid), the
/// resourceVersion and a digest of its comparable form. When the dry-run of an apply reports
/// the resourceVersion seen last and the same digest, the object is unchanged without reading
/// it again: a no-op reconcile costs one request per object (Flux reads each object too).
#[derive(Default)]
pub struct Observed {
    seen: Mutex<HashMap<u64, (u64, u64)>>,
}

/// Entries kept at most; beyond this the map starts over (objects deleted by others leave
/// entries behind, and a miss only costs one read).
const OBSERVED_LIMIT: usize = 200_000;

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The uid and resourceVersion of an object that exists (a dry-run create has no
/// resourceVersion).
fn identity(object: &Value) -> Option<(u64, u64)> {
    let uid = object.pointer("/metadata/uid")?.as_str()?;
    let version = object.pointer("/metadata/resourceVersion")?.as_str()?;
    (!version.is_empty()).then(|| (digest(uid.as_bytes()), digest(version.as_bytes())))
}

fn comparable_digest(object: &Value) -> u64 {
    digest(&serde_json::to_vec(&comparable(object)).unwrap_or_default())
}

impl Observed {
    /// Remembers a live object as read or written.
    pub fn record(&self, object: &Value) {
        let Some((uid, version)) = identity(object) else {
            return;
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= OBSERVED_LIMIT {
                seen.clear();
            }
            seen.insert(uid, (version, comparable_digest(object)));
        }
    }

    /// Whether the dry-run result of an apply equals the live object, when the live object is
    /// the one seen last; None when it is not known.
    fn unchanged(&self, dry_run: &Value) -> Option<bool> {
        let (uid, version) = identity(dry_run)?;
        let (seen_version, seen_digest) = *self.seen.lock().ok()?.get(&uid)?;
        (seen_version == version).then(|| seen_digest == comparable_digest(dry_run))
    }
}

/// Applies one stage: every object is validated by a server-side dry-run first, and nothing is
/// written when any of them fails. Returns what happened to each object, with the live state of
/// the objects found unchanged.
pub async fn apply_stage(
    client: &Client,
    objects: &[Desired],
    manager: &str,
    force_all: bool,
    ignore: &[IgnoreRule],
    observed: &Observed,
) -> Result<Vec<(Action, Option<Value>)>, String> {
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
        let ssa = annotation(&desired.object, annotations::SSA);
        if annotation(&desired.object, annotations::RECONCILE) == Some("disabled") || ssa == Some("Ignore") {
            plans.push((Action::Skipped, false));
            continue;
        }
        let ignored = ignored_paths(ignore, &desired.object)?;
        // Only objects whose manifest depends on the live state are read before the dry-run;
        // the others learn whether they exist from it.
        let mut read = None;
        if ssa == Some("IfNotPresent") || !ignored.is_empty() {
            match api.get_opt(&desired.id.name).await {
                Ok(existing) => read = Some(existing.map(|o| serde_json::to_value(o).unwrap_or_default())),
                Err(e) => {
                    errors.push(format!("{} get failed: {e}", desired.id.display()));
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
        let force = force_all || annotation(&desired.object, annotations::FORCE) == Some("enabled");
        let result = match api.patch(&desired.id.name, &dry, &Patch::Apply(&*manifest)).await {
            Ok(result) => serde_json::to_value(result).unwrap_or_default(),
            Err(kube::Error::Api(e)) if force && e.code == 422 && e.message.contains("immutable") => {
                plans.push((Action::Created, true));
                continue;
            }
            Err(e) => {
                errors.push(format!(
                    "{} dry-run failed: {}",
                    desired.id.display(),
                    api_message(&e)
                ));
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
                    errors.push(format!("{} get failed: {e}", desired.id.display()));
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
    if !errors.is_empty() {
        return Err(errors.join("\n"));
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
                .map_err(|e| {
                    format!(
                        "{} field manager cleanup failed: {}",
                        desired.id.display(),
                        api_message(&e)
                    )
                })?;
        }
        if matches!(action, Action::Created | Action::Configured) {
            let api = api(
                client,
                &desired.resource,
                desired.namespaced,
                &desired.id.namespace,
            );
            if recreate {
                api.delete(&desired.id.name, &DeleteParams::foreground())
                    .await
                    .map_err(|e| {
                        format!(
                            "{} delete (to recreate) failed: {}",
                            desired.id.display(),
                            api_message(&e)
                        )
                    })?;
                wait_gone(&api, &desired.id.name).await;
            }
            let result = api
                .patch(&desired.id.name, &params, &Patch::Apply(manifest))
                .await
                .map_err(|e| format!("{} apply failed: {}", desired.id.display(), api_message(&e)))?;
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

async fn wait_gone(api: &Api<DynamicObject>, name: &str) {
    for _ in 0..60 {
        match api.get_opt(name).await {
            Ok(None) | Err(_) => return,
            Ok(Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

/// The inventory of what was applied, sorted by id as Flux keeps it.
pub fn inventory(entries: impl IntoIterator<Item = (ObjectId, String)>) -> ResourceInventory {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (id, version) in entries {
        map.insert(id.inventory_id(), version);
    }
    ResourceInventory {
        entries: map.into_iter().map(|(id, v)| ResourceRef { id, v }).collect(),
    }
}

/// Deletes the objects that left the inventory. Only objects carrying this Kustomization's
/// ownership labels are deleted; `prune: disabled` ones are left alone. Returns the entries whose
/// deletion failed (they stay in the inventory) and what was deleted.
pub async fn prune(
    client: &Client,
    discovery: &Discovery,
    stale: &[ResourceRef],
    owner: (&str, &str),
) -> (Vec<ResourceRef>, Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for entry in stale {
        let Some(id) = ObjectId::parse(&entry.id) else {
            continue;
        };
        let (resource, namespaced) = match discovery.resolve(client, &id.group, &entry.v, &id.kind).await {
            Ok(found) => found,
            // The kind is gone from the cluster, and so are its objects.
            Err(_) => continue,
        };
        let api = api(client, &resource, namespaced, &id.namespace);
        let object = match api.get_opt(&id.name).await {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(e) => {
                errors.push(format!("{} get failed: {e}", id.display()));
                kept.push(entry.clone());
                continue;
            }
        };
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let owned = labels.get(annotations::OWNER_NAME).map(String::as_str) == Some(owner.0)
            && labels.get(annotations::OWNER_NAMESPACE).map(String::as_str) == Some(owner.1);
        let prune_disabled = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::PRUNE))
            .map(String::as_str)
            == Some("disabled");
        if !owned || prune_disabled {
            continue;
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&id.name, &params).await {
            Ok(_) => deleted.push(format!("{} deleted", id.display())),
            Err(e) => {
                errors.push(format!("{} delete failed: {}", id.display(), api_message(&e)));
                kept.push(entry.clone());
            }
        }
    }
    (kept, deleted, errors)
}

/// Stale entries: in the old inventory and not in the new one.
pub fn stale_entries(old: Option<&ResourceInventory>, new: &ResourceInventory) -> Vec<ResourceRef> {
    let current: std::collections::HashSet<&str> = new.entries.iter().map(|e| e.id.as_str()).collect();
    old.map(|o| {
        o.entries
            .iter()
            .filter(|e| !current.contains(e.id.as_str()))
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubectl_managers_are_taken_over() {
        let live = serde_json::json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {}}},
        ]}});
        let desired = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let fields = take_over_fields(&live, "kustomize-controller", &desired).unwrap();
        let fields = fields.as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0]["manager"], "kube-controller-manager");
        assert_eq!(fields[1]["manager"], "kustomize-controller");
        assert_eq!(
            fields[1]["fieldsV1"],
            serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        let clean = serde_json::json!({"metadata": {"managedFields": [fields[1].clone()]}});
        assert!(take_over_fields(&clean, "kustomize-controller", &desired).is_none());
    }

    #[test]
    fn ignore_rules_remove_selected_fields() {
        let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"a/b": "x"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        let rules: Vec<IgnoreRule> = serde_json::from_value(serde_json::json!([
            {"paths": ["/spec/replicas", "/metadata/annotations/a~1b"], "target": {"kind": "Deployment", "name": "w.*"}},
            {"paths": ["/spec/template"], "target": {"kind": "StatefulSet"}},
        ]))
        .unwrap();
        let paths = ignored_paths(&rules, &object).unwrap();
        assert_eq!(paths, ["/spec/replicas", "/metadata/annotations/a~1b"]);
        let mut manifest = object.clone();
        for p in &paths {
            remove_pointer(&mut manifest, p);
        }
        assert!(manifest["spec"].get("replicas").is_none());
        assert_eq!(manifest["metadata"]["annotations"], serde_json::json!({}));
        remove_pointer(&mut manifest, "/spec/template/spec/containers/0");
        assert_eq!(
            manifest["spec"]["template"]["spec"]["containers"],
            serde_json::json!([])
        );
        remove_pointer(&mut manifest, "/nope/deeper");
        set_pointer(&mut manifest, "/spec/replicas", serde_json::json!(5));
        set_pointer(
            &mut manifest,
            "/metadata/annotations/a~1b",
            serde_json::json!("y"),
        );
        set_pointer(&mut manifest, "/nope/deeper", serde_json::json!(1));
        assert_eq!(manifest["spec"]["replicas"], 5);
        assert_eq!(manifest["metadata"]["annotations"]["a/b"], "y");
        assert!(manifest.get("nope").is_none());
    }
}
