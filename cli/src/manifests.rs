//! The install bundle: `manifests/` (embedded at build time) plus the CRDs rendered from the API
//! types, built with the native kustomize engine through an overlay that carries the install
//! options, the way Flux renders `gotk-components.yaml`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// Controllers installed unless `--components` says otherwise (Flux's default set).
pub const DEFAULT_COMPONENTS: &[&str] = &[
    "source-controller",
    "kustomize-controller",
    "helm-controller",
    "notification-controller",
];
/// Controllers installed only when named in `--components-extra`.
pub const EXTRA_COMPONENTS: &[&str] = &[
    "image-reflector-controller",
    "image-automation-controller",
    "source-watcher",
];

/// Where the images come from unless `--registry` says otherwise.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/driftless-gitops";

/// The labels that let Flux's tooling (and ours) find what the bundle installed.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
pub const PART_OF_VALUE: &str = "flux";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The field manager of everything the CLI applies.
pub const FIELD_MANAGER: &str = "driftless";

/// Version of the bundle: the CLI's version.
pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// The files of `manifests/` the bundle is built from. The CRDs are not among them: they are
/// rendered from `driftless_api` (the same source `manifests/crds/` is generated from).
const FILES: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("../../manifests/namespace.yaml")),
    (
        "rbac/kustomization.yaml",
        include_str!("../../manifests/rbac/kustomization.yaml"),
    ),
    (
        "rbac/controller.yaml",
        include_str!("../../manifests/rbac/controller.yaml"),
    ),
    (
        "rbac/reconciler.yaml",
        include_str!("../../manifests/rbac/reconciler.yaml"),
    ),
    ("rbac/edit.yaml", include_str!("../../manifests/rbac/edit.yaml")),
    ("rbac/view.yaml", include_str!("../../manifests/rbac/view.yaml")),
    (
        "policies/kustomization.yaml",
        include_str!("../../manifests/policies/kustomization.yaml"),
    ),
    (
        "policies/allow-egress.yaml",
        include_str!("../../manifests/policies/allow-egress.yaml"),
    ),
    (
        "policies/allow-scraping.yaml",
        include_str!("../../manifests/policies/allow-scraping.yaml"),
    ),
    (
        "policies/allow-webhooks.yaml",
        include_str!("../../manifests/policies/allow-webhooks.yaml"),
    ),
    (
        "source-controller/kustomization.yaml",
        include_str!("../../manifests/source-controller/kustomization.yaml"),
    ),
    (
        "source-controller/source-controller.yaml",
        include_str!("../../manifests/source-controller/source-controller.yaml"),
    ),
    (
        "kustomize-controller/kustomization.yaml",
        include_str!("../../manifests/kustomize-controller/kustomization.yaml"),
    ),
    (
        "kustomize-controller/kustomize-controller.yaml",
        include_str!("../../manifests/kustomize-controller/kustomize-controller.yaml"),
    ),
    (
        "helm-controller/kustomization.yaml",
        include_str!("../../manifests/helm-controller/kustomization.yaml"),
    ),
    (
        "helm-controller/helm-controller.yaml",
        include_str!("../../manifests/helm-controller/helm-controller.yaml"),
    ),
    (
        "notification-controller/kustomization.yaml",
        include_str!("../../manifests/notification-controller/kustomization.yaml"),
    ),
    (
        "notification-controller/notification-controller.yaml",
        include_str!("../../manifests/notification-controller/notification-controller.yaml"),
    ),
    (
        "image-reflector-controller/kustomization.yaml",
        include_str!("../../manifests/image-reflector-controller/kustomization.yaml"),
    ),
    (
        "image-reflector-controller/image-reflector-controller.yaml",
        include_str!("../../manifests/image-reflector-controller/image-reflector-controller.yaml"),
    ),
    (
        "image-automation-controller/kustomization.yaml",
        include_str!("../../manifests/image-automation-controller/kustomization.yaml"),
    ),
    (
        "image-automation-controller/image-automation-controller.yaml",
        include_str!("../../manifests/image-automation-controller/image-automation-controller.yaml"),
    ),
    (
        "source-watcher/kustomization.yaml",
        include_str!("../../manifests/source-watcher/kustomization.yaml"),
    ),
    (
        "source-watcher/source-watcher.yaml",
        include_str!("../../manifests/source-watcher/source-watcher.yaml"),
    ),
];

/// Install options, as `flux install` names them.
#[derive(clap::Args, Clone, Debug)]
pub struct InstallOptions {
    /// Controllers to install.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_COMPONENTS.iter().map(|s| s.to_string()))]
    pub components: Vec<String>,
    /// Additional controllers to install (image-reflector-controller, image-automation-controller,
    /// source-watcher).
    #[arg(long, value_delimiter = ',')]
    pub components_extra: Vec<String>,
    /// Container registry the controller images are pulled from.
    #[arg(long, default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// Watch for custom resources in all namespaces; false limits the controllers to their own.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub watch_all_namespaces: bool,
    /// Log level of the controllers (debug, info, error).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Install the network policies that deny ingress from other namespaces.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub network_policy: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            components: DEFAULT_COMPONENTS.iter().map(|s| s.to_string()).collect(),
            components_extra: Vec::new(),
            registry: DEFAULT_REGISTRY.into(),
            watch_all_namespaces: true,
            log_level: "info".into(),
            network_policy: true,
        }
    }
}

impl InstallOptions {
    /// The selected controllers, in install order, validated.
    pub fn selected(&self) -> anyhow::Result<Vec<&'static str>> {
        let wanted: BTreeSet<&str> = self
            .components
            .iter()
            .chain(&self.components_extra)
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect();
        for name in &wanted {
            if !DEFAULT_COMPONENTS.contains(name) && !EXTRA_COMPONENTS.contains(name) {
                bail!(
                    "unknown component {name:?}; known: {}",
                    DEFAULT_COMPONENTS
                        .iter()
                        .chain(EXTRA_COMPONENTS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if !["trace", "debug", "info", "error"].contains(&self.log_level.as_str()) {
            bail!("--log-level must be one of trace, debug, info, error");
        }
        Ok(DEFAULT_COMPONENTS
            .iter()
            .chain(EXTRA_COMPONENTS)
            .copied()
            .filter(|c| wanted.contains(c))
            .collect())
    }
}

/// The API group whose CRDs a controller brings.
fn group_of(component: &str) -> &'static str {
    match component {
        "source-controller" => "source.toolkit.fluxcd.io",
        "kustomize-controller" => "kustomize.toolkit.fluxcd.io",
        "helm-controller" => "helm.toolkit.fluxcd.io",
        "notification-controller" => "notification.toolkit.fluxcd.io",
        "source-watcher" => "source.extensions.fluxcd.io",
        _ => "image.toolkit.fluxcd.io",
    }
}

/// The overlay kustomization for `namespace` and `options`. With the defaults it is
/// `manifests/kustomization.yaml` (a test keeps the two equal).
pub fn kustomization(namespace: &str, options: &InstallOptions) -> anyhow::Result<String> {
    let selected = options.selected()?;
    let mut out = String::from(
        "# Generated by `driftless install --export` from the files beside it; the CLI builds the\n\
         # same overlay with the install options (namespace, components, registry, flags).\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
    );
    out += &format!("namespace: {namespace}\nresources:\n- namespace.yaml\n");
    for crd in driftless_api::all_crds() {
        if selected.iter().any(|c| group_of(c) == crd.spec.group) {
            out += &format!("- crds/{}_{}.yaml\n", crd.spec.group, crd.spec.names.plural);
        }
    }
    out += "- rbac\n";
    for component in &selected {
        out += &format!("- {component}\n");
    }
    if options.network_policy {
        out += "- policies\n";
    }
    out += &format!(
        "labels:\n- pairs:\n    {INSTANCE_LABEL}: {namespace}\n    {PART_OF_LABEL}: {PART_OF_VALUE}\n    {VERSION_LABEL}: {}\n",
        version()
    );
    out += "images:\n";
    for component in &selected {
        out += &format!(
            "- name: {DEFAULT_REGISTRY}/{component}\n  newName: {}/{component}\n  newTag: {}\n",
            options.registry.trim_end_matches('/'),
            version()
        );
    }
    let flags_changed = !options.watch_all_namespaces || options.log_level != "info";
    // With source-watcher, the consumers of its ExternalArtifacts get Flux's gate, as
    // `flux install --components-extra=source-watcher` patches them.
    let external_artifacts = selected.contains(&"source-watcher");
    if flags_changed || external_artifacts {
        out += "patches:\n";
    }
    if external_artifacts {
        out +=
            "- target:\n    kind: Deployment\n    name: (kustomize-controller|helm-controller)\n  patch: |\n";
        out += "    - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: --feature-gates=ExternalArtifact=true\n";
    }
    // The first two arguments of every controller are --watch-all-namespaces and --log-level.
    if flags_changed {
        out += "- target:\n    kind: Deployment\n  patch: |\n";
        out += &format!(
            "    - op: replace\n      path: /spec/template/spec/containers/0/args/0\n      value: --watch-all-namespaces={}\n",
            options.watch_all_namespaces
        );
        out += &format!(
            "    - op: replace\n      path: /spec/template/spec/containers/0/args/1\n      value: --log-level={}\n",
            options.log_level
        );
    }
    Ok(out)
}

/// Writes the bundle's sources for `namespace` and `options` into `dir`.
fn write_sources(dir: &Path, namespace: &str, options: &InstallOptions) -> anyhow::Result<()> {
    for (path, content) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Cluster-scoped names and binding subjects carry the namespace, as Flux's do.
        std::fs::write(&target, content.replace("flux-system", namespace))?;
    }
    std::fs::create_dir_all(dir.join("crds"))?;
    for crd in driftless_api::all_crds() {
        let file = format!("crds/{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
        let value = serde_json::to_value(&crd)?;
        std::fs::write(dir.join(file), driftless_kustomize::yaml::to_yaml(&value))?;
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization(namespace, options)?)?;
    Ok(())
}

/// The install bundle as objects.
pub fn objects(namespace: &str, options: &InstallOptions) -> anyhow::Result<Vec<Value>> {
    let dir = tempfile::tempdir()?;
    write_sources(dir.path(), namespace, options)?;
    driftless_kustomize::build(dir.path(), None).context("building the install manifests")
}

/// The install bundle as a YAML stream (what `gotk-components.yaml` holds).
pub fn render(namespace: &str, options: &InstallOptions) -> anyhow::Result<String> {
    let objects = objects(namespace, options)?;
    Ok(format!(
        "---\n# Driftless {} (Flux-compatible toolkit components)\n{}",
        version(),
        driftless_kustomize::to_yaml_stream(&objects)
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifests_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
    }

    #[test]
    fn checked_in_kustomization_matches_the_defaults() {
        let want = kustomization("flux-system", &InstallOptions::default()).unwrap();
        let path = manifests_dir().join("kustomization.yaml");
        if std::env::var_os("UPDATE_MANIFESTS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            have, want,
            "manifests/kustomization.yaml is stale; run UPDATE_MANIFESTS=1 cargo test -p driftless-cli"
        );
    }

    #[test]
    fn every_manifest_file_is_embedded() {
        let root = manifests_dir();
        let mut missing = Vec::new();
        for dir in ["rbac", "policies"]
            .iter()
            .copied()
            .chain(DEFAULT_COMPONENTS.iter().copied())
            .chain(EXTRA_COMPONENTS.iter().copied())
        {
            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
                if !FILES.iter().any(|(p, _)| *p == rel) {
                    missing.push(rel);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not embedded in cli/src/manifests.rs: {missing:?}"
        );
    }

    #[test]
    fn bundle_builds_with_options() {
        let defaults = objects("flux-system", &InstallOptions::default()).unwrap();
        let kinds = |objects: &[Value], kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
        assert_eq!(kinds(&defaults, "Deployment"), 4);
        assert_eq!(kinds(&defaults, "CustomResourceDefinition"), 11);
        assert_eq!(kinds(&defaults, "NetworkPolicy"), 3);
        let deployment = defaults.iter().find(|o| o["kind"] == "Deployment").unwrap();
        assert_eq!(deployment["metadata"]["namespace"], "flux-system");
        assert_eq!(deployment["metadata"]["labels"][PART_OF_LABEL], "flux");

        let options = InstallOptions {
            components: vec!["source-controller".into(), "kustomize-controller".into()],
            components_extra: vec!["image-automation-controller".into()],
            registry: "registry.local:5000/gitops".into(),
            watch_all_namespaces: false,
            log_level: "debug".into(),
            network_policy: false,
        };
        let custom = objects("gitops", &options).unwrap();
        assert_eq!(kinds(&custom, "Deployment"), 3);
        assert_eq!(kinds(&custom, "NetworkPolicy"), 0);
        let source = custom
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "source-controller")
            .unwrap();
        let container = &source["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["image"],
            format!("registry.local:5000/gitops/source-controller:{}", version())
        );
        assert_eq!(container["args"][0], "--watch-all-namespaces=false");
        assert_eq!(container["args"][1], "--log-level=debug");
        let binding = custom
            .iter()
            .find(|o| {
                o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "cluster-reconciler-gitops"
            })
            .unwrap();
        assert_eq!(binding["subjects"][0]["namespace"], "gitops");
        assert!(
            custom
                .iter()
                .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "gitops")
        );
        assert!(
            options
                .clone()
                .components_extra
                .iter()
                .all(|c| EXTRA_COMPONENTS.contains(&c.as_str()))
        );
        // source-watcher brings its kind and turns on the ExternalArtifact gate of the
        // consumers, as `flux install --components-extra=source-watcher` does.
        let watcher = InstallOptions {
            components_extra: vec!["source-watcher".into()],
            ..InstallOptions::default()
        };
        let with_watcher = objects("flux-system", &watcher).unwrap();
        assert_eq!(kinds(&with_watcher, "Deployment"), 5);
        assert!(
            with_watcher
                .iter()
                .any(|o| o["kind"] == "CustomResourceDefinition"
                    && o["metadata"]["name"] == "artifactgenerators.source.extensions.fluxcd.io")
        );
        let args_of = |name: &str| {
            with_watcher
                .iter()
                .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
                .map(|d| d["spec"]["template"]["spec"]["containers"][0]["args"].clone())
                .unwrap()
        };
        let gate = serde_json::json!("--feature-gates=ExternalArtifact=true");
        for consumer in ["kustomize-controller", "helm-controller"] {
            assert!(
                args_of(consumer).as_array().unwrap().contains(&gate),
                "{consumer}"
            );
        }
        assert!(!args_of("source-controller").as_array().unwrap().contains(&gate));
        assert!(!defaults.iter().any(|o| {
            o["kind"] == "Deployment"
                && o["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array()
                    .unwrap()
                    .contains(&gate)
        }));
        let bad = InstallOptions {
            components: vec!["nope".into()],
            ..InstallOptions::default()
        };
        assert!(objects("x", &bad).is_err());
    }
}
