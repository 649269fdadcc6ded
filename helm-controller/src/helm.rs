//! The `helm` CLI, driven one process per action.
//!
//! Why the CLI and one process per action (`docs/helm-controller.md` says more): releases stay
//! Helm's own, byte for byte, because Helm writes them; an action is cancelled by killing its
//! process (`kill_on_drop`, so a reconcile dropped at shutdown stops its `helm` too); memory
//! spent rendering a chart is returned to the system when the process exits, so the
//! controller itself stays small. Reads do not need a process: the state machine reads Helm's
//! storage Secrets directly ([`crate::release`]).
//!
//! Each controller process gets private Helm homes (cache, config, data) and a post-renderer
//! plugin whose command is the controller's own binary in `post-render` mode
//! ([`crate::post_render`]): Helm 4 takes post-renderers only as plugins.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Name of the post-renderer plugin.
pub const POST_RENDERER: &str = "driftless-post-renderer";

/// Extra time given to a `helm` process beyond its own `--timeout` before it is killed. Helm's
/// timeout bounds each operation (every hook, then the wait), so an action may take several
/// times it; Helm failing by its own timeout leaves the release failed rather than locked.
const GRACE: Duration = Duration::from_secs(30);
/// How many of its `--timeout` a `helm` process may run.
const TIMEOUTS: u32 = 3;

/// How a `helm` process reaches the cluster.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// A kubeconfig file (a `kubeConfig` secret, or the controller's own when it has one).
    pub kubeconfig: Option<PathBuf>,
    /// User impersonated (`serviceAccountName`).
    pub as_user: Option<String>,
}

/// A failed `helm` run.
#[derive(Debug, Clone)]
pub struct HelmError {
    /// Helm's own message (`Error: …` without the prefix), else its stderr.
    pub message: String,
    /// The process ran past its time limit and was killed.
    pub timed_out: bool,
}

impl std::fmt::Display for HelmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `helm` binary with this process's private homes.
pub struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
    post_renderer: bool,
    /// Helm processes running at once (`--concurrent`): a reconcile waits for a permit only
    /// around its process, so reads, status writes and waits of other reconciles overlap.
    processes: tokio::sync::Semaphore,
}

impl Helm {
    /// Prepares the homes and, when `post_renderer` (the executable run in `post-render` mode)
    /// is given, the plugin that calls it.
    pub fn new(binary: PathBuf, post_renderer: Option<&Path>, processes: usize) -> std::io::Result<Helm> {
        let home = tempfile::Builder::new().prefix("helm-controller-").tempdir()?;
        for dir in ["cache", "config", "data", "plugins"] {
            std::fs::create_dir_all(home.path().join(dir))?;
        }
        if let Some(executable) = post_renderer {
            let plugin = home.path().join("plugins").join(POST_RENDERER);
            std::fs::create_dir_all(&plugin)?;
            let manifest = serde_json::json!({
                "apiVersion": "v1",
                "name": POST_RENDERER,
                "version": "0.1.0",
                "type": "postrenderer/v1",
                "runtime": "subprocess",
                "runtimeConfig": {"platformCommand": [{
                    "command": executable.to_string_lossy(),
                    "args": ["post-render"],
                }]},
            });
            // JSON is YAML; Helm splits `command` at spaces, so the path must have none.
            if executable.to_string_lossy().contains(' ') {
                return Err(std::io::Error::other(format!(
                    "the post-renderer path {} contains a space",
                    executable.display()
                )));
            }
            std::fs::write(plugin.join("plugin.yaml"), manifest.to_string())?;
        }
        Ok(Helm {
            binary,
            home,
            post_renderer: post_renderer.is_some(),
            processes: tokio::sync::Semaphore::new(processes.max(1)),
        })
    }

    /// Whether `--post-renderer` can be passed.
    pub fn has_post_renderer(&self) -> bool {
        self.post_renderer
    }

    /// Runs `helm <args>` against the cluster of `connection`, killed after `limit` plus a
    /// grace period; returns stdout.
    pub async fn run(
        &self,
        args: &[String],
        connection: &Connection,
        limit: Duration,
    ) -> Result<String, HelmError> {
        let home = self.home.path();
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("HELM_PLUGINS", home.join("plugins"))
            .env("HELM_DRIVER", "secret")
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBEASUSER")
            .env_remove("HELM_KUBEASGROUPS")
            .env_remove("HELM_KUBETOKEN")
            .env_remove("HELM_KUBEAPISERVER")
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("HELM_KUBECAFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(kubeconfig) = &connection.kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        if let Some(user) = &connection.as_user {
            command.arg("--kube-as-user").arg(user);
        }
        tracing::debug!(?args, "helm");
        // Closed only on drop: acquiring cannot fail while `self` lives.
        let _permit = self.processes.acquire().await.map_err(|e| HelmError {
            message: e.to_string(),
            timed_out: false,
        })?;
        let child = command.spawn().map_err(|e| HelmError {
            message: format!("failed to run {}: {e}", self.binary.display()),
            timed_out: false,
        })?;
        let output = match tokio::time::timeout(limit * TIMEOUTS + GRACE, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(HelmError {
                    message: format!("helm failed: {e}"),
                    timed_out: false,
                });
            }
            Err(_) => {
                return Err(HelmError {
                    message: format!(
                        "helm {} did not finish within {}s",
                        args.join(" "),
                        limit.as_secs()
                    ),
                    timed_out: true,
                });
            }
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(HelmError {
            message: error_message(&String::from_utf8_lossy(&output.stderr)),
            timed_out: false,
        })
    }
}

/// Helm's `Error: …` line (and what follows it), else the whole stderr; log lines before it
/// are dropped.
fn error_message(stderr: &str) -> String {
    match stderr.find("Error: ") {
        Some(at) => stderr[at + "Error: ".len()..].trim().to_string(),
        None => stderr.trim().to_string(),
    }
}

/// Helm's duration syntax for `--timeout` (seconds are enough).
pub fn timeout_arg(timeout: Duration) -> String {
    format!("{}s", timeout.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_errors_keep_helms_message() {
        assert_eq!(
            error_message("level=WARN msg=x\nError: UPGRADE FAILED: boom\n"),
            "UPGRADE FAILED: boom"
        );
        assert_eq!(error_message("killed\n"), "killed");
    }
}
