use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    helm_controller::run(helm_controller::Args::parse()).await
}
