//! Resolving a GitRepository `ref` against the remote's advertised refs, without cloning, and
//! Flux's revision strings (`main@sha1:<hex>`, `v1.2.0@sha1:<hex>`, `sha1:<hex>`).

use driftless_api::source::GitRepositoryRef;

/// A ref the remote advertises: full name and object id (hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/heads/main`, `refs/tags/v1^{}`.
    pub name: String,
    /// Object id in hex.
    pub oid: String,
}

/// What `ls-remote` told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteRefs {
    /// Advertised refs.
    pub refs: Vec<RemoteRef>,
    /// The branch HEAD points at, if the remote says.
    pub default_branch: Option<String>,
}

/// What to fetch and check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Flux revision string.
    pub revision: String,
    /// Commit to check out.
    pub commit: String,
    /// Refspec to fetch.
    pub refspec: String,
    /// Fetch depth (1 = shallow; 0 = full history, needed to reach an arbitrary commit).
    pub depth: i32,
    /// `(tag name, tag object id)` when the ref is an annotated tag (for tag verification).
    pub tag_object: Option<(String, String)>,
}

/// Why a ref cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The ref does not exist on the remote.
    #[error("couldn't find remote ref '{0}'")]
    NotFound(String),
    /// No tag satisfies the range.
    #[error("no match found for semver: {0}")]
    NoSemverMatch(String),
    /// The semver range does not parse.
    #[error("improper constraint: {0}")]
    InvalidSemver(String),
    /// The commit is not a SHA-1.
    #[error("invalid commit '{0}': expected a 40 character SHA-1")]
    InvalidCommit(String),
}

impl RemoteRefs {
    fn oid(&self, name: &str) -> Option<&str> {
        self.refs.iter().find(|r| r.name == name).map(|r| r.oid.as_str())
    }

    /// The commit a tag points at (peeled when annotated).
    fn tag_commit(&self, tag: &str) -> Option<&str> {
        self.oid(&format!("refs/tags/{tag}^{{}}"))
            .or_else(|| self.oid(&format!("refs/tags/{tag}")))
    }

    /// The tag object of an annotated tag (None for a lightweight tag).
    fn tag_object(&self, tag: &str) -> Option<(String, String)> {
        self.oid(&format!("refs/tags/{tag}^{{}}"))?;
        self.oid(&format!("refs/tags/{tag}"))
            .map(|o| (tag.to_string(), o.to_string()))
    }
}

/// A ref name without its `refs/heads/`, `refs/tags/` or `refs/` prefix.
pub fn short_name(full: &str) -> &str {
    full.strip_prefix("refs/heads/")
        .or_else(|| full.strip_prefix("refs/tags/"))
        .or_else(|| full.strip_prefix("refs/"))
        .unwrap_or(full)
}

/// Resolves `reference` against the advertised refs. Without a branch (no ref at all, or one
/// with nothing set) it is `master`, as Flux's git client checks out, whatever the remote's
/// default branch is: a GitRepository moved from Flux resolves to the same commit.
pub fn resolve(reference: Option<&GitRepositoryRef>, remote: &RemoteRefs) -> Result<Resolved, ResolveError> {
    let r = reference.cloned().unwrap_or_default();
    if let Some(commit) = r.commit.filter(|c| !c.is_empty()) {
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::InvalidCommit(commit));
        }
        let commit = commit.to_lowercase();
        return Ok(match r.branch.filter(|b| !b.is_empty()) {
            Some(branch) => Resolved {
                revision: format!("{branch}@sha1:{commit}"),
                refspec: format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
                commit,
                depth: 0,
                tag_object: None,
            },
            None => Resolved {
                revision: format!("sha1:{commit}"),
                refspec: "+refs/heads/*:refs/remotes/origin/*".into(),
                commit,
                depth: 0,
                tag_object: None,
            },
        });
    }
    if let Some(name) = r.name.filter(|n| !n.is_empty()) {
        let oid = remote
            .oid(&name)
            .ok_or_else(|| ResolveError::NotFound(name.clone()))?;
        let peeled = remote.oid(&format!("{name}^{{}}")).unwrap_or(oid);
        return Ok(Resolved {
            revision: format!("{}@sha1:{peeled}", short_name(&name)),
            commit: peeled.to_string(),
            refspec: format!("+{name}:{name}"),
            depth: 1,
            tag_object: None,
        });
    }
    if let Some(range) = r.semver.filter(|s| !s.is_empty()) {
        let constraints = driftless_semver::Constraints::parse(&range)
            .map_err(|_| ResolveError::InvalidSemver(range.clone()))?;
        let tags = remote
            .refs
            .iter()
            .filter_map(|rr| rr.name.strip_prefix("refs/tags/"))
            .filter(|t| !t.ends_with("^{}"));
        let best = constraints.highest(tags, |t| t);
        let tag = best.ok_or(ResolveError::NoSemverMatch(range))?;
        let commit = remote.tag_commit(tag).unwrap_or_default().to_string();
        return Ok(Resolved {
            revision: format!("{tag}@sha1:{commit}"),
            commit,
            refspec: format!("+refs/tags/{tag}:refs/tags/{tag}"),
            depth: 1,
            tag_object: remote.tag_object(tag),
        });
    }
    if let Some(tag) = r.tag.filter(|t| !t.is_empty()) {
        let commit = remote
            .tag_commit(&tag)
            .ok_or_else(|| ResolveError::NotFound(format!("refs/tags/{tag}")))?;
        return Ok(Resolved {
            revision: format!("{tag}@sha1:{commit}"),
            commit: commit.to_string(),
            refspec: format!("+refs/tags/{tag}:refs/tags/{tag}"),
            depth: 1,
            tag_object: remote.tag_object(&tag),
        });
    }
    let branch = r
        .branch
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "master".into());
    let oid = remote
        .oid(&format!("refs/heads/{branch}"))
        .ok_or_else(|| ResolveError::NotFound(format!("refs/heads/{branch}")))?;
    Ok(Resolved {
        revision: format!("{branch}@sha1:{oid}"),
        commit: oid.to_string(),
        refspec: format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
        depth: 1,
        tag_object: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";
    const T: &str = "4444444444444444444444444444444444444444";

    fn remote() -> RemoteRefs {
        let refs = [
            ("HEAD", A),
            ("refs/heads/main", A),
            ("refs/heads/dev", B),
            ("refs/pull/1/head", C),
            ("refs/tags/v1.0.0", A),
            ("refs/tags/v1.2.0", T),
            ("refs/tags/v1.2.0^{}", B),
            ("refs/tags/v2.0.0-rc.1", C),
            ("refs/tags/not-semver", C),
        ];
        RemoteRefs {
            refs: refs
                .iter()
                .map(|(n, o)| RemoteRef {
                    name: n.to_string(),
                    oid: o.to_string(),
                })
                .collect(),
            default_branch: Some("refs/heads/main".into()),
        }
    }

    fn r(f: impl FnOnce(&mut GitRepositoryRef)) -> GitRepositoryRef {
        let mut x = GitRepositoryRef::default();
        f(&mut x);
        x
    }

    #[test]
    fn revisions_are_formatted_as_flux_does() {
        // No ref is Flux's `master`, not the remote's default branch (main here).
        assert_eq!(
            resolve(None, &remote()).unwrap_err(),
            ResolveError::NotFound("refs/heads/master".into())
        );
        let main = resolve(Some(&r(|x| x.branch = Some("main".into()))), &remote()).unwrap();
        assert_eq!(main.revision, format!("main@sha1:{A}"));
        let dev = resolve(Some(&r(|x| x.branch = Some("dev".into()))), &remote()).unwrap();
        assert_eq!((dev.revision.as_str(), dev.depth), (&*format!("dev@sha1:{B}"), 1));
        // Annotated tags resolve to the peeled commit.
        let tag = resolve(Some(&r(|x| x.tag = Some("v1.2.0".into()))), &remote()).unwrap();
        assert_eq!(tag.revision, format!("v1.2.0@sha1:{B}"));
        assert_eq!(tag.commit, B);
        assert_eq!(tag.tag_object, Some(("v1.2.0".to_string(), T.to_string())));
        let pr = resolve(Some(&r(|x| x.name = Some("refs/pull/1/head".into()))), &remote()).unwrap();
        assert_eq!(pr.revision, format!("pull/1/head@sha1:{C}"));
        let bare = resolve(Some(&r(|x| x.commit = Some(C.into()))), &remote()).unwrap();
        assert_eq!((bare.revision.as_str(), bare.depth), (&*format!("sha1:{C}"), 0));
        let on_branch = resolve(
            Some(&r(|x| {
                x.commit = Some(C.into());
                x.branch = Some("dev".into())
            })),
            &remote(),
        );
        assert_eq!(on_branch.unwrap().revision, format!("dev@sha1:{C}"));
    }

    #[test]
    fn precedence_is_commit_name_semver_tag_branch() {
        let all = r(|x| {
            x.branch = Some("dev".into());
            x.tag = Some("v1.0.0".into());
            x.semver = Some("1.x".into());
        });
        assert!(
            resolve(Some(&all), &remote())
                .unwrap()
                .revision
                .starts_with("v1.2.0@")
        );
    }

    #[test]
    fn semver_picks_the_highest_matching_tag() {
        let pick =
            |range: &str| resolve(Some(&r(|x| x.semver = Some(range.into()))), &remote()).map(|r| r.revision);
        assert!(pick(">=1.0.0 <2.0.0").unwrap().starts_with("v1.2.0@"));
        assert!(pick("~1.0").unwrap().starts_with("v1.0.0@"));
        assert!(pick(">= 1.0.0, < 1.1.0 || >=9").unwrap().starts_with("v1.0.0@"));
        assert_eq!(
            pick("5.x").unwrap_err(),
            ResolveError::NoSemverMatch("5.x".into())
        );
        assert!(matches!(pick("not a range"), Err(ResolveError::InvalidSemver(_))));
    }

    #[test]
    fn missing_refs_are_named() {
        let e = resolve(Some(&r(|x| x.branch = Some("nope".into()))), &remote()).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find remote ref 'refs/heads/nope'");
        let e = resolve(Some(&r(|x| x.tag = Some("v9".into()))), &remote()).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find remote ref 'refs/tags/v9'");
        assert!(matches!(
            resolve(Some(&r(|x| x.commit = Some("abc".into()))), &remote()),
            Err(ResolveError::InvalidCommit(_))
        ));
    }
}
