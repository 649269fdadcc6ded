//! The load restrictor: files outside a kustomization's directory, symlinks that escape it and
//! anything outside the jail are refused.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";

#[test]
fn a_symlink_escaping_the_kustomization_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("secret.yaml"), CM);
    let app = dir.path().join("app");
    write(&app.join("kustomization.yaml"), "resources:\n- cm.yaml\n");
    std::os::unix::fs::symlink(dir.path().join("secret.yaml"), app.join("cm.yaml")).unwrap();
    let error = driftless_kustomize::build(&app, None).unwrap_err().to_string();
    assert!(
        error.contains("security") && error.contains("is not in or below"),
        "{error}"
    );
}

#[test]
fn a_generator_file_outside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("passwd"), "root:x:0:0\n");
    let app = dir.path().join("app");
    write(
        &app.join("kustomization.yaml"),
        "configMapGenerator:\n- name: c\n  files:\n  - ../passwd\n",
    );
    let error = driftless_kustomize::build(&app, None).unwrap_err().to_string();
    assert!(error.contains("security"), "{error}");
}

#[test]
fn nothing_outside_the_jail_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let jail = dir.path().join("artifact");
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- cm.yaml\n",
    );
    write(&dir.path().join("base/cm.yaml"), CM);
    write(&jail.join("app/kustomization.yaml"), "resources:\n- ../../base\n");
    // Without a jail a base elsewhere is fine, as in kustomize …
    assert_eq!(
        driftless_kustomize::build(&jail.join("app"), None).unwrap().len(),
        1
    );
    // … with one, the build stays inside it.
    let error = driftless_kustomize::build(&jail.join("app"), Some(&jail))
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside the build root"), "{error}");
}

#[test]
fn inside_the_jail_builds() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("base/kustomization.yaml"),
        "resources:\n- cm.yaml\n",
    );
    write(&dir.path().join("base/cm.yaml"), CM);
    write(
        &dir.path().join("app/kustomization.yaml"),
        "resources:\n- ../base\nnamePrefix: a-\n",
    );
    let objects = driftless_kustomize::build(&dir.path().join("app"), Some(dir.path())).unwrap();
    assert_eq!(objects[0]["metadata"]["name"], "a-x");
}

#[test]
fn the_load_restrictor_decides_whether_files_above_a_kustomization_are_read() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("common/cm.yaml"), CM);
    let app = dir.path().join("app");
    write(
        &app.join("kustomization.yaml"),
        "resources:\n- ../common/cm.yaml\n",
    );
    // kustomize's default (kubectl kustomize, driftless kustomize build) …
    let error = driftless_kustomize::build(&app, None).unwrap_err().to_string();
    assert!(error.contains("is not in or below"), "{error}");
    // … and `--load-restrictor LoadRestrictionsNone`, which still respects a jail.
    let none = driftless_kustomize::LoadRestrictor::None;
    assert_eq!(
        driftless_kustomize::build_restricted(&app, None, none)
            .unwrap()
            .len(),
        1
    );
    let error = driftless_kustomize::build_restricted(&app, Some(&app), none)
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside the build root"), "{error}");
}

/// A file nesting very deep or multiplying itself through aliases is refused, not allowed to
/// overflow the stack or exhaust memory.
#[test]
fn deep_nesting_and_alias_bombs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("kustomization.yaml"),
        "resources:\n- deep.yaml\n",
    );
    write(
        &dir.path().join("deep.yaml"),
        &format!("{CM}---\n{}x\n", "- ".repeat(100_000)),
    );
    let error = driftless_kustomize::build(dir.path(), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("nests deeper"), "{error}");

    let mut bomb = format!("{CM}x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
    }
    write(&dir.path().join("deep.yaml"), &bomb);
    let error = driftless_kustomize::build(dir.path(), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("excessive aliasing"), "{error}");
}
