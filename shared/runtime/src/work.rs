//! Blocking work (libgit2, tar, the kustomize build, SOPS, helm processes) run off the async
//! runtime with a deadline, and the deadline itself (`spec.timeout`).

use std::time::Duration;

use crate::duration;

/// How blocking work ended when it did not return: it failed with its own error, took longer
/// than its deadline, or panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocking<E> {
    Failed(E),
    TimedOut(Duration),
    Panicked(String),
}

impl<E: std::fmt::Display> std::fmt::Display for Blocking<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocking::Failed(e) => e.fmt(f),
            Blocking::TimedOut(after) => write!(
                f,
                "timed out after {} waiting for the operation",
                duration::format(*after)
            ),
            Blocking::Panicked(why) => write!(f, "operation failed: {why}"),
        }
    }
}

/// Runs `work` on the blocking pool, giving up after `timeout` plus a 2 s grace period (the
/// work itself is bounded by the same timeout where it can be, e.g. libgit2's socket timeouts).
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Blocking<E>> {
    match tokio::time::timeout(
        timeout + Duration::from_secs(2),
        tokio::task::spawn_blocking(work),
    )
    .await
    {
        Err(_) => Err(Blocking::TimedOut(timeout)),
        Ok(Err(join)) => Err(Blocking::Panicked(join.to_string())),
        Ok(Ok(result)) => result.map_err(Blocking::Failed),
    }
}

/// A `spec.timeout`, else `fallback` (Flux: sources 60 s, a Kustomization its interval); an
/// unparsable value also falls back (the CRD's pattern refuses those before they get here).
pub fn timeout_of(timeout: Option<&str>, fallback: Duration) -> Duration {
    timeout.and_then(|t| duration::parse(t).ok()).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_work_reports_how_it_ended() {
        let ok: Result<u8, Blocking<String>> = blocking(Duration::from_secs(5), || Ok(7)).await;
        assert_eq!(ok, Ok(7));
        let failed = blocking::<u8, _>(Duration::from_secs(5), || Err("bad".to_string())).await;
        assert_eq!(failed, Err(Blocking::Failed("bad".into())));
        assert_eq!(
            timeout_of(Some("90s"), Duration::from_secs(60)),
            Duration::from_secs(90)
        );
        assert_eq!(timeout_of(None, Duration::from_secs(60)), Duration::from_secs(60));
    }
}
