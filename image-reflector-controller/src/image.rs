//! Image names as Flux reads them (go-containerregistry's rules): validation of
//! `ImageRepository.spec.image` and the canonical name (`alpine` → `index.docker.io/library/alpine`).

/// Docker Hub's registry name in canonical image names.
const DOCKER_HUB: &str = "index.docker.io";

/// A validated image repository name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageName {
    /// The registry host (and port), `index.docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path inside the registry.
    pub repository: String,
}

impl ImageName {
    /// Parses `spec.image`; the error is the ImageURLInvalid message.
    pub fn parse(image: &str) -> Result<Self, String> {
        if let Some((scheme, _)) = image.split_once("://") {
            return Err(format!(
                "image '{image}' should not include URL scheme; remove '{scheme}://'"
            ));
        }
        let (first, rest) = image.split_once('/').unwrap_or(("", image));
        // The first part names a registry only if it looks like a host.
        let (registry, path) = if !first.is_empty() && (first.contains('.') || first.contains(':')) {
            (first.to_string(), rest.to_string())
        } else if first.is_empty() {
            (DOCKER_HUB.to_string(), rest.to_string())
        } else {
            (DOCKER_HUB.to_string(), image.to_string())
        };
        if let Some((_, tag)) = path.split_once(':') {
            return Err(format!(
                "image '{image}' should not include a tag; remove ':{tag}'"
            ));
        }
        let valid_component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        let valid_registry = {
            let (host, port) = registry.split_once(':').unwrap_or((&registry, "0"));
            let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            host.split('.').all(label) && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        };
        if !valid_registry || path.is_empty() || !path.split('/').all(valid_component) {
            return Err(format!("could not parse reference: {image}"));
        }
        let registry = if registry == "docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Self { registry, repository })
    }

    /// `registry/repository`, as `status.canonicalImageName`.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name the registry client is given (`docker.io/…` for Docker Hub).
    pub fn pull_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            format!("docker.io/{}", self.repository)
        } else {
            self.canonical()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_names_follow_go_containerregistry() {
        let c = |i: &str| ImageName::parse(i).unwrap().canonical();
        assert_eq!(c("alpine"), "index.docker.io/library/alpine");
        assert_eq!(c("docker.io/alpine"), "index.docker.io/library/alpine");
        assert_eq!(c("docker.io/library/alpine"), "index.docker.io/library/alpine");
        assert_eq!(c("stefanprodan/podinfo"), "index.docker.io/stefanprodan/podinfo");
        assert_eq!(c("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(c("localhost/app"), "index.docker.io/localhost/app");
        assert_eq!(c("ghcr.io/org/app"), "ghcr.io/org/app");
    }

    #[test]
    fn schemes_tags_and_digests_are_refused() {
        let e = |i: &str| ImageName::parse(i).unwrap_err();
        assert_eq!(
            e("https://ghcr.io/org/app"),
            "image 'https://ghcr.io/org/app' should not include URL scheme; remove 'https://'"
        );
        assert_eq!(
            e("ghcr.io/org/app:1.0"),
            "image 'ghcr.io/org/app:1.0' should not include a tag; remove ':1.0'"
        );
        assert_eq!(
            e("ghcr.io/org/app@sha256:abc"),
            "image 'ghcr.io/org/app@sha256:abc' should not include a tag; remove ':abc'"
        );
        assert!(e("ghcr..io/org/app").starts_with("could not parse reference"));
        assert_eq!(e("ghcr.io/Org/app"), "could not parse reference: ghcr.io/Org/app");
    }
}
