//! `docs/compatibility.md` against the code: one row per Flux field of the kinds of
//! source-controller and kustomize-controller (from the CRDs), per flag (from the controllers'
//! clap definitions) and per feature gate (from their `FEATURE_GATES`, with Flux's defaults),
//! and none for anything that does not exist. A field, flag or gate added without its row, or
//! a row left for one removed, fails here.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use serde_json::Value;

/// The tables of the document: `(controller, table heading)` → first cells, with the rest
/// of each row.
fn tables() -> BTreeMap<(String, String), Vec<Vec<String>>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/compatibility.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut tables: BTreeMap<(String, String), Vec<Vec<String>>> = BTreeMap::new();
    let (mut controller, mut heading) = (String::new(), String::new());
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            controller = h.trim().to_string();
        } else if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_string();
        } else if line.starts_with("| `") {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            tables
                .entry((controller.clone(), heading.clone()))
                .or_default()
                .push(cells);
        }
    }
    tables
}

fn first_cells(rows: &[Vec<String>]) -> BTreeSet<String> {
    rows.iter().map(|r| r[0].trim_matches('`').to_string()).collect()
}

/// Every field path under `spec` of a schema: objects' properties, `[]` for array items.
fn paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let path = format!("{prefix}.{name}");
            out.insert(path.clone());
            match sub.get("items") {
                Some(items) if sub.get("type") == Some(&Value::String("array".into())) => {
                    paths(items, &format!("{path}[]"), out)
                }
                _ => paths(sub, &path, out),
            }
        }
    }
}

fn spec_paths(kind: &str) -> BTreeSet<String> {
    let crd = driftless_api::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let version = crd.spec.versions.iter().find(|v| v.storage).unwrap().clone();
    let schema = serde_json::to_value(version.schema.unwrap().open_api_v3_schema.unwrap()).unwrap();
    let mut out = BTreeSet::new();
    paths(&schema["properties"]["spec"], "spec", &mut out);
    out
}

fn flags(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version"))
        .map(|l| format!("--{l}"))
        .collect()
}

const STATUSES: [&str; 5] = ["done", "differs", "refused", "accepted", "extra"];

fn check(
    tables: &BTreeMap<(String, String), Vec<Vec<String>>>,
    controller: &str,
    heading: &str,
    expected: &BTreeSet<String>,
) {
    let rows = tables
        .get(&(controller.to_string(), heading.to_string()))
        .unwrap_or_else(|| panic!("docs/compatibility.md has no '{controller}' / '{heading}' table"));
    let listed = first_cells(rows);
    let missing: Vec<_> = expected.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{controller} / {heading}: rows missing for {missing:?}; rows for what does not exist: {extra:?}"
    );
    assert_eq!(
        rows.len(),
        listed.len(),
        "{controller} / {heading}: a row is repeated"
    );
    for row in rows {
        // The status is the second cell (the third in gate tables, after the default).
        let status = if heading == "Feature gates" {
            &row[2]
        } else {
            &row[1]
        };
        assert!(
            STATUSES.contains(&status.as_str()),
            "{controller} / {heading}: '{}' has status '{status}'",
            row[0]
        );
    }
}

#[test]
fn every_flux_field_flag_and_gate_has_its_row() {
    let tables = tables();
    check(
        &tables,
        "source-controller",
        "Flags",
        &flags(source_controller::Args::command()),
    );
    check(
        &tables,
        "kustomize-controller",
        "Flags",
        &flags(kustomize_controller::Args::command()),
    );
    for (controller, gates) in [
        ("source-controller", source_controller::FEATURE_GATES),
        ("kustomize-controller", kustomize_controller::FEATURE_GATES),
    ] {
        let names: BTreeSet<String> = gates.iter().map(|(g, _)| g.to_string()).collect();
        check(&tables, controller, "Feature gates", &names);
        for row in &tables[&(controller.to_string(), "Feature gates".to_string())] {
            let default = gates
                .iter()
                .find(|(g, _)| *g == row[0].trim_matches('`'))
                .unwrap()
                .1;
            assert_eq!(row[1], default.to_string(), "{controller}: default of {}", row[0]);
        }
    }
    for kind in [
        "GitRepository",
        "OCIRepository",
        "HelmRepository",
        "HelmChart",
        "Bucket",
    ] {
        check(&tables, "source-controller", kind, &spec_paths(kind));
    }
    check(
        &tables,
        "kustomize-controller",
        "Kustomization",
        &spec_paths("Kustomization"),
    );
}
