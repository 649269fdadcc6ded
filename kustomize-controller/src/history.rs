//! `status.history`: the last reconciliations, as Flux's `meta.History` keeps them: newest
//! first, at most five, one entry per (digest, status) pair.

use std::collections::BTreeMap;
use std::time::Duration;

use driftless_api::meta::Snapshot;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How many snapshots are kept.
pub const MAX_SNAPSHOTS: usize = 5;

/// The digest of a build: sha256 of its YAML stream.
pub fn digest(objects: &[Value]) -> String {
    let stream = driftless_kustomize::to_yaml_stream(objects);
    format!("sha256:{}", hex::encode(Sha256::digest(stream.as_bytes())))
}

/// Records a reconciliation of `digest` that ended with `status` (a Ready reason).
pub fn upsert(
    history: &mut Vec<Snapshot>,
    digest: &str,
    status: &str,
    duration: Duration,
    metadata: BTreeMap<String, String>,
    now: Time,
) {
    let duration = driftless_runtime::duration::format(duration);
    let metadata = (!metadata.is_empty()).then_some(metadata);
    match history
        .iter()
        .position(|s| s.digest == digest && s.last_reconciled_status == status)
    {
        Some(index) => {
            let mut snapshot = history.remove(index);
            snapshot.last_reconciled = now;
            snapshot.last_reconciled_duration = duration;
            snapshot.total_reconciliations += 1;
            snapshot.metadata = metadata;
            history.insert(0, snapshot);
        }
        None => history.insert(
            0,
            Snapshot {
                digest: digest.to_string(),
                first_reconciled: now.clone(),
                last_reconciled: now,
                last_reconciled_duration: duration,
                last_reconciled_status: status.to_string(),
                total_reconciliations: 1,
                metadata,
            },
        ),
    }
    history.truncate(MAX_SNAPSHOTS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap_or_default())
    }

    #[test]
    fn newest_first_deduplicated_and_bounded() {
        let mut history = Vec::new();
        let meta = BTreeMap::from([("revision".to_string(), "main@sha1:a".to_string())]);
        upsert(
            &mut history,
            "sha256:a",
            "ReconciliationSucceeded",
            Duration::from_secs(1),
            meta.clone(),
            at(1),
        );
        upsert(
            &mut history,
            "sha256:a",
            "ReconciliationSucceeded",
            Duration::from_secs(2),
            meta.clone(),
            at(2),
        );
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].total_reconciliations, 2);
        assert_eq!(history[0].first_reconciled, at(1));
        assert_eq!(history[0].last_reconciled, at(2));
        assert_eq!(history[0].last_reconciled_duration, "2s");
        upsert(
            &mut history,
            "sha256:b",
            "HealthCheckFailed",
            Duration::ZERO,
            BTreeMap::new(),
            at(3),
        );
        upsert(
            &mut history,
            "sha256:a",
            "ReconciliationSucceeded",
            Duration::ZERO,
            meta.clone(),
            at(4),
        );
        assert_eq!(
            history.iter().map(|s| s.digest.as_str()).collect::<Vec<_>>(),
            ["sha256:a", "sha256:b"]
        );
        assert_eq!(history[0].total_reconciliations, 3);
        for i in 0..10 {
            upsert(
                &mut history,
                &format!("sha256:{i}"),
                "ReconciliationSucceeded",
                Duration::ZERO,
                BTreeMap::new(),
                at(10 + i),
            );
        }
        assert_eq!(history.len(), MAX_SNAPSHOTS);
        assert_eq!(history[0].digest, "sha256:9");
    }
}
