//! The consumer side: download an artifact, verify its digest, then extract it.
//!
//! 5xx answers and connection failures are retried with backoff; a 404 is
//! [`FetchError::NotFound`], which callers treat as *waiting* (source-controller may have
//! restarted or garbage-collected an old revision), not as a failure. The body streams to a
//! temporary file while it is hashed; nothing is extracted unless the digest matches.

use crate::{digest, extract};
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use std::{io::Write, path::Path, time::Duration};

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server has no such artifact (yet, or any more).
    #[error("artifact not found at {0}")]
    NotFound(String),
    /// The downloaded bytes do not have the advertised digest.
    #[error("artifact digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Digest from `status.artifact.digest`.
        expected: String,
        /// Digest of what was downloaded.
        actual: String,
    },
    /// The digest is not `sha256:<hex>`.
    #[error("unsupported artifact digest {0:?}: expected sha256:<hex>")]
    UnsupportedDigest(String),
    /// The download is larger than allowed.
    #[error("artifact is larger than the {0} bytes allowed")]
    TooLarge(u64),
    /// The server kept failing.
    #[error("failed to download artifact from {url}: {reason}")]
    Download {
        /// The artifact URL.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// The archive is unsafe or broken.
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    /// Local I/O failed.
    #[error("artifact download: {0}")]
    Io(#[from] std::io::Error),
}

/// Downloads and extracts artifacts.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    retries: u32,
    max_download_size: u64,
    max_extracted_size: u64,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::with_retries(9)
    }
}

/// How one download attempt failed.
enum Attempt {
    /// The server failed or the transfer broke: worth another try.
    Retry(String),
    /// Final: not found, refused, too large, or the digest cannot match.
    Fail(FetchError),
}

impl Fetcher {
    /// A fetcher with `retries` retries (Flux's `--http-retry`) and the default size caps.
    pub fn with_retries(retries: u32) -> Self {
        Self::new(retries, 2 << 30, 8 << 30)
    }

    /// A fetcher with `retries` retries (Flux: `--http-retry`, default 9) and size caps.
    pub fn new(retries: u32, max_download_size: u64, max_extracted_size: u64) -> Self {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_default();
        Self {
            client,
            retries,
            max_download_size,
            max_extracted_size,
        }
    }

    /// Rewrites the URL host for local development, as Flux does with
    /// `SOURCE_CONTROLLER_LOCALHOST` (e.g. `localhost:9090`).
    pub fn effective_url(url: &str) -> String {
        match std::env::var("SOURCE_CONTROLLER_LOCALHOST") {
            Ok(host) if !host.is_empty() => match url.split_once("://") {
                Some((scheme, rest)) => {
                    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
                    format!("{scheme}://{host}{path}")
                }
                None => url.to_string(),
            },
            _ => url.to_string(),
        }
    }

    /// Downloads `url`, verifies it has `expected_digest`, and extracts it into `dest`.
    pub async fn fetch(&self, url: &str, expected_digest: &str, dest: &Path) -> Result<(), FetchError> {
        if !expected_digest.starts_with(digest::SHA256_PREFIX) {
            return Err(FetchError::UnsupportedDigest(expected_digest.to_string()));
        }
        let url = Self::effective_url(url);
        let tmp = tempfile::NamedTempFile::new()?;
        let actual = self.download(&url, tmp.as_file()).await?;
        if actual != expected_digest {
            return Err(FetchError::DigestMismatch {
                expected: expected_digest.to_string(),
                actual,
            });
        }
        let file = tmp.reopen()?;
        let dest = dest.to_path_buf();
        let max = self.max_extracted_size;
        tokio::task::spawn_blocking(move || {
            extract::extract_tar_gz(std::io::BufReader::new(file), &dest, max)
        })
        .await
        .map_err(|e| FetchError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// Streams `url` into `out`, retrying server errors and broken transfers `retries` times
    /// with exponential backoff (250 ms doubling up to 10 s); returns the digest of what was
    /// written.
    async fn download(&self, url: &str, out: &std::fs::File) -> Result<String, FetchError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.retries as usize);
        let attempt = || self.download_once(url, out);
        attempt
            .retry(backoff)
            .when(|e| matches!(e, Attempt::Retry(_)))
            .notify(|e, after| {
                if let Attempt::Retry(failure) = e {
                    tracing::debug!(url, %failure, ?after, "retrying artifact download");
                }
            })
            .await
            .map_err(|e| match e {
                Attempt::Retry(reason) => FetchError::Download {
                    url: url.to_string(),
                    reason,
                },
                Attempt::Fail(e) => e,
            })
    }

    /// One download attempt: a failure worth retrying, or one that is final.
    async fn download_once(&self, url: &str, out: &std::fs::File) -> Result<String, Attempt> {
        match self.client.get(url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                Err(Attempt::Fail(FetchError::NotFound(url.to_string())))
            }
            Ok(resp) if resp.status().is_success() => match self.stream_to(resp, out).await {
                Ok(digest) => Ok(digest),
                Err(FetchError::Download { reason, .. }) => Err(Attempt::Retry(reason)),
                Err(e) => Err(Attempt::Fail(e)),
            },
            Ok(resp) if resp.status().is_server_error() => {
                Err(Attempt::Retry(format!("server answered {}", resp.status())))
            }
            Ok(resp) => Err(Attempt::Fail(FetchError::Download {
                url: url.to_string(),
                reason: format!("server answered {}", resp.status()),
            })),
            Err(e) => Err(Attempt::Retry(e.to_string())),
        }
    }

    async fn stream_to(&self, resp: reqwest::Response, out: &std::fs::File) -> Result<String, FetchError> {
        if resp.content_length().is_some_and(|n| n > self.max_download_size) {
            return Err(FetchError::TooLarge(self.max_download_size));
        }
        out.set_len(0)?;
        let mut writer = std::io::BufWriter::new(out.try_clone()?);
        use std::io::Seek;
        writer.get_mut().rewind()?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FetchError::Download {
                url: String::new(),
                reason: e.to_string(),
            })?;
            written += chunk.len() as u64;
            if written > self.max_download_size {
                return Err(FetchError::TooLarge(self.max_download_size));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk)?;
        }
        writer.flush()?;
        Ok(digest::format(hasher))
    }
}
