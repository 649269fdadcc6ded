//! The artifact file server: read-only HTTP over the storage root. Paths that try to leave the
//! root (`/../../etc/passwd`) are answered 404; nothing outside the root is ever opened.

use axum::Router;
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tower_http::services::ServeDir;

use crate::storage::Storage;

/// Artifact storage in a temporary directory, served on a free loopback port.
pub struct TemporaryStorage {
    pub storage: Arc<Storage>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// Storage in a new temporary directory (TTL 60 s, 2 records), served on 127.0.0.1 until
/// `shutdown` resolves: for running source-controller in-process (the integration tests).
pub async fn serve_temporary(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<TemporaryStorage> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let storage = Arc::new(Storage::new(
        dir.path().to_path_buf(),
        &addr.to_string(),
        Duration::from_secs(60),
        2,
    )?);
    tokio::spawn(serve_on(listener, dir.path().to_path_buf(), shutdown));
    Ok(TemporaryStorage { storage, dir, addr })
}

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
