//! `create source git|oci`, `create kustomization`, `create secret git`: build the object,
//! print it with `--export`, else apply it and wait for it to be Ready.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::args::{
    CreateCommon, CreateHelmRelease, CreateKustomization, CreateSecretGit, CreateSecretOci, CreateSecretTls,
    CreateSourceBucket, CreateSourceChart, CreateSourceGit, CreateSourceHelm, CreateSourceOci,
};
use crate::cluster::{self, Cluster, generate, step, success, waiting};
use crate::kinds::{self, KindInfo};
use crate::show::print_yaml;
use crate::{git, manifests};

fn metadata(common: &CreateCommon, namespace: &str) -> anyhow::Result<Value> {
    let mut labels = Map::new();
    for label in &common.label {
        let Some((k, v)) = label.split_once('=') else {
            bail!("label {label:?} is not key=value");
        };
        labels.insert(k.into(), Value::String(v.into()));
    }
    let mut metadata = json!({"name": common.name, "namespace": namespace});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    Ok(metadata)
}

fn object(kind: &KindInfo, metadata: Value, spec: Value) -> Value {
    json!({
        "apiVersion": format!("{}/{}", kind.group, kind.version),
        "kind": kind.kind,
        "metadata": metadata,
        "spec": spec,
    })
}

/// Prints with `--export`; else applies, waits for Ready and reports the outcome.
async fn apply_or_export(
    cluster: Option<&Cluster>,
    kind: &KindInfo,
    object: Value,
    export: bool,
) -> anyhow::Result<()> {
    if export {
        print_yaml(&[object]);
        return Ok(());
    }
    let cluster = cluster.context("a cluster is needed unless --export is given")?;
    let name = kinds::text(&object, "/metadata/name").to_string();
    let namespace = kinds::text(&object, "/metadata/namespace").to_string();
    generate(format!("generating {} {name}", kind.kind));
    step(format!("applying {}", kind.kind));
    // A new reconcile request makes an update reconcile at once, and tells the wait below
    // when the controller has seen this version.
    let token = cluster::request_token();
    let mut object = object;
    object["metadata"]["annotations"] = json!({"reconcile.fluxcd.io/requestedAt": token});
    cluster.apply(kind, &object).await?;
    success(format!("{} created", kind.kind));
    waiting(format!("waiting for {} reconciliation", kind.kind));
    if !kind.has_status {
        // Alerts and Providers are static: nothing reconciles them into a status.
        return Ok(());
    }
    let ready = cluster.wait_ready(kind, &namespace, &name, Some(&token)).await?;
    success(format!("{} {name} is ready", kind.kind));
    let webhook = kinds::text(&ready, "/status/webhookPath");
    if !webhook.is_empty() {
        success(format!(
            "webhook path: {webhook} (served by the Service webhook-receiver: http://webhook-receiver.<namespace>{webhook})"
        ));
    }
    let revision = kinds::text(&ready, "/status/artifact/revision");
    // A HelmRelease records the chart version it released as its last attempted revision.
    let applied = match kinds::text(&ready, "/status/lastAppliedRevision") {
        "" => kinds::text(&ready, "/status/lastAttemptedRevision"),
        applied => applied,
    };
    if !revision.is_empty() {
        success(format!("fetched revision: {revision}"));
    } else if !applied.is_empty() {
        success(format!("applied revision {applied}"));
    }
    Ok(())
}

pub async fn source_git(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSourceGit,
) -> anyhow::Result<()> {
    let url = git::normalize_url(&args.url);
    if !["http://", "https://", "ssh://"]
        .iter()
        .any(|p| url.starts_with(p))
    {
        bail!("git URL scheme must be http, https or ssh: {url}");
    }
    let mut reference = Map::new();
    for (key, value) in [
        ("branch", &args.branch),
        ("tag", &args.tag),
        ("semver", &args.semver),
        ("name", &args.ref_name),
        ("commit", &args.commit),
    ] {
        if let Some(v) = value {
            reference.insert(key.into(), Value::String(v.clone()));
        }
    }
    if reference.is_empty() {
        bail!("a Git ref is required: --branch, --tag, --tag-semver, --ref-name or --commit");
    }
    let mut spec = json!({
        "url": url,
        "interval": driftless_runtime::duration::format(args.common.interval),
        "ref": reference,
    });
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    if !args.ignore_paths.is_empty() {
        spec["ignore"] = Value::String(args.ignore_paths.join("\n"));
    }
    let kind = &kinds::GIT_REPOSITORY;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

pub async fn source_oci(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSourceOci,
) -> anyhow::Result<()> {
    if !args.url.starts_with("oci://") {
        bail!("OCI URL must start with oci://: {}", args.url);
    }
    let reference = match (&args.tag, &args.semver, &args.digest) {
        (_, _, Some(d)) => json!({"digest": d}),
        (_, Some(s), None) => json!({"semver": s}),
        (Some(t), None, None) => json!({"tag": t}),
        (None, None, None) => bail!("a ref is required: --tag, --tag-semver or --digest"),
    };
    let mut spec = json!({
        "url": args.url,
        "interval": driftless_runtime::duration::format(args.common.interval),
        "ref": reference,
    });
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    if let Some(secret) = &args.cert_ref {
        spec["certSecretRef"] = json!({"name": secret});
    }
    if args.insecure {
        spec["insecure"] = Value::Bool(true);
    }
    let kind = &kinds::OCI_REPOSITORY;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `create source bucket`: the Bucket, and with `--access-key`/`--secret-key` its Secret named
/// after it, as Flux's CLI makes it.
pub async fn source_bucket(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSourceBucket,
) -> anyhow::Result<()> {
    let mut spec = json!({
        "bucketName": args.bucket_name,
        "endpoint": args.endpoint,
        "provider": args.provider,
        "interval": driftless_runtime::duration::format(args.common.interval),
    });
    if let Some(region) = &args.region {
        spec["region"] = json!(region);
    }
    if let Some(prefix) = &args.prefix {
        spec["prefix"] = json!(prefix);
    }
    if args.insecure {
        spec["insecure"] = Value::Bool(true);
    }
    if !args.ignore_paths.is_empty() {
        spec["ignore"] = json!(args.ignore_paths.join("\n"));
    }
    match (&args.access_key, &args.secret_key) {
        (Some(access), Some(secret_key)) => {
            let data = BTreeMap::from([
                ("accesskey".to_string(), access.clone()),
                ("secretkey".to_string(), secret_key.clone()),
            ]);
            let object = secret(&args.common.name, namespace, "Opaque", &data);
            if args.common.export {
                print_yaml(&[object]);
            } else {
                let cluster = cluster.context("a cluster is needed unless --export is given")?;
                apply_secret(cluster, &object).await?;
            }
            spec["secretRef"] = json!({"name": args.common.name});
        }
        (None, None) => {
            if let Some(secret) = &args.secret_ref {
                spec["secretRef"] = json!({"name": secret});
            }
        }
        _ => bail!("--access-key and --secret-key go together"),
    }
    let kind = &kinds::BUCKET;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

pub async fn source_helm(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSourceHelm,
) -> anyhow::Result<()> {
    let oci = args.url.starts_with("oci://");
    if !oci && !args.url.starts_with("http://") && !args.url.starts_with("https://") {
        bail!(
            "Helm repository URL must start with http://, https:// or oci://: {}",
            args.url
        );
    }
    let mut spec = json!({
        "url": args.url,
        "interval": driftless_runtime::duration::format(args.common.interval),
    });
    if oci {
        spec["type"] = json!("oci");
    }
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    if let Some(secret) = &args.cert_ref {
        spec["certSecretRef"] = json!({"name": secret});
    }
    if args.pass_credentials {
        spec["passCredentials"] = Value::Bool(true);
    }
    let kind = &kinds::HELM_REPOSITORY;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

pub async fn source_chart(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSourceChart,
) -> anyhow::Result<()> {
    let (kind, name) = args
        .source
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--source must be <Kind>/<name>: {}", args.source))?;
    if !["HelmRepository", "GitRepository", "Bucket"].contains(&kind) {
        bail!("--source kind {kind:?} is not supported: use HelmRepository, GitRepository or Bucket");
    }
    let mut spec = json!({
        "chart": args.chart,
        "interval": driftless_runtime::duration::format(args.common.interval),
        "sourceRef": {"kind": kind, "name": name},
    });
    if let Some(version) = &args.chart_version {
        spec["version"] = json!(version);
    }
    if let Some(strategy) = &args.reconcile_strategy {
        spec["reconcileStrategy"] = json!(strategy);
    }
    if !args.values_files.is_empty() {
        spec["valuesFiles"] = json!(args.values_files);
    }
    if let Some(secret) = &args.verify_secret_ref {
        spec["verify"] = json!({"provider": "cosign", "secretRef": {"name": secret}});
    }
    let kind = &kinds::HELM_CHART;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `[Kind/]name[.namespace]` → sourceRef.
fn source_ref(source: &str) -> anyhow::Result<Value> {
    let (kind, rest) = match source.split_once('/') {
        Some((kind, rest)) => {
            let Some(info) = KindInfo::by_kind(kind).filter(|k| kinds::SOURCES.contains(k)) else {
                bail!(
                    "unknown source kind {kind:?}: use GitRepository, OCIRepository, Bucket or ExternalArtifact"
                );
            };
            (info.kind, rest)
        }
        None => ("GitRepository", source),
    };
    let mut reference = json!({"kind": kind});
    match rest.split_once('.') {
        Some((name, namespace)) => {
            reference["name"] = json!(name);
            reference["namespace"] = json!(namespace);
        }
        None => reference["name"] = json!(rest),
    }
    Ok(reference)
}

pub async fn kustomization(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateKustomization,
) -> anyhow::Result<()> {
    let mut spec = json!({
        "interval": driftless_runtime::duration::format(args.common.interval),
        "path": args.path,
        "prune": args.prune,
        "sourceRef": source_ref(&args.source)?,
    });
    if args.wait {
        spec["wait"] = Value::Bool(true);
    }
    if let Some(timeout) = args.health_check_timeout {
        spec["timeout"] = json!(driftless_runtime::duration::format(timeout));
    }
    if let Some(target) = &args.target_namespace {
        spec["targetNamespace"] = json!(target);
    }
    if let Some(account) = &args.service_account {
        spec["serviceAccountName"] = json!(account);
    }
    if !args.depends_on.is_empty() {
        spec["dependsOn"] = depends_on(&args.depends_on);
    }
    let kind = &kinds::KUSTOMIZATION;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `[namespace/]name` entries → `dependsOn`.
fn depends_on(entries: &[String]) -> Value {
    entries
        .iter()
        .map(|d| match d.split_once('/') {
            Some((ns, name)) => json!({"name": name, "namespace": ns}),
            None => json!({"name": d}),
        })
        .collect()
}

/// `Kind/name[.namespace]` → a reference to one of `kinds`.
fn kind_ref(text: &str, kinds: &[&str]) -> anyhow::Result<Value> {
    let Some((kind, rest)) = text.split_once('/') else {
        bail!(
            "{text:?} must be Kind/name[.namespace], Kind one of {}",
            kinds.join(", ")
        );
    };
    if !kinds.contains(&kind) {
        bail!(
            "kind {kind:?} is not supported here: use one of {}",
            kinds.join(", ")
        );
    }
    Ok(match rest.split_once('.') {
        Some((name, namespace)) => json!({"kind": kind, "name": name, "namespace": namespace}),
        None => json!({"kind": kind, "name": rest}),
    })
}

/// `create helmrelease`: a chart template (`--source` + `--chart`) or a `--chart-ref`.
pub async fn helm_release(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateHelmRelease,
) -> anyhow::Result<()> {
    let interval = driftless_runtime::duration::format(args.common.interval);
    let mut spec = json!({"interval": interval});
    match (&args.chart_ref, &args.source, &args.chart) {
        (Some(chart_ref), _, _) => {
            spec["chartRef"] = kind_ref(chart_ref, &["OCIRepository", "HelmChart", "ExternalArtifact"])?;
        }
        (None, Some(source), Some(chart)) => {
            let mut template = json!({
                "chart": chart,
                "sourceRef": kind_ref(source, &["HelmRepository", "GitRepository", "Bucket"])?,
                "interval": interval,
            });
            if let Some(version) = &args.chart_version {
                template["version"] = json!(version);
            }
            spec["chart"] = json!({"spec": template});
        }
        _ => bail!("either --source and --chart, or --chart-ref, is required"),
    }
    if let Some(name) = &args.release_name {
        spec["releaseName"] = json!(name);
    }
    if let Some(target) = &args.target_namespace {
        spec["targetNamespace"] = json!(target);
    }
    if args.create_target_namespace {
        spec["install"] = json!({"createNamespace": true});
    }
    if let Some(crds) = &args.crds {
        if !["Skip", "Create", "CreateReplace"].contains(&crds.as_str()) {
            bail!("--crds must be Skip, Create or CreateReplace");
        }
        spec["install"]["crds"] = json!(crds);
        spec["upgrade"] = json!({"crds": crds});
    }
    if let Some(account) = &args.service_account {
        spec["serviceAccountName"] = json!(account);
    }
    if !args.depends_on.is_empty() {
        spec["dependsOn"] = depends_on(&args.depends_on);
    }
    let mut values = serde_json::Map::new();
    for file in &args.values {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read values file {}: {e}", file.display()))?;
        let parsed = driftless_kustomize::yaml::parse_documents(&text)
            .map_err(|e| anyhow::anyhow!("invalid values file {}: {e}", file.display()))?
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        match parsed {
            Value::Object(map) => driftless_chart::values::merge(&mut values, map),
            Value::Null => {}
            _ => bail!("values file {} is not a map", file.display()),
        }
    }
    if !values.is_empty() {
        spec["values"] = Value::Object(values);
    }
    if !args.values_from.is_empty() {
        let references = args
            .values_from
            .iter()
            .map(|r| match r.split_once('/') {
                Some((kind @ ("Secret" | "ConfigMap"), name)) => Ok(json!({"kind": kind, "name": name})),
                _ => bail!("--values-from {r:?} must be Secret/<name> or ConfigMap/<name>"),
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        spec["valuesFrom"] = Value::Array(references);
    }
    let kind = &kinds::HELM_RELEASE;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// The data of a Git credentials Secret: basic auth, bearer token or SSH (with known_hosts
/// scanned from the URL's server), plus `ca.crt`.
pub struct GitSecret {
    pub data: BTreeMap<String, String>,
    /// The public key, when an SSH key was generated and must be registered as a deploy key.
    pub generated_public_key: Option<String>,
}

pub fn git_secret_data(
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
    bearer_token: Option<&str>,
    private_key: Option<&str>,
    key_algorithm: &str,
    known_hosts: Option<&str>,
) -> anyhow::Result<GitSecret> {
    let mut data = BTreeMap::new();
    let mut generated_public_key = None;
    if git::is_ssh(url) {
        let (private, public) = match private_key {
            Some(private) => (
                private.to_string(),
                git::public_key_of(private).unwrap_or_default(),
            ),
            None => {
                let (private, public) = git::generate_key(key_algorithm)?;
                generated_public_key = Some(public.clone());
                (private, public)
            }
        };
        data.insert("identity".into(), private);
        if !public.is_empty() {
            data.insert("identity.pub".into(), public);
        }
        let known_hosts = match known_hosts {
            Some(k) => k.to_string(),
            None => git::scan_known_hosts(url)?,
        };
        data.insert("known_hosts".into(), known_hosts);
    } else if let Some(token) = bearer_token {
        data.insert("bearerToken".into(), token.to_string());
    } else {
        if let Some(username) = username {
            data.insert("username".into(), username.to_string());
        }
        if let Some(password) = password {
            data.insert("password".into(), password.to_string());
        }
    }
    Ok(GitSecret {
        data,
        generated_public_key,
    })
}

/// A Secret object with string data.
pub fn secret(name: &str, namespace: &str, secret_type: &str, data: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "stringData": data,
    })
}

/// Prints `object` with `--export`, else applies it and says so.
async fn export_or_apply_secret(
    cluster: Option<&Cluster>,
    object: &Value,
    export: bool,
    what: &str,
) -> anyhow::Result<()> {
    if export {
        print_yaml(std::slice::from_ref(object));
        return Ok(());
    }
    let cluster = cluster.context("a cluster is needed unless --export is given")?;
    apply_secret(cluster, object).await?;
    success(format!(
        "{what} secret '{}' created in '{}' namespace",
        kinds::text(object, "/metadata/name"),
        kinds::text(object, "/metadata/namespace")
    ));
    Ok(())
}

/// The docker config JSON giving `username`/`password` for `registry`.
fn docker_config(registry: &str, username: &str, password: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    json!({"auths": {registry: {"username": username, "password": password, "auth": auth}}}).to_string()
}

pub async fn secret_oci(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSecretOci,
) -> anyhow::Result<()> {
    let url = args.url.strip_prefix("oci://").unwrap_or(&args.url);
    let registry = url.split('/').next().unwrap_or_default();
    if registry.is_empty() {
        bail!("--url must name a registry host: {}", args.url);
    }
    let data = BTreeMap::from([(
        ".dockerconfigjson".to_string(),
        docker_config(registry, &args.username, &args.password),
    )]);
    let object = secret(&args.name, namespace, "kubernetes.io/dockerconfigjson", &data);
    export_or_apply_secret(cluster, &object, args.export, "oci").await
}

pub async fn secret_tls(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSecretTls,
) -> anyhow::Result<()> {
    if args.tls_crt_file.is_some() != args.tls_key_file.is_some() {
        bail!("a client certificate needs both --tls-crt-file and --tls-key-file");
    }
    let mut data = BTreeMap::new();
    for (key, file) in [
        ("ca.crt", &args.ca_crt_file),
        ("tls.crt", &args.tls_crt_file),
        ("tls.key", &args.tls_key_file),
    ] {
        if let Some(path) = file {
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            data.insert(key.to_string(), pem);
        }
    }
    if data.is_empty() {
        bail!("give --ca-crt-file and/or --tls-crt-file with --tls-key-file");
    }
    let object = secret(&args.name, namespace, "Opaque", &data);
    export_or_apply_secret(cluster, &object, args.export, "tls").await
}

/// Applies a Secret with the CLI's field manager.
pub async fn apply_secret(cluster: &Cluster, secret: &Value) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let name = kinds::text(secret, "/metadata/name");
    let namespace = kinds::text(secret, "/metadata/namespace");
    kube::Api::<Secret>::namespaced(cluster.client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(manifests::FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await
        .with_context(|| format!("applying Secret {namespace}/{name}"))?;
    Ok(())
}

pub async fn secret_git(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &CreateSecretGit,
) -> anyhow::Result<()> {
    let url = git::normalize_url(&args.url);
    let private_key = match &args.private_key_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    if !git::is_ssh(&url)
        && args.bearer_token.is_none()
        && (args.username.is_none() || args.password.is_none())
    {
        bail!("for http(s) URLs give --username and --password, or --bearer-token");
    }
    let mut secret_data = git_secret_data(
        &url,
        args.username.as_deref(),
        args.password.as_deref(),
        args.bearer_token.as_deref(),
        private_key.as_deref(),
        &args.ssh_key_algorithm,
        None,
    )?;
    if let Some(ca) = &args.ca_file {
        let ca = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
        secret_data.data.insert("ca.crt".into(), ca);
    }
    let object = secret(&args.name, namespace, "Opaque", &secret_data.data);
    export_or_apply_secret(cluster, &object, args.export, "git").await?;
    if let Some(public) = secret_data.generated_public_key.as_ref().filter(|_| !args.export) {
        success(format!("deploy key: {public}"));
    }
    Ok(())
}

/// `create alert-provider`.
pub async fn alert_provider(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateAlertProvider,
) -> anyhow::Result<()> {
    let mut spec = json!({"type": args.provider_type});
    for (field, value) in [
        ("channel", &args.channel),
        ("username", &args.username),
        ("address", &args.address),
    ] {
        if let Some(value) = value {
            spec[field] = json!(value);
        }
    }
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    let kind = &kinds::PROVIDER;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `create alert`.
pub async fn alert(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateAlert,
) -> anyhow::Result<()> {
    let sources = args
        .event_source
        .iter()
        .map(|s| kind_ref(s, &EVENT_SOURCE_KINDS))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    let spec = json!({
        "providerRef": {"name": args.provider_ref},
        "eventSeverity": args.event_severity,
        "eventSources": sources,
    });
    let kind = &kinds::ALERT;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// Kinds an Alert or Receiver may name (Flux's list).
const EVENT_SOURCE_KINDS: [&str; 12] = [
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
    "ArtifactGenerator",
    "ExternalArtifact",
];

/// `create receiver`; prints the webhook path once the Receiver is ready.
pub async fn receiver(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateReceiver,
) -> anyhow::Result<()> {
    let resources = args
        .resource
        .iter()
        .map(|s| kind_ref(s, &EVENT_SOURCE_KINDS))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    let mut spec = json!({
        "type": args.receiver_type,
        "resources": resources,
        "secretRef": {"name": args.secret_ref},
    });
    if !args.event.is_empty() {
        spec["events"] = json!(args.event);
    }
    let kind = &kinds::RECEIVER;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `create image repository`.
pub async fn image_repository(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateImageRepository,
) -> anyhow::Result<()> {
    let mut spec =
        json!({"image": args.image, "interval": driftless_runtime::duration::format(args.common.interval)});
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    if let Some(secret) = &args.cert_secret_ref {
        spec["certSecretRef"] = json!({"name": secret});
    }
    if let Some(timeout) = &args.scan_timeout {
        spec["timeout"] = json!(timeout);
    }
    if args.insecure {
        spec["insecure"] = json!(true);
    }
    if !args.exclusion_list.is_empty() {
        spec["exclusionList"] = json!(args.exclusion_list);
    }
    let kind = &kinds::IMAGE_REPOSITORY;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `create image policy`.
pub async fn image_policy(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateImagePolicy,
) -> anyhow::Result<()> {
    let policy = match (&args.select_semver, &args.select_numeric, &args.select_alpha) {
        (Some(range), None, None) => json!({"semver": {"range": range}}),
        (None, Some(order), None) => json!({"numerical": {"order": order}}),
        (None, None, Some(order)) => json!({"alphabetical": {"order": order}}),
        _ => anyhow::bail!("one of --select-semver, --select-numeric or --select-alpha is required"),
    };
    let image_ref = match args.image_ref.split_once('/') {
        Some((ns, name)) => json!({"name": name, "namespace": ns}),
        None => json!({"name": args.image_ref}),
    };
    let mut spec = json!({"imageRepositoryRef": image_ref, "policy": policy});
    if let Some(pattern) = &args.filter_regex {
        spec["filterTags"] = json!({"pattern": pattern});
        if let Some(extract) = &args.filter_extract {
            spec["filterTags"]["extract"] = json!(extract);
        }
    }
    if let Some(reflect) = &args.reflect_digest {
        spec["digestReflectionPolicy"] = json!(reflect);
        if reflect == "Always" {
            spec["interval"] = json!(driftless_runtime::duration::format(args.common.interval));
        }
    }
    let kind = &kinds::IMAGE_POLICY;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}

/// `create image update`.
pub async fn image_update(
    cluster: Option<&Cluster>,
    namespace: &str,
    args: &crate::args::CreateImageUpdate,
) -> anyhow::Result<()> {
    let mut source = json!({"kind": "GitRepository", "name": args.git_repo_ref});
    if let Some(ns) = &args.git_repo_namespace {
        source["namespace"] = json!(ns);
    }
    let mut git = json!({"commit": {"author": {"name": args.author_name, "email": args.author_email}}});
    if let Some(branch) = &args.checkout_branch {
        git["checkout"] = json!({"ref": {"branch": branch}});
    }
    if let Some(branch) = &args.push_branch {
        git["push"] = json!({"branch": branch});
    }
    if let Some(template) = &args.commit_template {
        git["commit"]["messageTemplate"] = json!(template);
    }
    if let Some(secret) = &args.signing_key_secret_ref {
        git["commit"]["signingKey"] = json!({"secretRef": {"name": secret}});
        if let Some(kind) = &args.signing_key_type {
            git["commit"]["signingKey"]["type"] = json!(kind);
        }
    }
    let spec = json!({
        "interval": driftless_runtime::duration::format(args.common.interval),
        "sourceRef": source,
        "git": git,
        "update": {"strategy": "Setters", "path": args.git_repo_path},
    });
    let kind = &kinds::IMAGE_UPDATE;
    let object = object(kind, metadata(&args.common, namespace)?, spec);
    apply_or_export(cluster, kind, object, args.common.export).await
}
