//! The connection to the cluster: flags shared by every command, the client, errors a user can
//! act on, and waiting for objects.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::kinds::{self, KindInfo};
use crate::manifests::FIELD_MANAGER;

/// Flags every command takes, as the flux CLI names them.
#[derive(clap::Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace scope for this operation.
    #[arg(short = 'n', long, global = true, default_value = "flux-system")]
    pub namespace: String,
    /// Timeout for operations that wait.
    #[arg(long, global = true, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print more detail.
    #[arg(long, global = true)]
    pub verbose: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    driftless_runtime::duration::parse(s).map_err(|e| e.to_string())
}

/// Progress lines, in the flux CLI's style, on stderr (stdout stays for data).
pub fn step(msg: impl AsRef<str>) {
    eprintln!("► {}", msg.as_ref());
}
pub fn success(msg: impl AsRef<str>) {
    eprintln!("✔ {}", msg.as_ref());
}
pub fn waiting(msg: impl AsRef<str>) {
    eprintln!("◎ {}", msg.as_ref());
}
pub fn failure(msg: impl AsRef<str>) {
    eprintln!("✗ {}", msg.as_ref());
}
pub fn generate(msg: impl AsRef<str>) {
    eprintln!("✚ {}", msg.as_ref());
}

/// A client for the cluster the flags name, checked to be reachable.
pub struct Cluster {
    pub client: Client,
    pub config: Config,
    pub namespace: String,
    pub timeout: Duration,
}

impl Cluster {
    pub async fn connect(args: &GlobalArgs) -> anyhow::Result<Cluster> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match &args.kubeconfig {
            Some(path) if !path.as_os_str().is_empty() => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            _ => Config::from_kubeconfig(&options)
                .await
                .or_else(|_| Config::incluster())
                .context("no kubeconfig found: set KUBECONFIG or --kubeconfig")?,
        };
        let client = driftless_runtime::apiserver::client(config.clone())?;
        let cluster = Cluster {
            client,
            config,
            namespace: args.namespace.clone(),
            timeout: args.timeout,
        };
        cluster.server_version().await?;
        Ok(cluster)
    }

    /// The apiserver's version (`1.36.3`); also proves the cluster is reachable.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let info = self.client.apiserver_version().await.map_err(|e| {
            anyhow!(
                "cannot reach the Kubernetes API server at {}: {e}\n  (is the cluster running? check KUBECONFIG, --kubeconfig and --context)",
                self.config.cluster_url
            )
        })?;
        Ok(info.git_version.trim_start_matches('v').to_string())
    }

    /// Turns an API error about a toolkit kind into one that says what to do.
    pub fn explain(
        &self,
        kind: &KindInfo,
        name: Option<&str>,
        namespace: &str,
        e: kube::Error,
    ) -> anyhow::Error {
        match &e {
            kube::Error::Api(status) if status.code == 404 => match name {
                Some(name) => anyhow!("{} '{namespace}/{name}' not found", kind.kind),
                None => anyhow!(
                    "the {} CRD is not installed (run `driftless install` or `driftless check`)",
                    kind.plural
                ),
            },
            kube::Error::Api(status) if status.code == 403 => {
                anyhow!("access denied to {}: {}", kind.plural, status.message)
            }
            _ => anyhow!("{} request failed: {e}", kind.kind),
        }
    }

    /// One object of `kind`, as JSON.
    pub async fn get(&self, kind: &KindInfo, namespace: &str, name: &str) -> anyhow::Result<Value> {
        let object = kind
            .api(&self.client, Some(namespace))
            .get(name)
            .await
            .map_err(|e| self.explain(kind, Some(name), namespace, e))?;
        Ok(serde_json::to_value(object)?)
    }

    /// Every object of `kind` in `namespace` (all namespaces with None), sorted by namespace/name.
    pub async fn list(&self, kind: &KindInfo, namespace: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let list = kind
            .api(&self.client, namespace)
            .list(&Default::default())
            .await
            .map_err(|e| self.explain(kind, None, namespace.unwrap_or_default(), e))?;
        let mut items: Vec<Value> = list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .collect();
        items.sort_by(|a, b| {
            (
                kinds::text(a, "/metadata/namespace"),
                kinds::text(a, "/metadata/name"),
            )
                .cmp(&(
                    kinds::text(b, "/metadata/namespace"),
                    kinds::text(b, "/metadata/name"),
                ))
        });
        Ok(items)
    }

    /// Merge-patches one object of `kind`.
    pub async fn merge_patch(
        &self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> anyhow::Result<()> {
        kind.api(&self.client, Some(namespace))
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.explain(kind, Some(name), namespace, e))?;
        Ok(())
    }

    /// Server-side applies a toolkit object with the CLI's field manager.
    pub async fn apply(&self, kind: &KindInfo, object: &Value) -> anyhow::Result<()> {
        let name = kinds::text(object, "/metadata/name");
        let namespace = kinds::text(object, "/metadata/namespace");
        kind.api(&self.client, Some(namespace))
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .map_err(|e| self.explain(kind, None, namespace, e))?;
        Ok(())
    }

    /// Waits until `done` says the object is finished (Ok(true)) or failed (Err), up to the
    /// timeout. The timeout error says what the object reports.
    pub async fn wait_for(
        &self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        mut done: impl FnMut(&Value) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match kind.api(&self.client, Some(namespace)).get_opt(name).await {
                Ok(Some(object)) => {
                    last = serde_json::to_value::<DynamicObject>(object)?;
                    if done(&last)? {
                        return Ok(last);
                    }
                }
                Ok(None) => bail!("{} '{namespace}/{name}' not found", kind.kind),
                Err(e) => return Err(self.explain(kind, Some(name), namespace, e)),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "timeout after {} waiting for {}/{namespace}/{name}: {}",
            driftless_runtime::duration::format(self.timeout),
            kind.kind,
            ready_summary(&last)
        )
    }

    /// Waits for the object to be Ready at its current generation, and, when `token` is given,
    /// to have handled that reconcile request. Ready=False (not reconciling) is an error.
    pub async fn wait_ready(
        &self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Value> {
        self.wait_for(kind, namespace, name, |o| {
            if let Some(token) = token
                && kinds::text(o, "/status/lastHandledReconcileAt") != token
            {
                return Ok(false);
            }
            // Kinds without status.observedGeneration (ArtifactGenerator) record it in their
            // Ready condition, as kstatus reads them.
            let observed = o
                .pointer("/status/observedGeneration")
                .or_else(|| kinds::condition(o, "Ready")?.get("observedGeneration"));
            if o.pointer("/metadata/generation") != observed {
                return Ok(false);
            }
            let Some(ready) = kinds::condition(o, "Ready") else {
                return Ok(false);
            };
            match ready["status"].as_str() {
                Some("True") => Ok(true),
                Some("False") if kinds::condition(o, "Reconciling").is_none() => {
                    bail!("{}", kinds::text(ready, "/message"))
                }
                _ => Ok(false),
            }
        })
        .await
    }
}

/// `Ready=<status>: <message>` of an object, for timeouts and tables.
pub fn ready_summary(object: &Value) -> String {
    match kinds::condition(object, "Ready") {
        Some(c) => format!(
            "Ready={} ({}): {}",
            kinds::text(c, "/status"),
            kinds::text(c, "/reason"),
            kinds::text(c, "/message")
        ),
        None if object.is_null() => "not found yet".into(),
        None => "no Ready condition yet".into(),
    }
}

/// A fresh `reconcile.fluxcd.io/requestedAt` token (RFC 3339 with nanoseconds, as flux sets).
pub fn request_token() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Asks a yes/no question on the terminal; anything but y/yes (or no terminal) is no.
pub fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N]: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
