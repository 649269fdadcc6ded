//! The toolkit kinds as the CLI names them (`source git`, `kustomization`, …), one table for
//! every command that takes a kind.

use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::Value;

/// One toolkit kind.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    /// How commands name it after the verb, e.g. `source git`.
    pub cli: &'static str,
    /// Has `spec.suspend`.
    pub suspendable: bool,
    /// Has status conditions (v1beta3 Alerts and Providers have none).
    pub has_status: bool,
    /// A column shown by `get` before SUSPENDED/READY, with the JSON pointer it reads.
    pub column: Option<(&'static str, &'static str)>,
}

const fn kind(
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    cli: &'static str,
) -> KindInfo {
    KindInfo {
        kind,
        group,
        version,
        plural,
        cli,
        suspendable: true,
        has_status: true,
        column: Some(("REVISION", "/status/artifact/revision")),
    }
}

const SOURCE: &str = "source.toolkit.fluxcd.io";
pub const GIT_REPOSITORY: KindInfo = kind("GitRepository", SOURCE, "v1", "gitrepositories", "source git");
pub const OCI_REPOSITORY: KindInfo = kind("OCIRepository", SOURCE, "v1", "ocirepositories", "source oci");
pub const HELM_REPOSITORY: KindInfo = kind("HelmRepository", SOURCE, "v1", "helmrepositories", "source helm");
pub const HELM_CHART: KindInfo = kind("HelmChart", SOURCE, "v1", "helmcharts", "source chart");
pub const BUCKET: KindInfo = kind("Bucket", SOURCE, "v1", "buckets", "source bucket");
pub const EXTERNAL_ARTIFACT: KindInfo = KindInfo {
    suspendable: false,
    ..kind(
        "ExternalArtifact",
        SOURCE,
        "v1",
        "externalartifacts",
        "source external",
    )
};
pub const KUSTOMIZATION: KindInfo = KindInfo {
    column: Some(("REVISION", "/status/lastAppliedRevision")),
    ..kind(
        "Kustomization",
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        "kustomization",
    )
};
pub const HELM_RELEASE: KindInfo = KindInfo {
    column: Some(("REVISION", "/status/lastAttemptedRevision")),
    ..kind(
        "HelmRelease",
        "helm.toolkit.fluxcd.io",
        "v2",
        "helmreleases",
        "helmrelease",
    )
};
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";
pub const ALERT: KindInfo = KindInfo {
    has_status: false,
    column: None,
    ..kind("Alert", NOTIFICATION, "v1beta3", "alerts", "alert")
};
pub const PROVIDER: KindInfo = KindInfo {
    has_status: false,
    column: None,
    ..kind("Provider", NOTIFICATION, "v1beta3", "providers", "alert-provider")
};
pub const RECEIVER: KindInfo = KindInfo {
    column: None,
    ..kind("Receiver", NOTIFICATION, "v1", "receivers", "receiver")
};
const IMAGE: &str = "image.toolkit.fluxcd.io";
pub const IMAGE_REPOSITORY: KindInfo = KindInfo {
    column: Some(("LAST SCAN", "/status/lastScanResult/scanTime")),
    ..kind(
        "ImageRepository",
        IMAGE,
        "v1",
        "imagerepositories",
        "image repository",
    )
};
pub const IMAGE_POLICY: KindInfo = KindInfo {
    suspendable: false,
    column: Some(("LATEST IMAGE", "/status/latestRef/tag")),
    ..kind("ImagePolicy", IMAGE, "v1", "imagepolicies", "image policy")
};
pub const IMAGE_UPDATE: KindInfo = KindInfo {
    column: Some(("LAST RUN", "/status/lastAutomationRunTime")),
    ..kind(
        "ImageUpdateAutomation",
        IMAGE,
        "v1",
        "imageupdateautomations",
        "image update",
    )
};

/// source-watcher's kind (`--components-extra=source-watcher`): no `spec.suspend` (an
/// annotation turns it off), no artifact of its own.
pub const ARTIFACT_GENERATOR: KindInfo = KindInfo {
    suspendable: false,
    column: None,
    ..kind(
        "ArtifactGenerator",
        "source.extensions.fluxcd.io",
        "v1beta1",
        "artifactgenerators",
        "artifact generator",
    )
};

/// Every kind, in the order `get all` prints them.
pub const ALL: &[&KindInfo] = &[
    &GIT_REPOSITORY,
    &OCI_REPOSITORY,
    &HELM_REPOSITORY,
    &HELM_CHART,
    &BUCKET,
    &EXTERNAL_ARTIFACT,
    &KUSTOMIZATION,
    &HELM_RELEASE,
    &ALERT,
    &PROVIDER,
    &RECEIVER,
    &IMAGE_REPOSITORY,
    &IMAGE_POLICY,
    &IMAGE_UPDATE,
];

pub const SOURCES: &[&KindInfo] = &[
    &GIT_REPOSITORY,
    &OCI_REPOSITORY,
    &HELM_REPOSITORY,
    &HELM_CHART,
    &BUCKET,
    &EXTERNAL_ARTIFACT,
];

pub const IMAGES: &[&KindInfo] = &[&IMAGE_REPOSITORY, &IMAGE_POLICY, &IMAGE_UPDATE];

impl KindInfo {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: format!("{}/{}", self.group, self.version),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The API in `namespace`, or across namespaces.
    pub fn api(&self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.api_resource()),
            None => Api::all_with(client.clone(), &self.api_resource()),
        }
    }

    /// The kind named `kind` (e.g. `GitRepository`), as a sourceRef or inventory names it.
    pub fn by_kind(kind: &str) -> Option<&'static KindInfo> {
        ALL.iter().copied().find(|k| k.kind.eq_ignore_ascii_case(kind))
    }

    /// The lower-case word flux uses in messages (`kustomization`, `source git`).
    pub fn noun(&self) -> &'static str {
        self.cli
    }
}

/// A string field of a JSON object, or "".
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The condition of `type_` in `status.conditions`.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Shortens the hashes in a revision or a message (`main@sha1:0123456789abcdef…` →
/// `main@sha1:01234567`) as `flux get` prints them.
pub fn short_revision(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["sha1:", "sha256:", "sha384:", "sha512:", "blake3:"]
        .iter()
        .filter_map(|algo| rest.find(algo).map(|i| (i, algo.len())))
        .min()
    {
        let (start, len) = at;
        let hex_start = start + len;
        let hex_len = rest[hex_start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - hex_start);
        out.push_str(&rest[..hex_start + hex_len.min(8)]);
        rest = &rest[hex_start + hex_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table_matches_the_crds() {
        let crds = driftless_api::all_crds();
        // source-watcher's kind is optional: outside `get all`, but its CRD is there.
        assert_eq!(crds.len(), ALL.len() + 1);
        for k in ALL.iter().copied().chain([&ARTIFACT_GENERATOR]) {
            let crd = crds
                .iter()
                .find(|c| c.spec.names.kind == k.kind)
                .unwrap_or_else(|| panic!("{} has no CRD", k.kind));
            assert_eq!(crd.spec.group, k.group);
            assert_eq!(crd.spec.names.plural, k.plural);
            assert!(crd.spec.versions.iter().any(|v| v.name == k.version && v.served));
        }
    }

    #[test]
    fn revisions_are_shortened() {
        assert_eq!(
            short_revision("main@sha1:0123456789abcdef0123456789abcdef01234567"),
            "main@sha1:01234567"
        );
        assert_eq!(short_revision("sha256:abcdef0123456789"), "sha256:abcdef01");
        assert_eq!(short_revision("6.1.0"), "6.1.0");
        assert_eq!(
            short_revision("Applied revision: main@sha1:0123456789abcdef0123456789abcdef01234567, ok"),
            "Applied revision: main@sha1:01234567, ok"
        );
    }
}
