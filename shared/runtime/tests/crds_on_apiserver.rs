//! The generated CRDs on the real apiserver: every sample in `manifests/samples/` is accepted by
//! a server-side dry-run, and manifests that break the schema are rejected with a message that
//! names the field.

#![allow(clippy::unwrap_used)]

use driftless_api::all_crds;
use driftless_runtime::testing;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use std::{collections::BTreeSet, path::PathBuf};

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples")
}

fn api_for(client: &Client, ns: &str, obj: &DynamicObject) -> Api<DynamicObject> {
    let types = obj.types.as_ref().expect("apiVersion and kind");
    let (group, version) = types.api_version.split_once('/').expect("group/version");
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == types.kind)
        .unwrap_or_else(|| panic!("no CRD for {}/{}", types.api_version, types.kind));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn parse(yaml: &str) -> DynamicObject {
    serde_norway::from_str(yaml).expect("valid YAML object")
}

async fn dry_run(client: &Client, ns: &str, obj: &DynamicObject) -> Result<(), kube::Error> {
    let api = api_for(client, ns, obj);
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("driftless-test").dry_run().force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn every_sample_is_accepted_by_the_apiserver_and_every_kind_has_one() {
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "samples").await;
    let mut kinds = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(samples_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let obj = parse(&yaml);
        dry_run(&client, &ns, &obj)
            .await
            .unwrap_or_else(|e| panic!("{} rejected: {e}", file.display()));
        kinds.insert(obj.types.unwrap().kind);
    }
    let all: BTreeSet<String> = all_crds().into_iter().map(|c| c.spec.names.kind).collect();
    assert_eq!(kinds, all, "every kind needs a sample in manifests/samples");
    testing::delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn a_created_object_starts_with_observed_generation_minus_one() {
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "status-default").await;
    let obj = parse(&std::fs::read_to_string(samples_dir().join("source_gitrepository.yaml")).unwrap());
    let created = api_for(&client, &ns, &obj)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(
        created.data["status"]["observedGeneration"],
        serde_json::json!(-1)
    );
    testing::delete_namespace(&client, &ns).await;
}

/// (what is wrong, manifest, words the apiserver's message must contain)
fn invalid_manifests() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "GitRepository with an ftp URL",
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: bad}\nspec: {url: 'ftp://example.com/repo', interval: 1m}\n",
            vec!["spec.url", "should match"],
        ),
        (
            "GitRepository without an interval",
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: bad}\nspec: {url: 'https://example.com/repo'}\n",
            vec!["spec.interval", "Required value"],
        ),
        (
            "GitRepository with a malformed interval",
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: bad}\nspec: {url: 'https://example.com/repo', interval: 'every minute'}\n",
            vec!["spec.interval", "should match"],
        ),
        (
            "Kustomization with an unknown deletionPolicy",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: bad}\nspec: {interval: 1m, prune: true, deletionPolicy: Sometimes, sourceRef: {kind: GitRepository, name: x}}\n",
            vec!["spec.deletionPolicy", "Unsupported value", "MirrorPrune"],
        ),
        (
            "Kustomization without prune",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: bad}\nspec: {interval: 1m, sourceRef: {kind: GitRepository, name: x}}\n",
            vec!["spec.prune", "Required value"],
        ),
        (
            "Kustomization with an unsupported source kind",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: bad}\nspec: {interval: 1m, prune: true, sourceRef: {kind: HelmRepository, name: x}}\n",
            vec!["spec.sourceRef.kind", "Unsupported value"],
        ),
        (
            "OCIRepository with an https URL",
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata: {name: bad}\nspec: {url: 'https://ghcr.io/x', interval: 1m}\n",
            vec!["spec.url", "should match"],
        ),
        (
            "HelmRelease with neither chart nor chartRef",
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: bad}\nspec: {interval: 1m}\n",
            vec!["either chart or chartRef must be set"],
        ),
        (
            "ImagePolicy with an interval but no digest reflection",
            "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: bad}\nspec: {imageRepositoryRef: {name: x}, policy: {semver: {range: 1.x}}, interval: 5m}\n",
            vec!["spec.interval is only accepted"],
        ),
        (
            "Kustomization kubeConfig with both a ConfigMap and a Secret",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: bad}\nspec: {interval: 1m, prune: true, sourceRef: {kind: GitRepository, name: x}, kubeConfig: {configMapRef: {name: a}, secretRef: {name: b}}}\n",
            vec!["exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef"],
        ),
        (
            "Provider of an unknown type",
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: bad}\nspec: {type: carrier-pigeon}\n",
            vec!["spec.type", "Unsupported value"],
        ),
    ]
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn manifests_that_break_the_schema_are_rejected_with_a_clear_message() {
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "invalid").await;
    for (what, yaml, words) in invalid_manifests() {
        let obj = parse(yaml);
        match dry_run(&client, &ns, &obj).await {
            Ok(()) => panic!("{what}: accepted"),
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                for w in &words {
                    assert!(
                        e.message.contains(w),
                        "{what}: message {:?} lacks {w:?}",
                        e.message
                    );
                }
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    }
    testing::delete_namespace(&client, &ns).await;
}
