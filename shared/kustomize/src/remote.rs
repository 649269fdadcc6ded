//! Remote resources: git repositories (`github.com/org/repo//path?ref=v1`,
//! `https://host/org/repo.git//path`, `ssh://git@host/repo.git//path`, `git@host:org/repo`)
//! and files named by an http(s) URL. The engine reads no network itself: it parses the URL as
//! kustomize does and asks the [`Remote`] its caller gave it, if any, for a local copy.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// What fetches remote resources for a build; without one, they are refused.
pub trait Remote: Sync {
    /// A checkout of the repository at `spec.reference` (the default branch when empty); the
    /// directory lives at least as long as the build.
    fn checkout(&self, spec: &RepoSpec) -> Result<PathBuf, Error>;

    /// The bytes of a file named by an http(s) URL.
    fn download(&self, url: &str) -> Result<Vec<u8>, Error>;
}

/// A remote base, as kustomize's `RepoSpec` reads its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// What to clone: scheme, user, host and repository path.
    pub clone_url: String,
    /// The kustomization's directory inside the repository.
    pub path: String,
    /// `ref` (or the older `version`) query: a branch, a tag or a commit.
    pub reference: String,
    pub submodules: bool,
    pub timeout: Duration,
}

/// `url` with the secret of its user info replaced by `***`: the password of
/// `https://user:token@host/…`, or the whole of `https://token@host/…` (a token alone is a
/// secret too). URLs end up in error messages and status conditions.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}://{shown}@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

/// The longest a clone may take, whatever the URL's `timeout` asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A file kustomize downloads rather than clones: an http(s) URL.
pub fn is_remote_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// kustomize's `NewRepoSpecFromURL`: None when `url` is not a repository URL (it is then a local
/// path).
pub fn parse(url: &str) -> Option<Result<RepoSpec, Error>> {
    if url.starts_with('/') {
        return None;
    }
    let (rest, query) = url.split_once('?').unwrap_or((url, ""));
    let (reference, timeout, submodules) = parse_query(query);
    let (host, rest) = match host_of(rest) {
        Some(Ok(found)) => found,
        Some(Err(e)) => return Some(Err(e)),
        None => return None,
    };
    let segments = if host.starts_with("file://") {
        None
    } else {
        Some(2)
    };
    Some(path_parts(&rest, segments).map(|(repo, path)| RepoSpec {
        clone_url: format!("{host}{repo}"),
        path,
        reference,
        submodules,
        timeout,
    }))
}

fn parse_query(query: &str) -> (String, Duration, bool) {
    let mut reference = String::new();
    let mut version = String::new();
    let mut timeout = Duration::from_secs(27);
    let mut submodules = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ref" if reference.is_empty() => reference = value.to_string(),
            "version" if version.is_empty() => version = value.to_string(),
            "timeout" => {
                if let Ok(seconds) = value.parse::<u64>().map(Duration::from_secs) {
                    if !seconds.is_zero() {
                        timeout = seconds;
                    }
                } else if let Some(seconds) = value.strip_suffix('s').and_then(|s| s.parse::<u64>().ok()) {
                    timeout = Duration::from_secs(seconds.max(1));
                }
            }
            "submodules" => {
                submodules = match value {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => submodules,
                }
            }
            _ => {}
        }
    }
    if reference.is_empty() {
        reference = version;
    }
    (reference, timeout.min(MAX_TIMEOUT), submodules)
}

/// The scheme, user and host (`https://github.com/`, `git@github.com:`), and the rest.
fn host_of(url: &str) -> Option<Result<(String, String), Error>> {
    let url = strip_prefix_ignore_case(url, "git::").unwrap_or(url);
    let (scheme, rest) = ["ssh://", "https://", "http://", "file://"]
        .iter()
        .find_map(|s| strip_prefix_ignore_case(url, s).map(|rest| (*s, rest)))
        .unwrap_or(("", url));
    let user_end = rest
        .find('@')
        .filter(|&i| {
            let user = &rest[..i];
            user.starts_with(|c: char| c.is_ascii_alphabetic())
                && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(|i| i + 1)
        .unwrap_or(0);
    let (user, rest) = rest.split_at(user_end);
    let lower = rest.to_ascii_lowercase();
    let github = lower.starts_with("github.com/") || lower.starts_with("github.com:");
    let scp = scheme.is_empty() && (!user.is_empty() || github);
    if scheme.is_empty() && !scp {
        // Not a URL kustomize clones: a local path.
        return None;
    }
    if scheme == "file://" {
        return Some(Ok((scheme.to_string(), format!("{user}{rest}"))));
    }
    let slash = rest.find('/');
    let separator = match (scp, rest.find(':')) {
        (true, Some(colon)) if colon > 0 && slash.is_none_or(|s| colon < s) => Some(colon),
        _ => slash,
    };
    let (mut host, path) = match separator {
        Some(i) => (rest[..=i].to_string(), rest[i + 1..].to_string()),
        None => (rest.to_string(), String::new()),
    };
    let (mut scheme, mut user) = (scheme.to_string(), user.to_string());
    if github {
        if scheme.starts_with("ssh://") || !user.is_empty() {
            scheme.clear();
            host = "github.com:".into();
        } else {
            scheme = "https://".into();
            user.clear();
            host = "github.com/".into();
        }
    }
    if host.is_empty() {
        return Some(Err(Error::new(format!(
            "failed to parse host segment of '{url}'"
        ))));
    }
    Some(Ok((format!("{scheme}{user}{host}"), path)))
}

/// The repository path and the directory inside it: after `_git/<repo>`, at `//`, after `.git`,
/// or else after `segments` path segments (org/repo).
fn path_parts(rest: &str, segments: Option<usize>) -> Result<(String, String), Error> {
    let (repo, path) = if let Some(i) = rest.find("_git/") {
        let after = &rest[i + "_git/".len()..];
        let (name, sub) = after.split_once('/').unwrap_or((after, ""));
        (format!("{}{name}", &rest[..i + "_git/".len()]), sub.to_string())
    } else if let Some(i) = rest.find("//") {
        (rest[..i].to_string(), rest[i + 2..].to_string())
    } else if let Some(i) = rest.find(".git") {
        (rest[..i + 4].to_string(), rest[i + 4..].to_string())
    } else if let Some(n) = segments {
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < n {
            return Err(Error::new(format!(
                "failed to parse repo path segment of '{rest}'"
            )));
        }
        (parts[..n].join("/"), parts[n..].join("/"))
    } else {
        (rest.to_string(), String::new())
    };
    if repo.is_empty() {
        return Err(Error::new(format!(
            "failed to parse repo path segment of '{rest}'"
        )));
    }
    let path = path.trim_start_matches('/').to_string();
    if crate::origin::join("", &path).starts_with("..") {
        return Err(Error::new(format!("url path exits repo: {rest}")));
    }
    Ok((repo, path))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(url: &str) -> (String, String, String) {
        let s = parse(url).unwrap().unwrap();
        (s.clone_url, s.path, s.reference)
    }

    #[test]
    fn urls_parse_as_kustomize_reads_them() {
        // URL → (what is cloned, directory in it, ref).
        let cases = [
            (
                "github.com/org/repo//deploy/base?ref=v1.2",
                "https://github.com/org/repo",
                "deploy/base",
                "v1.2",
            ),
            (
                "github.com/org/repo/deploy",
                "https://github.com/org/repo",
                "deploy",
                "",
            ),
            (
                "https://host.example/org/repo.git//app?ref=main&timeout=90",
                "https://host.example/org/repo.git",
                "app",
                "main",
            ),
            (
                "http://127.0.0.1:8080/base.git/app?version=v2",
                "http://127.0.0.1:8080/base.git",
                "app",
                "v2",
            ),
            (
                "ssh://git@127.0.0.1:2222/srv/repo.git//app",
                "ssh://git@127.0.0.1:2222/srv/repo.git",
                "app",
                "",
            ),
            (
                "git@github.com:org/repo.git/app?ref=x",
                "git@github.com:org/repo.git",
                "app",
                "x",
            ),
            (
                "https://dev.azure.com/org/project/_git/repo/path/to?ref=y",
                "https://dev.azure.com/org/project/_git/repo",
                "path/to",
                "y",
            ),
        ];
        for (url, clone_url, path, reference) in cases {
            let expected = (clone_url.to_string(), path.to_string(), reference.to_string());
            assert_eq!(spec(url), expected, "{url}");
        }
        assert_eq!(
            redacted("git::https://user:s3cret@host/r.git//app?ref=v1"),
            "git::https://user:***@host/r.git//app?ref=v1"
        );
        assert_eq!(
            redacted("https://ghp_token@github.com/o/r//app"),
            "https://***@github.com/o/r//app"
        );
        let long = parse("https://h/r.git?timeout=99999999999").unwrap().unwrap();
        assert_eq!(long.timeout, MAX_TIMEOUT);
        assert!(parse("../base").is_none());
        assert!(parse("gitlab.com/org/repo").is_none());
        assert!(parse("github.com/org/repo//../../etc").unwrap().is_err());
        let s = parse("https://h/r.git?timeout=5&submodules=false")
            .unwrap()
            .unwrap();
        assert_eq!((s.timeout, s.submodules), (Duration::from_secs(5), false));
    }
}
