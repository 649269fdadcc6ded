//! The `driftless` command line. Commands follow the `flux` CLI; this build has `version`,
//! `push artifact` and `kustomize build` (install, bootstrap, get, reconcile … arrive with issue 6).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use driftless_artifact::oci;
use oci_client::secrets::RegistryAuth;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "driftless",
    version,
    about = "Driftless: a Flux-compatible GitOps toolkit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the client version and the toolkit API versions it speaks.
    Version,
    /// Push artifacts to an OCI registry.
    Push {
        #[command(subcommand)]
        what: PushCommand,
    },
    /// Kustomize, built in (no kustomize binary needed).
    Kustomize {
        #[command(subcommand)]
        what: KustomizeCommand,
    },
}

#[derive(Subcommand)]
enum KustomizeCommand {
    /// Print the YAML stream `kubectl kustomize DIR` prints.
    Build {
        /// The kustomization directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PushCommand {
    /// Push a directory as a Flux OCI artifact (the layout `flux push artifact` writes).
    Artifact(PushArtifact),
}

#[derive(clap::Args)]
struct PushArtifact {
    /// Destination, `oci://<registry>/<repository>:<tag>`.
    url: String,
    /// Directory to package.
    #[arg(long)]
    path: PathBuf,
    /// Source URL recorded in `org.opencontainers.image.source`.
    #[arg(long)]
    source: String,
    /// Source revision recorded in `org.opencontainers.image.revision`, e.g. `main@sha1:<commit>`.
    #[arg(long)]
    revision: String,
    /// Registry credentials, `<user>:<password>`.
    #[arg(long)]
    creds: Option<String>,
    /// Extra annotations, `key=value` (repeatable).
    #[arg(long = "annotations", short = 'a')]
    annotations: Vec<String>,
    /// Use plain HTTP.
    #[arg(long)]
    insecure_registry: bool,
}

async fn push_artifact(args: PushArtifact) -> anyhow::Result<()> {
    let reference = args.url.strip_prefix("oci://").with_context(|| {
        format!(
            "invalid URL {:?}: expected oci://<registry>/<repository>:<tag>",
            args.url
        )
    })?;
    if !args.path.is_dir() {
        bail!("--path {} is not a directory", args.path.display());
    }
    let auth = match args.creds.as_deref().map(|c| c.split_once(':')) {
        None => RegistryAuth::Anonymous,
        Some(Some((u, p))) => RegistryAuth::Basic(u.into(), p.into()),
        Some(None) => bail!("--creds must be <user>:<password>"),
    };
    let mut meta = oci::PushMetadata {
        source: args.source,
        revision: args.revision,
        ..Default::default()
    };
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("annotation {a:?} is not key=value"))?;
        meta.annotations.insert(k.into(), v.into());
    }
    let created = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let client = oci::client(args.insecure_registry);
    let digest = oci::push_dir(&client, reference, &auth, &args.path, &meta, &created)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("► pushing artifact to {reference}");
    println!("✔ artifact successfully pushed to {reference}@{digest}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => {
            println!("driftless: v{}", env!("CARGO_PKG_VERSION"));
            for crd in driftless_api::all_crds() {
                let versions: Vec<_> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
                println!(
                    "  {}/{} {}",
                    crd.spec.group,
                    versions.join(","),
                    crd.spec.names.kind
                );
            }
        }
        Command::Push {
            what: PushCommand::Artifact(args),
        } => push_artifact(args).await?,
        Command::Kustomize {
            what: KustomizeCommand::Build { dir },
        } => {
            let out = driftless_kustomize::build_yaml(&dir, None)?;
            print!("{out}");
        }
    }
    Ok(())
}
