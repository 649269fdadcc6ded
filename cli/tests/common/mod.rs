//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use driftless_runtime::testing;
use kube::Client;

pub const T: Duration = Duration::from_secs(120);

pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

/// Runs the CLI (blocking work off the test's runtime); returns its output.
pub async fn driftless(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(&args)
            .output()
            .expect("driftless runs")
    })
    .await
    .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the CLI and expects success.
pub async fn ok(args: &[&str]) -> Output {
    let out = driftless(args).await;
    assert!(
        out.status.success(),
        "driftless {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Runs the CLI and expects failure.
pub async fn fails(args: &[&str]) -> Output {
    let out = driftless(args).await;
    assert!(
        !out.status.success(),
        "driftless {args:?} should fail:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

pub async fn world(prefix: &str) -> (Client, String, driftless_testkit::Controllers) {
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let controllers = driftless_testkit::start_controllers(&client, &ns).await;
    (client, ns, controllers)
}

pub fn configmap(name: &str, color: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  color: {color}\n")
}
