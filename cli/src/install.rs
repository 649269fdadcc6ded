//! `install`, `uninstall` and `check`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use driftless_apply::{self as apply, ApplyOptions, Discovery, Health, health};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::args::{InstallArgs, UninstallArgs};
use crate::cluster::{Cluster, GlobalArgs, failure, generate, step, success, waiting};
use crate::kinds;
use crate::manifests::{self, FIELD_MANAGER, InstallOptions};
use crate::show;

/// The lowest Kubernetes version the toolkit supports (Flux v2.9's constraint).
const MIN_KUBERNETES: (u64, u64) = (1, 33);

/// Applies objects in Flux's stages (CRDs and Namespaces first) and prints what changed.
pub async fn apply_objects(cluster: &Cluster, objects: Vec<Value>) -> anyhow::Result<()> {
    let discovery = Discovery::default();
    let options = ApplyOptions {
        manager: FIELD_MANAGER,
        group: driftless_api::kustomize::GROUP,
        force: false,
        ignore: &[],
        dry_run: false,
        ..Default::default()
    };
    let (applied, changes, _) = apply::apply_staged(
        &cluster.client,
        &discovery,
        objects,
        &options,
        &apply::Observed::default(),
    )
    .await
    .map_err(|e| anyhow!("apply failed: {e}"))?;
    for line in &changes {
        eprintln!("{line}");
    }
    let unchanged = applied.len() - changes.len();
    if unchanged > 0 {
        eprintln!("{unchanged} objects unchanged");
    }
    Ok(())
}

/// Waits for the toolkit Deployments in the namespace to be rolled out.
pub async fn wait_components(cluster: &Cluster, expected: &[&str]) -> anyhow::Result<()> {
    waiting("verifying installation");
    let deadline = Instant::now() + cluster.timeout;
    let mut pending: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    while !pending.is_empty() {
        let found = show::components(cluster).await?;
        pending.retain(|name| {
            let ready = found.iter().find(|(n, _, _)| n == name).is_some_and(|(_, _, d)| {
                health::compute(&serde_json::to_value(d).unwrap_or_default()) == Health::Current
            });
            if ready {
                success(format!("{name}: deployment ready"));
            }
            !ready
        });
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "timeout waiting for deployments to be ready: {}",
                pending.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

pub async fn install(global: &GlobalArgs, args: &InstallArgs) -> anyhow::Result<()> {
    let namespace = &global.namespace;
    if args.export {
        print!("{}", manifests::render(namespace, &args.options)?);
        return Ok(());
    }
    let cluster = Cluster::connect(global).await?;
    generate("generating manifests");
    let objects = manifests::objects(namespace, &args.options)?;
    success("manifests build completed");
    step(format!("installing components in {namespace} namespace"));
    apply_objects(&cluster, objects).await?;
    success("install completed");
    wait_components(&cluster, &args.options.selected()?).await?;
    success("install finished");
    Ok(())
}

/// Suspends every toolkit object and removes its finalizers, so deleting them deletes nothing
/// they manage, even while a controller still runs (a suspended Kustomization or HelmRelease is
/// never pruned on deletion, whatever finalizer a controller adds back).
async fn release_objects(cluster: &Cluster) -> anyhow::Result<usize> {
    let mut released = 0;
    // source-watcher's kind is optional: listing it fails quietly where its CRD is absent.
    for kind in kinds::ALL.iter().copied().chain([&kinds::ARTIFACT_GENERATOR]) {
        let Ok(objects) = cluster.list(kind, None).await else {
            continue;
        };
        for object in objects {
            let finalizers = object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let suspended = object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
            if !finalizers && (suspended || !kind.suspendable) {
                continue;
            }
            let mut patch = json!({"metadata": {"finalizers": null}});
            if kind.suspendable {
                patch["spec"] = json!({"suspend": true});
            }
            let (ns, name) = (
                kinds::text(&object, "/metadata/namespace"),
                kinds::text(&object, "/metadata/name"),
            );
            kind.api(&cluster.client, Some(ns))
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .ok();
            released += 1;
        }
    }
    Ok(released)
}

pub async fn uninstall(global: &GlobalArgs, args: &UninstallArgs) -> anyhow::Result<()> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace.clone();
    if !args.silent
        && !crate::cluster::confirm(
            "Are you sure you want to delete the toolkit and its custom resource definitions",
        )
    {
        bail!("aborted (use --silent to skip the confirmation)");
    }
    // The controllers go first so that nothing acts on the objects being removed.
    step("deleting components");
    let all = InstallOptions {
        components_extra: manifests::EXTRA_COMPONENTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..InstallOptions::default()
    };
    let discovery = Discovery::default();
    let objects = manifests::objects(&namespace, &all)?;
    for object in objects
        .iter()
        .filter(|o| !matches!(o["kind"].as_str(), Some("CustomResourceDefinition" | "Namespace")))
    {
        let desired = discovery
            .describe(&cluster.client, object.clone())
            .await
            .map_err(|e| anyhow!(e))?;
        let api = apply::api(
            &cluster.client,
            &desired.resource,
            desired.namespaced,
            &desired.id.namespace,
        );
        if api
            .delete(&desired.id.name, &DeleteParams::background())
            .await
            .is_ok()
        {
            success(format!("{} deleted", desired.id.display()));
        }
    }
    step("suspending toolkit objects and deleting their finalizers in all namespaces");
    let released = release_objects(&cluster).await?;
    success(format!("{released} objects released"));

    step("deleting toolkit custom resource definitions");
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let ours: Vec<String> = crds
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| {
            c.spec.group.ends_with(".toolkit.fluxcd.io")
                || c.spec.group == driftless_api::source_extensions::GROUP
        })
        .map(|c| c.name_any())
        .collect();
    for name in &ours {
        if crds.delete(name, &DeleteParams::background()).await.is_ok() {
            success(format!("CustomResourceDefinition/{name} deleted"));
        }
    }
    // A controller still running elsewhere could add a finalizer back between the strip and
    // the CRD deletion; keep stripping until the definitions are gone.
    let deadline = Instant::now() + cluster.timeout;
    loop {
        let left = crds
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| ours.contains(&c.name_any()))
            .count();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("timeout: {left} toolkit CRDs are still terminating");
        }
        release_objects(&cluster).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !args.keep_namespace {
        step(format!("deleting namespace {namespace}"));
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
        if namespaces
            .delete(&namespace, &DeleteParams::background())
            .await
            .is_ok()
        {
            success(format!("Namespace/{namespace} deleted"));
        }
    }
    success("uninstall finished");
    Ok(())
}

fn parse_version(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.trim_start_matches('v').split('.');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.trim_end_matches('+').parse().ok()?,
    ))
}

pub async fn check(global: &GlobalArgs, pre: bool) -> anyhow::Result<()> {
    step("checking prerequisites");
    let cluster = Cluster::connect(global).await?;
    let mut ok = true;
    let version = cluster.server_version().await?;
    match parse_version(&version) {
        Some(v) if v >= MIN_KUBERNETES => success(format!(
            "Kubernetes {version} >={}.{}.0-0",
            MIN_KUBERNETES.0, MIN_KUBERNETES.1
        )),
        _ => {
            failure(format!(
                "Kubernetes version {version} does not match >={}.{}.0-0",
                MIN_KUBERNETES.0, MIN_KUBERNETES.1
            ));
            ok = false;
        }
    }
    if pre {
        if !ok {
            bail!("prerequisites were not satisfied");
        }
        success("prerequisites checks passed");
        return Ok(());
    }
    step("checking version in cluster");
    step("checking controllers");
    let components = show::components(&cluster).await?;
    if components.is_empty() {
        failure(format!(
            "no toolkit controllers found in {} namespace",
            cluster.namespace
        ));
        ok = false;
    }
    for (name, image, deployment) in &components {
        if health::compute(&serde_json::to_value(deployment)?) == Health::Current {
            success(format!("{name}: deployment ready"));
            step(image);
        } else {
            failure(format!("{name}: deployment not ready"));
            ok = false;
        }
    }
    step("checking crds");
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let mut found = 0;
    for crd in crds.list(&ListParams::default()).await?.items {
        if !crd.spec.group.ends_with(".toolkit.fluxcd.io") {
            continue;
        }
        found += 1;
        let stored = crd
            .status
            .as_ref()
            .and_then(|s| s.stored_versions.clone())
            .unwrap_or_default()
            .join(",");
        success(format!("{}/{stored}", crd.name_any()));
    }
    if found == 0 {
        failure("no toolkit CRDs found (run `driftless install`)");
        ok = false;
    }
    if !ok {
        bail!("check failed");
    }
    success("all checks passed");
    Ok(())
}
