//! The `driftless` command line. Commands follow the `flux` CLI; this build has `version`
//! (install, bootstrap, get, reconcile … arrive with issue 6).

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
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
    }
    Ok(())
}
