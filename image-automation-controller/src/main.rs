use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    image_automation_controller::run(image_automation_controller::Args::parse()).await
}
