use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    image_reflector_controller::run(image_reflector_controller::Args::parse()).await
}
