//! The `driftless` command line. Commands, flags and output follow the `flux` CLI.

mod args;
mod bootstrap;
mod build;
mod cluster;
mod create;
mod git;
mod install;
mod kinds;
mod manifests;
mod operate;
mod show;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser};
use driftless_artifact::oci;
use oci_client::secrets::RegistryAuth;

use args::{
    BootstrapCommand, BuildCommand, Cli, Command, CreateCommand, CreateImage, CreateSecret, CreateSource,
    KustomizeCommand, PushArtifact, PushCommand, TreeCommand,
};
use cluster::Cluster;

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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    let connect = || Cluster::connect(global);
    match cli.command {
        Command::Version { client } => show::version(global, client).await?,
        Command::Install(args) => install::install(global, &args).await?,
        Command::Uninstall(args) => install::uninstall(global, &args).await?,
        Command::Check { pre } => install::check(global, pre).await?,
        Command::Bootstrap {
            what: BootstrapCommand::Git(args),
        } => bootstrap::bootstrap_git(global, &args).await?,
        Command::Get {
            all_namespaces,
            status_selector,
            no_header,
            target,
        } => {
            let (kinds, named) = target.resolve();
            show::get(
                &connect().await?,
                &kinds,
                named,
                all_namespaces,
                status_selector.as_deref(),
                no_header,
            )
            .await?
        }
        Command::Reconcile {
            with_source,
            force,
            reset,
            target,
        } => {
            let (kind, named) = target.single()?;
            operate::reconcile(&connect().await?, kind, named, with_source, force, reset).await?
        }
        Command::Suspend { target } => {
            let (kind, named) = target.single()?;
            operate::set_suspend(&connect().await?, kind, named, true, false).await?
        }
        Command::Resume { wait, target } => {
            let (kind, named) = target.single()?;
            operate::set_suspend(&connect().await?, kind, named, false, wait).await?
        }
        Command::Delete { silent, target } => {
            let (kind, named) = target.single()?;
            operate::delete(&connect().await?, kind, named, silent).await?
        }
        Command::Export { target } => {
            let (kinds, named) = target.resolve();
            show::export(&connect().await?, &kinds, named).await?
        }
        Command::Create { what } => {
            let export = match &what {
                CreateCommand::Source {
                    what: CreateSource::Git(a),
                } => a.common.export,
                CreateCommand::Source {
                    what: CreateSource::Oci(a),
                } => a.common.export,
                CreateCommand::Source {
                    what: CreateSource::Helm(a),
                } => a.common.export,
                CreateCommand::Source {
                    what: CreateSource::Chart(a),
                } => a.common.export,
                CreateCommand::Source {
                    what: CreateSource::Bucket(a),
                } => a.common.export,
                CreateCommand::Kustomization(a) => a.common.export,
                CreateCommand::Helmrelease(a) => a.common.export,
                CreateCommand::AlertProvider(a) => a.common.export,
                CreateCommand::Alert(a) => a.common.export,
                CreateCommand::Receiver(a) => a.common.export,
                CreateCommand::Image {
                    what: CreateImage::Repository(a),
                } => a.common.export,
                CreateCommand::Image {
                    what: CreateImage::Policy(a),
                } => a.common.export,
                CreateCommand::Image {
                    what: CreateImage::Update(a),
                } => a.common.export,
                CreateCommand::Secret {
                    what: CreateSecret::Git(a),
                } => a.export,
                CreateCommand::Secret {
                    what: CreateSecret::Oci(a),
                } => a.export,
                CreateCommand::Secret {
                    what: CreateSecret::Tls(a),
                } => a.export,
            };
            // --export works without a cluster.
            let cluster = if export { None } else { Some(connect().await?) };
            let (cluster, ns) = (cluster.as_ref(), global.namespace.as_str());
            match &what {
                CreateCommand::Source {
                    what: CreateSource::Git(a),
                } => create::source_git(cluster, ns, a).await?,
                CreateCommand::Source {
                    what: CreateSource::Oci(a),
                } => create::source_oci(cluster, ns, a).await?,
                CreateCommand::Source {
                    what: CreateSource::Helm(a),
                } => create::source_helm(cluster, ns, a).await?,
                CreateCommand::Source {
                    what: CreateSource::Chart(a),
                } => create::source_chart(cluster, ns, a).await?,
                CreateCommand::Source {
                    what: CreateSource::Bucket(a),
                } => create::source_bucket(cluster, ns, a).await?,
                CreateCommand::Kustomization(a) => create::kustomization(cluster, ns, a).await?,
                CreateCommand::Helmrelease(a) => create::helm_release(cluster, ns, a).await?,
                CreateCommand::AlertProvider(a) => create::alert_provider(cluster, ns, a).await?,
                CreateCommand::Alert(a) => create::alert(cluster, ns, a).await?,
                CreateCommand::Receiver(a) => create::receiver(cluster, ns, a).await?,
                CreateCommand::Image {
                    what: CreateImage::Repository(a),
                } => create::image_repository(cluster, ns, a).await?,
                CreateCommand::Image {
                    what: CreateImage::Policy(a),
                } => create::image_policy(cluster, ns, a).await?,
                CreateCommand::Image {
                    what: CreateImage::Update(a),
                } => create::image_update(cluster, ns, a).await?,
                CreateCommand::Secret {
                    what: CreateSecret::Git(a),
                } => create::secret_git(cluster, ns, a).await?,
                CreateCommand::Secret {
                    what: CreateSecret::Oci(a),
                } => create::secret_oci(cluster, ns, a).await?,
                CreateCommand::Secret {
                    what: CreateSecret::Tls(a),
                } => create::secret_tls(cluster, ns, a).await?,
            }
        }
        Command::Build {
            what: BuildCommand::Kustomization(args),
        } => {
            let cluster = if args.dry_run {
                None
            } else {
                Some(connect().await?)
            };
            build::build(cluster.as_ref(), &global.namespace, &args).await?
        }
        Command::Diff {
            what: BuildCommand::Kustomization(args),
        } => {
            if build::diff(&connect().await?, &args).await? {
                // As flux: exit code 1 when the cluster differs.
                std::process::exit(1);
            }
        }
        Command::Tree {
            what: TreeCommand::Kustomization { name, compact },
        } => show::tree(&connect().await?, &name, compact).await?,
        Command::Events {
            for_object,
            all_namespaces,
        } => show::events(&connect().await?, for_object.as_deref(), all_namespaces).await?,
        Command::Push {
            what: PushCommand::Artifact(args),
        } => push_artifact(args).await?,
        Command::Kustomize {
            what: KustomizeCommand::Build { dir, load_restrictor },
        } => {
            let restrictor = match load_restrictor.as_str() {
                "LoadRestrictionsNone" => driftless_kustomize::LoadRestrictor::None,
                _ => driftless_kustomize::LoadRestrictor::RootOnly,
            };
            // Remote bases and files are fetched, as kubectl kustomize does.
            let fetcher = driftless_build::remote::Fetcher::default();
            let objects = tokio::task::spawn_blocking(move || {
                driftless_kustomize::build_with_remote(&dir, None, restrictor, &fetcher)
            })
            .await??;
            print!("{}", driftless_kustomize::to_yaml_stream(&objects));
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "driftless", &mut std::io::stdout())
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    driftless_artifact::install_crypto_provider();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("✗ {e:#}");
        std::process::exit(1);
    }
}
