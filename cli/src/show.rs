//! Read-only commands: `get`, `export`, `tree`, `events`, `version`.

use std::collections::BTreeSet;

use anyhow::bail;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use serde_json::{Map, Value};

use crate::args::Named;
use crate::cluster::Cluster;
use crate::kinds::{self, KindInfo, text};
use crate::manifests;

/// Rows aligned in columns, three spaces apart.
pub fn print_table(header: &[&str], rows: &[Vec<String>], no_header: bool) {
    let mut all: Vec<Vec<String>> = Vec::new();
    if !no_header {
        all.push(header.iter().map(|h| h.to_string()).collect());
    }
    all.extend(rows.iter().cloned());
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            all.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == columns {
                line += cell;
            } else {
                line += &format!("{cell:<width$}   ", width = widths[i]);
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `status-selector` such as `ready=false`: the condition type and the wanted status.
fn status_matches(object: &Value, selector: Option<&str>) -> anyhow::Result<bool> {
    let Some(selector) = selector else { return Ok(true) };
    let Some((type_, status)) = selector.split_once('=') else {
        bail!("--status-selector must be <condition>=<status>, e.g. ready=false");
    };
    Ok(object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            text(c, "/type").eq_ignore_ascii_case(type_) && text(c, "/status").eq_ignore_ascii_case(status)
        }))
}

/// The row `get` prints for an object.
fn row(kind: &KindInfo, object: &Value, prefix_kind: bool, all_namespaces: bool) -> Vec<String> {
    let mut row = Vec::new();
    if all_namespaces {
        row.push(text(object, "/metadata/namespace").to_string());
    }
    let name = text(object, "/metadata/name");
    row.push(if prefix_kind {
        format!("{}/{name}", kind.kind.to_lowercase())
    } else {
        name.to_string()
    });
    if let Some((_, pointer)) = kind.column {
        row.push(kinds::short_revision(text(object, pointer)));
    }
    if kind.suspendable {
        let suspended = object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        row.push(if suspended { "True" } else { "False" }.into());
    }
    if kind.has_status {
        match kinds::condition(object, "Ready") {
            Some(ready) => {
                row.push(text(ready, "/status").to_string());
                let message = text(ready, "/message").lines().next().unwrap_or_default();
                row.push(kinds::short_revision(message));
            }
            None => {
                row.push("Unknown".into());
                row.push("waiting to be reconciled".into());
            }
        }
    } else {
        row.push("True".into());
        row.push("Valid configuration".into());
    }
    row
}

fn header(kind: &KindInfo, all_namespaces: bool) -> Vec<&'static str> {
    let mut header = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    if let Some((title, _)) = kind.column {
        header.push(title);
    }
    if kind.suspendable {
        header.push("SUSPENDED");
    }
    header.extend(["READY", "MESSAGE"]);
    header
}

/// `get <kind> [name]`; several kinds (`get all`) print one table per kind that has objects,
/// with the kind in the name column.
pub async fn get(
    cluster: &Cluster,
    kinds: &[&'static KindInfo],
    named: &Named,
    all_namespaces: bool,
    status_selector: Option<&str>,
    no_header: bool,
) -> anyhow::Result<()> {
    let namespace = (!all_namespaces).then_some(cluster.namespace.as_str());
    let several = kinds.len() > 1;
    let mut printed = false;
    for kind in kinds {
        let objects = match &named.name {
            Some(name) => vec![cluster.get(kind, &cluster.namespace, name).await?],
            None => match cluster.list(kind, namespace).await {
                Ok(objects) => objects,
                // `get all` skips kinds whose CRD is not installed (extra components).
                Err(_) if several => continue,
                Err(e) => return Err(e),
            },
        };
        let mut rows = Vec::new();
        for object in &objects {
            if status_matches(object, status_selector)? {
                rows.push(row(kind, object, several, all_namespaces));
            }
        }
        if rows.is_empty() {
            continue;
        }
        if printed {
            println!();
        }
        print_table(&header(kind, all_namespaces), &rows, no_header);
        printed = true;
    }
    if !printed {
        let scope = namespace.map_or("any namespace".to_string(), |n| format!("{n} namespace"));
        let what = if several {
            "objects".to_string()
        } else {
            kinds[0].plural.to_string()
        };
        eprintln!("✗ no {what} found in {scope}");
    }
    Ok(())
}

/// The object as it would be committed: apiVersion, kind, name, namespace, user labels and
/// annotations, spec.
pub fn clean(object: &Value) -> Value {
    let mut metadata = Map::new();
    for key in ["name", "namespace"] {
        if let Some(v) = object.pointer(&format!("/metadata/{key}")) {
            metadata.insert(key.into(), v.clone());
        }
    }
    for key in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = object.pointer(&format!("/metadata/{key}")) {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with("kubectl.kubernetes.io/")
                        && k.as_str() != "reconcile.fluxcd.io/requestedAt"
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                metadata.insert(key.into(), Value::Object(kept));
            }
        }
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), object["apiVersion"].clone());
    out.insert("kind".into(), object["kind"].clone());
    out.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = object.get("spec") {
        out.insert("spec".into(), spec.clone());
    }
    Value::Object(out)
}

pub fn print_yaml(objects: &[Value]) {
    for object in objects {
        print!("---\n{}", driftless_kustomize::yaml::to_yaml(object));
    }
}

/// `export <kind> [name | --all]`.
pub async fn export(cluster: &Cluster, kinds: &[&'static KindInfo], named: &Named) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    for kind in kinds {
        match &named.name {
            Some(name) => objects.push(cluster.get(kind, &cluster.namespace, name).await?),
            None if named.all || kinds.len() > 1 => {
                objects.extend(cluster.list(kind, Some(&cluster.namespace)).await?)
            }
            None => bail!("name an object or pass --all"),
        }
    }
    let cleaned: Vec<Value> = objects.iter().map(clean).collect();
    print_yaml(&cleaned);
    Ok(())
}

/// One inventory entry: `<namespace>_<name>_<group>_<kind>`.
fn parse_id(id: &str) -> Option<driftless_apply::ObjectId> {
    driftless_apply::ObjectId::parse(id)
}

/// `tree kustomization NAME`: the inventory, with the inventories of nested Kustomizations.
pub async fn tree(cluster: &Cluster, name: &str, compact: bool) -> anyhow::Result<()> {
    let root = cluster
        .get(&kinds::KUSTOMIZATION, &cluster.namespace, name)
        .await?;
    println!("Kustomization/{}/{name}", cluster.namespace);
    let mut seen = BTreeSet::new();
    seen.insert(format!("{}/{name}", cluster.namespace));
    print_inventory(cluster, &root, "", compact, &mut seen).await
}

async fn print_inventory(
    cluster: &Cluster,
    ks: &Value,
    indent: &str,
    compact: bool,
    seen: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let ids: Vec<_> = ks
        .pointer("/status/inventory/entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| parse_id(text(e, "/id")))
        .filter(|id| !compact || id.group.ends_with("toolkit.fluxcd.io"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        println!("{indent}{}{}", if last { "└── " } else { "├── " }, id.display());
        let nested = id.group == kinds::KUSTOMIZATION.group && id.kind == kinds::KUSTOMIZATION.kind;
        if nested && seen.insert(format!("{}/{}", id.namespace, id.name)) {
            let child_indent = format!("{indent}{}", if last { "    " } else { "│   " });
            if let Ok(child) = cluster.get(&kinds::KUSTOMIZATION, &id.namespace, &id.name).await {
                Box::pin(print_inventory(cluster, &child, &child_indent, compact, seen)).await?;
            }
        }
    }
    Ok(())
}

/// `events [--for Kind/name] [-A]`: Events about toolkit objects, oldest first.
pub async fn events(cluster: &Cluster, for_object: Option<&str>, all_namespaces: bool) -> anyhow::Result<()> {
    let api: Api<Event> = if all_namespaces {
        Api::all(cluster.client.clone())
    } else {
        Api::namespaced(cluster.client.clone(), &cluster.namespace)
    };
    let wanted = match for_object {
        Some(f) => {
            let Some((kind, name)) = f.split_once('/') else {
                bail!("--for must be Kind/name, e.g. Kustomization/podinfo");
            };
            let kind = KindInfo::by_kind(kind).map_or(kind.to_string(), |k| k.kind.to_string());
            Some((kind, name.to_string()))
        }
        None => None,
    };
    let mut events: Vec<Event> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            let involved = &e.involved_object;
            match &wanted {
                Some((kind, name)) => {
                    involved.kind.as_deref() == Some(kind) && involved.name.as_deref() == Some(name)
                }
                None => involved
                    .api_version
                    .as_deref()
                    .is_some_and(|v| v.contains("toolkit.fluxcd.io")),
            }
        })
        .collect();
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(when);
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut header = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let age = when(e)
                .map(|t| {
                    let secs = (now.as_second() - t.as_second()).max(0) as u64;
                    driftless_runtime::duration::format(std::time::Duration::from_secs(secs))
                })
                .unwrap_or_else(|| "unknown".into());
            let mut row = vec![
                age,
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                format!(
                    "{}/{}",
                    e.involved_object.kind.clone().unwrap_or_default(),
                    e.involved_object.name.clone().unwrap_or_default()
                ),
                e.message.clone().unwrap_or_default().replace('\n', " "),
            ];
            if all_namespaces {
                row.insert(0, e.metadata.namespace.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    if rows.is_empty() {
        eprintln!("✗ no events found");
        return Ok(());
    }
    print_table(&header, &rows, false);
    Ok(())
}

/// The toolkit Deployments in the namespace: (name, image).
pub async fn components(cluster: &Cluster) -> anyhow::Result<Vec<(String, String, Deployment)>> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let selector = format!("{}={}", manifests::PART_OF_LABEL, manifests::PART_OF_VALUE);
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|d| {
            let name = d.metadata.name.clone().unwrap_or_default();
            let image = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (name, image, d)
        })
        .collect())
}

/// `version`: the client, then (when a cluster is reachable) the installed components.
pub async fn version(global: &crate::cluster::GlobalArgs, client_only: bool) -> anyhow::Result<()> {
    println!("driftless: {}", manifests::version());
    if client_only {
        return Ok(());
    }
    let cluster = Cluster::connect(global).await?;
    println!("kubernetes: v{}", cluster.server_version().await?);
    for (name, image, _) in components(&cluster).await? {
        let tag = image.rsplit_once(':').map_or("unknown", |(_, t)| t);
        println!("{name}: {tag}");
    }
    Ok(())
}
