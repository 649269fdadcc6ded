//! The CRD YAML under `manifests/crds/` is generated from the types and checked in. This test
//! fails when it is stale; `hack/gen-crds.sh` (or `UPDATE_CRDS=1 cargo test -p driftless-api
//! --test crds`) rewrites it.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, fs, path::PathBuf};

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/crds")
}

/// File name as Flux ships it: `<group>_<plural>.yaml`.
fn rendered() -> BTreeMap<String, String> {
    driftless_api::all_crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            let yaml = serde_norway::to_string(&crd).expect("CRD serializes");
            (file, format!("---\n{yaml}"))
        })
        .collect()
}

#[test]
fn generated_crds_are_up_to_date() {
    let dir = crd_dir();
    let want = rendered();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        fs::create_dir_all(&dir).expect("create manifests/crds");
        for entry in fs::read_dir(&dir).expect("read manifests/crds").flatten() {
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                fs::remove_file(entry.path()).expect("remove stale CRD");
            }
        }
        for (file, yaml) in &want {
            fs::write(dir.join(file), yaml).expect("write CRD");
        }
        return;
    }
    let mut stale = Vec::new();
    for (file, yaml) in &want {
        match fs::read_to_string(dir.join(file)) {
            Ok(have) if &have == yaml => {}
            _ => stale.push(file.clone()),
        }
    }
    let have: Vec<String> = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default();
    stale.extend(have.into_iter().filter(|f| !want.contains_key(f)));
    assert!(
        stale.is_empty(),
        "manifests/crds is stale ({stale:?}); run hack/gen-crds.sh and commit the result"
    );
}

#[test]
fn every_kind_has_flux_categories_and_a_status_default_where_flux_has_one() {
    for crd in driftless_api::all_crds() {
        let cats = crd.spec.names.categories.clone().unwrap_or_default();
        assert!(
            cats.contains(&"all".to_string()),
            "{} lacks category all",
            crd.spec.names.kind
        );
        assert!(
            cats.contains(&"fluxcd".to_string()),
            "{} lacks category fluxcd",
            crd.spec.names.kind
        );
        let kind = crd.spec.names.kind.as_str();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        let status_default = schema
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("status"))
            .and_then(|s| s.default.as_ref())
            .map(|d| d.0.clone());
        match kind {
            "ExternalArtifact" | "ArtifactGenerator" | "Provider" | "Alert" => {
                assert!(status_default.is_none(), "{kind}")
            }
            _ => assert_eq!(
                status_default,
                Some(serde_json::json!({"observedGeneration": -1})),
                "{kind}"
            ),
        }
    }
}

/// `manifests/monitoring/kube-state-metrics.yaml` gives every kind its `gotk_resource_info` at
/// the version the CRD stores, so a new kind or version cannot be forgotten there.
#[test]
fn the_kube_state_metrics_config_covers_every_kind() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/monitoring/kube-state-metrics.yaml");
    let text = fs::read_to_string(path).unwrap();
    for crd in driftless_api::all_crds() {
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .map(|v| v.name.clone())
            .unwrap();
        let entry = format!(
            "group: {}\n            version: {version}\n            kind: {}\n",
            crd.spec.group, crd.spec.names.kind
        );
        assert!(text.contains(&entry), "no gotk_resource_info for {entry}");
    }
}
