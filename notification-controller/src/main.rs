use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    notification_controller::run(notification_controller::Args::parse()).await
}
