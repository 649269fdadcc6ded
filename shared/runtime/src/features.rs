//! Flux's feature gates: `--feature-gates=Name=true,Other=false`. Each controller supports its
//! own gates, with Flux's defaults; a gate it does not know is an error at start, as in Flux.

use std::collections::BTreeMap;

/// Every controller's gate from fluxcd/pkg's auth package (opt-in since Flux 2.6).
pub const OBJECT_LEVEL_WORKLOAD_IDENTITY: (&str, bool) = ("ObjectLevelWorkloadIdentity", false);

/// The gate of the controllers that read sources: kustomize- and helm-controller then read them
/// from the apiserver instead of their watch of them ([`crate::sources::SourceCache::new`]);
/// source-watcher always reads the apiserver.
pub const DIRECT_SOURCE_FETCH: (&str, bool) = ("DirectSourceFetch", false);

/// The gates in force.
#[derive(Clone, Debug, Default)]
pub struct FeatureGates {
    enabled: BTreeMap<String, bool>,
}

impl FeatureGates {
    /// The controller's `supported` gates and their defaults, overridden by `flag`
    /// (Kubernetes' `key=value,…` map, values as Go's `strconv.ParseBool` reads them).
    pub fn parse(flag: &str, supported: &[(&str, bool)]) -> Result<FeatureGates, String> {
        let mut enabled: BTreeMap<String, bool> =
            supported.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        for pair in flag.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("malformed pair, expect string=bool: {pair}"))?;
            let value = match value.trim() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                other => return Err(format!("invalid value of {key}: {other}, err: invalid syntax")),
            };
            match enabled.get_mut(key.trim()) {
                Some(gate) => *gate = value,
                None => return Err(format!("feature-gate '{}' not supported", key.trim())),
            }
        }
        Ok(FeatureGates { enabled })
    }

    /// Whether `gate` is on (false for a gate the controller does not have).
    pub fn enabled(&self, gate: &str) -> bool {
        self.enabled.get(gate).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATES: &[(&str, bool)] = &[("StrictPostBuildSubstitutions", true), ("GroupChangeLog", false)];

    #[test]
    fn gates_have_flux_defaults_and_unknown_ones_are_refused() {
        let defaults = FeatureGates::parse("", GATES).unwrap_or_default();
        assert!(defaults.enabled("StrictPostBuildSubstitutions") && !defaults.enabled("GroupChangeLog"));
        let set = FeatureGates::parse("StrictPostBuildSubstitutions=false, GroupChangeLog=true", GATES)
            .unwrap_or_default();
        assert!(!set.enabled("StrictPostBuildSubstitutions") && set.enabled("GroupChangeLog"));
        assert_eq!(
            FeatureGates::parse("NoSuchGate=true", GATES).unwrap_err(),
            "feature-gate 'NoSuchGate' not supported"
        );
        assert!(FeatureGates::parse("GroupChangeLog=maybe", GATES).is_err());
    }
}
