use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    source_watcher::run(source_watcher::Args::parse()).await
}
