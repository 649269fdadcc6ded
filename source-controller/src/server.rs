//! The artifact file server: read-only HTTP over the storage root. Paths that try to leave the
//! root (`/../../etc/passwd`) are answered 404; nothing outside the root is ever opened.

use axum::Router;
use std::{net::SocketAddr, path::PathBuf};
use tower_http::services::ServeDir;

/// Serves `root` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    root: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, root, shutdown).await
}

/// Serves `root` on an already bound listener.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // ServeDir rejects `..` segments and absolute components before touching the disk, and does
    // not list directories.
    let app = Router::new().fallback_service(ServeDir::new(root).append_index_html_on_directories(false));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
