//! The inventory of applied objects (Flux's `<namespace>_<name>_<group>_<kind>` entries) and the
//! pruning of what left it.

use std::collections::BTreeMap;

use driftless_api::meta::{ResourceInventory, ResourceRef};
use kube::Client;
use kube::api::{DeleteParams, PropagationPolicy};

use crate::discovery::{Discovery, api};
use crate::object::ObjectId;
use crate::owner::Owner;
use crate::ssa::api_message;

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

/// What pruning did: the entries whose deletion failed (they stay in the inventory), the change
/// lines of what was deleted (`Kind/namespace/name deleted`), and why deletions failed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub kept: Vec<ResourceRef>,
    pub deleted: Vec<String>,
    pub errors: Vec<String>,
}

/// Deletes the objects that left the inventory. Only objects carrying the owner's labels are
/// deleted; `<group>/prune: disabled` ones are left alone: nothing the inventory does not own
/// is ever deleted.
pub async fn prune(client: &Client, discovery: &Discovery, stale: &[ResourceRef], owner: &Owner) -> Pruned {
    let Pruned {
        mut kept,
        mut deleted,
        mut errors,
    } = Pruned::default();
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
        let owned = owner.owns(&labels);
        // Flux honours `<group>/prune: disabled` as an annotation or a label.
        let prune_key = owner.key("prune");
        let prune_disabled = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&prune_key))
            .or_else(|| labels.get(&prune_key))
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
    Pruned {
        kept,
        deleted,
        errors,
    }
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
