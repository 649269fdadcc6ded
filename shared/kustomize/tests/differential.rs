//! The differential test: every case under `tests/corpus` is built by this engine and by
//! `kubectl kustomize` (kustomize v5, the reference), and the outputs must be byte-identical.
//! Cases with an `EXPECT_ERROR` file must fail in both, ours with a message containing it.
//! A case builds its own directory, or the sub-directory named in its `BUILD` file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn kubectl() -> String {
    std::env::var("KUBECTL_REFERENCE").unwrap_or_else(|_| "kubectl".to_string())
}

struct Outcome {
    name: String,
    failure: Option<String>,
}

fn run_case(dir: &Path) -> Outcome {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let root = match read("BUILD") {
        Some(sub) if !sub.is_empty() => dir.join(sub),
        _ => dir.to_path_buf(),
    };
    let reference = Command::new(kubectl())
        .arg("kustomize")
        .arg(&root)
        .output()
        .unwrap_or_else(|e| panic!("running `{} kustomize` (the reference): {e}", kubectl()));
    let ours = driftless_kustomize::build_yaml(&root, None);
    let failure = match (read("EXPECT_ERROR"), ours) {
        (Some(expected), Ok(_)) => Some(format!(
            "expected an error containing {expected:?}, but the build succeeded"
        )),
        (Some(expected), Err(e)) => {
            if reference.status.success() {
                Some("kubectl kustomize succeeded on an error case".into())
            } else if !e.to_string().contains(&expected) {
                Some(format!("error {:?} does not contain {expected:?}", e.to_string()))
            } else {
                None
            }
        }
        (None, Err(e)) => Some(format!(
            "our build failed: {e}\nkubectl: {}",
            String::from_utf8_lossy(&reference.stderr)
        )),
        (None, Ok(out)) => {
            let expected = String::from_utf8_lossy(&reference.stdout);
            if !reference.status.success() {
                Some(format!(
                    "kubectl kustomize failed: {}",
                    String::from_utf8_lossy(&reference.stderr)
                ))
            } else if out != expected {
                Some(diff(&expected, &out))
            } else {
                None
            }
        }
    };
    Outcome { name, failure }
}

/// The first differing lines, with a little context.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = first.saturating_sub(3);
    let window = |lines: &[&str]| {
        lines
            .iter()
            .skip(from)
            .take(8)
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "output differs at line {} (kubectl {} lines, ours {} lines)\n  kubectl:\n{}\n  ours:\n{}",
        first + 1,
        e.len(),
        a.len(),
        window(&e),
        window(&a)
    )
}

#[test]
fn corpus_matches_kubectl_kustomize() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 150,
        "the corpus has {} cases, fewer than 150",
        cases.len()
    );
    let filter = std::env::var("CORPUS_FILTER").unwrap_or_default();
    cases.retain(|c| c.to_string_lossy().contains(&filter));
    // A filter that selects nothing must not pass as a green run.
    assert!(
        !cases.is_empty(),
        "CORPUS_FILTER={filter:?} matches no case under {}: nothing was compared",
        corpus.display()
    );

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let chunks: Vec<Vec<PathBuf>> = cases
        .chunks(cases.len().div_ceil(threads).max(1))
        .map(<[PathBuf]>::to_vec)
        .collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| scope.spawn(move || chunk.iter().map(|c| run_case(c)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    for failure in &failures {
        eprintln!(
            "✗ {}: {}\n",
            failure.name,
            failure.failure.as_deref().unwrap_or_default()
        );
    }
    eprintln!(
        "{} of {} cases identical to kubectl kustomize",
        outcomes.len() - failures.len(),
        outcomes.len()
    );
    assert!(failures.is_empty(), "{} cases differ", failures.len());
}
