//! The observed-object digest cache that lets a no-op apply skip the second read.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::object::comparable;

/// What the controller last saw of the objects it applies: per object (by uid), the
/// resourceVersion and a digest of its comparable form. When the dry-run of an apply reports
/// the resourceVersion seen last and the same digest, the object is unchanged without reading
/// it again: a no-op reconcile costs one request per object (Flux reads each object too).
#[derive(Default)]
pub struct Observed {
    seen: Mutex<HashMap<u64, (u64, u64)>>,
}

/// Entries kept at most; beyond this the map starts over (objects deleted by others leave
/// entries behind, and a miss only costs one read).
const OBSERVED_LIMIT: usize = 200_000;

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The uid and resourceVersion of an object that exists (a dry-run create has no
/// resourceVersion).
pub(crate) fn identity(object: &Value) -> Option<(u64, u64)> {
    let uid = object.pointer("/metadata/uid")?.as_str()?;
    let version = object.pointer("/metadata/resourceVersion")?.as_str()?;
    (!version.is_empty()).then(|| (digest(uid.as_bytes()), digest(version.as_bytes())))
}

fn comparable_digest(object: &Value) -> u64 {
    digest(&serde_json::to_vec(&comparable(object)).unwrap_or_default())
}

impl Observed {
    /// Remembers a live object as read or written.
    pub fn record(&self, object: &Value) {
        let Some((uid, version)) = identity(object) else {
            return;
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= OBSERVED_LIMIT {
                seen.clear();
            }
            seen.insert(uid, (version, comparable_digest(object)));
        }
    }

    /// Whether the dry-run result of an apply equals the live object, when the live object is
    /// the one seen last; None when it is not known.
    pub(crate) fn unchanged(&self, dry_run: &Value) -> Option<bool> {
        let (uid, version) = identity(dry_run)?;
        let (seen_version, seen_digest) = *self.seen.lock().ok()?.get(&uid)?;
        (seen_version == version).then(|| seen_digest == comparable_digest(dry_run))
    }
}
