use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Helm runs this same binary as its post-renderer.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("post-render") {
        return helm_controller::post_render::main(&args[2..]);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(helm_controller::run(helm_controller::Args::parse()))
}
