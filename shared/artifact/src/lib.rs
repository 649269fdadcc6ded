//! The artifact contract between source-controller (the producer) and its consumers.
//!
//! * [`archive`]: deterministic tar.gz of a directory — sorted entries, zeroed times and owners,
//!   normalised modes — so the same content always has the same [`digest`].
//! * [`extract`]: safe extraction — no `..`, no absolute paths, no symlink that escapes the
//!   target, no device files, a size cap.
//! * [`fetch`]: the consumer client — download with retries and a size limit, verify the digest
//!   before extracting, stream to disk instead of buffering in memory; a 404 is its own error
//!   so callers can *wait* rather than fail.
//! * [`oci`] (feature `oci`): Flux's OCI artifact layout — push a directory as
//!   `flux push artifact` does, and registry credentials from a docker config Secret.
//! * [`registry`] (feature `oci`): the pull client OCIRepository uses — tags, manifest digests,
//!   manifests and verified blobs, with token/basic auth and TLS client certificates.
//! * [`access`] (feature `kube`): that client built from a kind's registry settings and Secrets.
//! * [`storage`] and [`server`] (feature `storage`): the producer side — artifacts stored with
//!   retention under `<kind>/<namespace>/<name>/` and served read-only over HTTP, the same for
//!   source-controller and source-watcher.

#[cfg(feature = "kube")]
pub mod access;
pub mod archive;
pub mod digest;
pub mod extract;
pub mod fetch;
pub mod http;
#[cfg(feature = "oci")]
pub mod oci;
#[cfg(feature = "oci")]
pub mod registry;
#[cfg(feature = "storage")]
pub mod server;
#[cfg(feature = "storage")]
pub mod storage;

/// Makes ring the process-wide TLS crypto provider (kube uses ring too), once. HTTP clients are
/// built with rustls but no provider of their own, so exactly one provider is compiled in.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
