//! Logging setup: Flux's `--log-level` and `--log-encoding` on tracing-subscriber.

use crate::args::{CommonArgs, LogEncoding};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `--log-level`.
pub fn init(args: &CommonArgs) {
    let level = match args.log_level.as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "error" => "error",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},kube_runtime=warn,kube_client=warn,driftless_runtime::apiserver=warn,hyper=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match args.log_encoding {
        LogEncoding::Json => builder.json().flatten_event(true).try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}
