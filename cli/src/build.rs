//! `build kustomization` and `diff kustomization`: the controller's build (generated
//! kustomization, the spec's overlay, native kustomize, postBuild substitution) run on a local
//! checkout, and a server-side dry-run of the result against the cluster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use driftless_api::kustomize::KustomizationSpec;
use driftless_apply::{self as apply, Discovery, ObjectId, Owner};
use driftless_build::{generator, substitute};
use serde_json::Value;

use crate::args::BuildKustomization;
use crate::cluster::Cluster;
use crate::kinds::{self, text};

/// The root of the checkout `path` lives in (its Git work tree), or `path` itself.
fn checkout_root(path: &Path) -> PathBuf {
    let mut dir = Some(path);
    while let Some(d) = dir {
        if d.join(".git").exists() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    path.to_path_buf()
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// The objects the controller would apply for `spec` built from the local `path`: in a copy of
/// the checkout (the generated kustomization must not touch the user's files), jailed to it,
/// with postBuild variables from the cluster when there is one.
async fn build_objects(
    cluster: Option<&Cluster>,
    name: &str,
    namespace: &str,
    spec: &KustomizationSpec,
    path: &Path,
) -> anyhow::Result<Vec<Value>> {
    let path = path
        .canonicalize()
        .with_context(|| format!("invalid --path {}", path.display()))?;
    if !path.is_dir() {
        bail!("--path {} is not a directory", path.display());
    }
    let root = checkout_root(&path);
    let relative = path.strip_prefix(&root).unwrap_or(Path::new("")).to_path_buf();
    let work = tempfile::tempdir()?;
    let post_build = spec.post_build.clone();
    let common_metadata = spec.common_metadata.clone();
    let spec = spec.clone();
    let mut objects = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Value>> {
        copy_tree(&root, work.path())?;
        let dir = work.path().join(&relative);
        generator::prepare(&dir, &spec)?;
        driftless_build::kustomize(&dir, work.path(), true)
            .map_err(|e| anyhow!("kustomize build failed: {e}"))
    })
    .await??;
    if let Some(post_build) = &post_build {
        let vars = match cluster {
            Some(cluster) => substitute::variables(&cluster.client, namespace, post_build).await?,
            None => post_build.substitute.clone().unwrap_or_default(),
        };
        substitute::substitute_objects(&mut objects, &vars, post_build, true)?;
    }
    if let Some(metadata) = &common_metadata {
        driftless_build::set_common_metadata(&mut objects, metadata);
    }
    let owner = Owner::new(driftless_api::kustomize::GROUP, name, namespace);
    for object in objects.iter_mut() {
        owner.label(object);
    }
    Ok(objects)
}

/// The Kustomization's spec from the cluster.
async fn spec_of(cluster: &Cluster, name: &str) -> anyhow::Result<(KustomizationSpec, Value)> {
    let object = cluster
        .get(&kinds::KUSTOMIZATION, &cluster.namespace, name)
        .await?;
    let spec = serde_json::from_value(object["spec"].clone()).context("reading the Kustomization's spec")?;
    Ok((spec, object))
}

pub async fn build(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &BuildKustomization,
) -> anyhow::Result<()> {
    let spec = match (cluster, args.dry_run) {
        (Some(cluster), false) => spec_of(cluster, &args.name).await?.0,
        _ => serde_json::from_value(
            serde_json::json!({"interval": "10m", "prune": false, "sourceRef": {"kind": "GitRepository", "name": "local"}}),
        )?,
    };
    let cluster = cluster.filter(|_| !args.dry_run);
    let objects = build_objects(cluster, &args.name, namespace, &spec, &args.path).await?;
    print!("{}", driftless_kustomize::to_yaml_stream(&objects));
    Ok(())
}

/// Secret values masked, so a diff never prints them.
fn masked(object: &Value) -> Value {
    let mut object = apply::comparable(object);
    if object["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = object.get_mut(field) {
                for value in map.values_mut() {
                    *value = Value::String("*** (masked)".into());
                }
            }
        }
    }
    object
}

/// `diff kustomization`: prints what would change; Ok(true) when something would.
pub async fn diff(cluster: &Cluster, args: &BuildKustomization) -> anyhow::Result<bool> {
    let (spec, ks) = spec_of(cluster, &args.name).await?;
    let namespace = cluster.namespace.clone();
    let objects = build_objects(Some(cluster), &args.name, &namespace, &spec, &args.path).await?;
    let discovery = Discovery::default();
    let mut changed = false;
    let mut built = BTreeSet::new();
    for object in objects {
        let preview = apply::preview(
            &cluster.client,
            &discovery,
            object,
            driftless_api::kustomize::FIELD_MANAGER,
        )
        .await?;
        let id = &preview.desired.id;
        built.insert(id.inventory_id());
        let Some(live) = preview.live else {
            println!("► {} created", id.display());
            changed = true;
            continue;
        };
        let (before, after) = (masked(&live), masked(&preview.after));
        if before == after {
            continue;
        }
        changed = true;
        println!("► {} drifted", id.display());
        let (before, after) = (
            driftless_kustomize::yaml::to_yaml(&before),
            driftless_kustomize::yaml::to_yaml(&after),
        );
        let diff = similar::TextDiff::from_lines(&before, &after);
        for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
            print!("{hunk}");
        }
        println!();
    }
    if spec.prune {
        for entry in ks
            .pointer("/status/inventory/entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = text(entry, "/id");
            if !built.contains(id)
                && let Some(id) = ObjectId::parse(id)
            {
                println!("► {} deleted", id.display());
                changed = true;
            }
        }
    }
    if !changed {
        eprintln!("✔ no changes");
    }
    Ok(changed)
}
