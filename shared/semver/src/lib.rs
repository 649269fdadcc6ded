//! Versions and version constraints as Flux reads them: Masterminds semver v3, which Helm,
//! source-controller (GitRepository `ref.semver`, HelmChart `version`, OCIRepository
//! `ref.semver`) and image-reflector-controller (ImagePolicy `semver.range`) all use.
//!
//! It differs from Cargo's rules (the `semver` crate's `VersionReq`) where users notice:
//! - a bare version is an exact match (`1.2.3` means `=1.2.3`, not `^1.2.3`);
//! - versions may be partial or carry a `v` (`v1`, `1.2` read as 1.0.0 and 1.2.0);
//! - a pre-release only satisfies an AND group in which some comparator names a pre-release,
//!   whatever its major.minor.patch (Cargo only lets in pre-releases of the same triple);
//! - `x`, `X` and `*` are wildcards, `1.2 - 1.4.5` is a range, `,` and spaces both mean AND.
//!
//! Versions are `semver::Version`s (its ordering is semver's precedence; build metadata only
//! breaks ties).

pub use semver::Version;
use std::cmp::Ordering;

/// Parses a version leniently, as Masterminds `NewVersion`: an optional `v`, one to three
/// numeric parts (missing ones are 0), then an optional pre-release and build metadata.
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut numbers = [0u64; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        *slot = part.parse().ok()?;
    }
    let mut version = Version::new(numbers[0], numbers[1], numbers[2]);
    let (pre, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, Some(build)),
        None => (rest, None),
    };
    if let Some(pre) = pre.strip_prefix('-') {
        if pre.is_empty() || build == Some("") {
            return None;
        }
        version.pre = semver::Prerelease::new(pre).ok()?;
    } else if !pre.is_empty() {
        return None;
    }
    if let Some(build) = build {
        version.build = semver::BuildMetadata::new(build).ok()?;
    }
    Some(version)
}

/// A constraint that does not parse, named as Masterminds does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("improper constraint: {0}")]
pub struct InvalidConstraint(pub String);

/// Alternatives (`||`) of comparators that must all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraints {
    alternatives: Vec<Vec<Comparator>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Tilde,
    Caret,
}

/// Which part of a constraint's version was a wildcard or missing (`1.x`, `1`, `1.2.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wild {
    None,
    Patch,
    Minor,
    Major,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
    wild: Wild,
}

impl std::str::FromStr for Constraints {
    type Err = InvalidConstraint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidConstraint(text.to_string());
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let tokens = tokens(alternative);
            if tokens.is_empty() {
                return Err(invalid());
            }
            let mut comparators = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                // `A - B` is `>=A, <=B`.
                if tokens.get(i + 1).map(String::as_str) == Some("-") {
                    let (low, high) = (&tokens[i], tokens.get(i + 2).ok_or_else(invalid)?);
                    comparators.push(comparator(&format!(">={low}")).ok_or_else(invalid)?);
                    comparators.push(comparator(&format!("<={high}")).ok_or_else(invalid)?);
                    i += 3;
                    continue;
                }
                comparators.push(comparator(&tokens[i]).ok_or_else(invalid)?);
                i += 1;
            }
            alternatives.push(comparators);
        }
        Ok(Self { alternatives })
    }
}

/// The comparators of one alternative, an operator written apart from its version (`>= 1.2`)
/// joined to it.
fn tokens(alternative: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in alternative.replace(',', " ").split_whitespace() {
        match out.last_mut() {
            Some(last) if !last.is_empty() && last.bytes().all(|b| b"<>=!~^".contains(&b)) => {
                last.push_str(token)
            }
            _ => out.push(token.to_string()),
        }
    }
    out
}

fn comparator(token: &str) -> Option<Comparator> {
    let split = token.find(|c: char| !"<>=!~^".contains(c)).unwrap_or(token.len());
    let (op, version) = token.split_at(split);
    let op = match op {
        "" | "=" => Op::Equal,
        "!=" => Op::NotEqual,
        ">" => Op::Greater,
        ">=" | "=>" => Op::GreaterEqual,
        "<" => Op::Less,
        "<=" | "=<" => Op::LessEqual,
        "~" | "~>" => Op::Tilde,
        "^" => Op::Caret,
        _ => return None,
    };
    let (version, wild) = partial_version(version)?;
    Some(Comparator { op, version, wild })
}

/// A constraint's version, its wildcards and missing parts read as 0.
fn partial_version(text: &str) -> Option<(Version, Wild)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    let is_wild = |p: &str| matches!(p, "x" | "X" | "*");
    let mut numbers = [0u64; 3];
    let mut wild = Wild::None;
    for (i, slot) in numbers.iter_mut().enumerate() {
        let level = [Wild::Major, Wild::Minor, Wild::Patch][i];
        match parts.get(i) {
            None => wild = wild.max(level),
            Some(p) if is_wild(p) => wild = wild.max(level),
            Some(p) if wild == Wild::None && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                *slot = p.parse().ok()?
            }
            // `1.x.3`: a number after a wildcard is ignored, as Masterminds does.
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {}
            Some(_) => return None,
        }
    }
    let mut version = parse_version(&format!("{}.{}.{}{rest}", numbers[0], numbers[1], numbers[2]))?;
    if wild != Wild::None {
        version.pre = semver::Prerelease::EMPTY;
    }
    Some((version, wild))
}

impl Constraints {
    /// Parses a constraint (`>=1.2.0 <2`, `^1.2 || ~2.0`, `1.2.x`, `*`).
    pub fn parse(text: &str) -> Result<Self, InvalidConstraint> {
        text.parse()
    }

    /// Whether `version` satisfies one of the alternatives.
    pub fn matches(&self, version: &Version) -> bool {
        // A pre-release only satisfies a group in which some comparator names one.
        self.alternatives.iter().any(|all| {
            (version.pre.is_empty() || all.iter().any(|c| !c.version.pre.is_empty()))
                && all.iter().all(|c| c.matches(version))
        })
    }

    /// The item whose version (`version_of`, read leniently) is the highest that satisfies the
    /// constraint; of equal versions (`v1.0.0`, `1.0.0`), the first, as Flux's image policies.
    pub fn highest<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        version_of: impl Fn(&T) -> &str,
    ) -> Option<T> {
        items
            .into_iter()
            .filter_map(|item| parse_version(version_of(&item)).map(|v| (v, item)))
            .filter(|(v, _)| self.matches(v))
            .fold(None::<(Version, T)>, |best, (v, item)| match best {
                Some((b, kept)) if v.cmp_precedence(&b) != std::cmp::Ordering::Greater => Some((b, kept)),
                _ => Some((v, item)),
            })
            .map(|(_, item)| item)
    }
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        let c = &self.version;
        let cmp = v.cmp_precedence(c);
        match self.op {
            Op::Equal if self.wild == Wild::None => cmp == Ordering::Equal,
            Op::Equal | Op::Tilde => self.tilde(v, cmp),
            Op::NotEqual if self.wild == Wild::None => cmp != Ordering::Equal,
            Op::NotEqual => !self.tilde(v, cmp),
            Op::GreaterEqual => cmp != Ordering::Less,
            Op::Greater => match self.wild {
                Wild::None => cmp == Ordering::Greater,
                Wild::Major => cmp == Ordering::Greater,
                // `>1` is `>=2.0.0`, `>1.2` is `>=1.3.0`.
                Wild::Minor => v.major > c.major,
                Wild::Patch => (v.major, v.minor) > (c.major, c.minor),
            },
            Op::Less => cmp == Ordering::Less,
            Op::LessEqual => match self.wild {
                Wild::None => cmp != Ordering::Greater,
                // Masterminds' reading of `<=*`: 0.0.x only.
                Wild::Major => v.major == 0 && v.minor == 0,
                // `<=1` is `<2.0.0`, `<=1.2` is `<1.3.0`.
                Wild::Minor => v.major <= c.major,
                Wild::Patch => (v.major, v.minor) <= (c.major, c.minor),
            },
            Op::Caret => {
                if cmp == Ordering::Less {
                    return false;
                }
                if self.wild == Wild::Major {
                    // Masterminds' reading of `^*`: 0.0.0 only.
                    v.major == 0 && v.minor == 0 && v.patch == 0
                } else if c.major > 0 || self.wild == Wild::Minor {
                    // `^1.2.3` < 2.0.0; `^0` and `^0.x` < 1.0.0.
                    v.major == c.major
                } else if c.minor > 0 || self.wild == Wild::Patch {
                    v.major == 0 && v.minor == c.minor
                } else {
                    v.major == 0 && v.minor == 0 && v.patch == c.patch
                }
            }
        }
    }

    /// `~1.2.3` is `>=1.2.3 <1.3.0`; `~1` and `1.x` are `>=1.0.0 <2.0.0`; `*` is anything.
    fn tilde(&self, v: &Version, cmp: Ordering) -> bool {
        let c = &self.version;
        match self.wild {
            Wild::Major => true,
            // `~0.0.0` is anything.
            Wild::None if *c == Version::new(0, 0, 0) => true,
            Wild::Minor => cmp != Ordering::Less && v.major == c.major,
            Wild::Patch | Wild::None => cmp != Ordering::Less && v.major == c.major && v.minor == c.minor,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ok(constraint: &str, version: &str) -> bool {
        Constraints::parse(constraint)
            .unwrap()
            .matches(&parse_version(version).unwrap())
    }

    #[test]
    fn versions_are_read_leniently() {
        assert_eq!(parse_version("v1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(parse_version("1.2").unwrap(), Version::new(1, 2, 0));
        assert_eq!(
            parse_version("1.2.3-rc.1+b5").unwrap().to_string(),
            "1.2.3-rc.1+b5"
        );
        for bad in ["", "latest", "1.2.3.4", "1..2", "1.2.3-", "abc-1.0.0"] {
            assert!(parse_version(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bare_versions_are_exact_and_wildcards_are_ranges() {
        assert!(ok("1.2.3", "1.2.3"));
        assert!(!ok("1.2.3", "1.2.4"));
        assert!(ok("1.2.x", "1.2.9") && !ok("1.2.x", "1.3.0"));
        assert!(ok("1", "1.9.0") && !ok("1", "2.0.0"));
        assert!(ok("*", "9.9.9") && !ok("*", "1.0.0-rc.1"));
        assert!(!ok("!=1.2.3", "1.2.3") && ok("!=1.2.3", "1.2.4"));
    }

    #[test]
    fn ranges_and_operators() {
        assert!(ok(">=1.0.0 <2.0.0", "1.5.0") && !ok(">=1.0.0, <2.0.0", "2.0.0"));
        assert!(ok("^1.2", "1.9.0") && !ok("^1.2", "2.0.0") && !ok("^1.2", "1.1.0"));
        assert!(ok("^0.2.3", "0.2.9") && !ok("^0.2.3", "0.3.0"));
        assert!(ok("^0.0.3", "0.0.3") && !ok("^0.0.3", "0.0.4"));
        assert!(ok("~1.2.3", "1.2.9") && !ok("~1.2.3", "1.3.0"));
        assert!(ok("~1", "1.9.9") && !ok("~1", "2.0.0"));
        assert!(ok("<=1.2", "1.2.9") && !ok("<=1.2", "1.3.0"));
        assert!(ok(">1.2", "1.3.0") && !ok(">1.2", "1.2.9"));
        assert!(ok("1.2 - 1.4.5", "1.4.5") && !ok("1.2 - 1.4.5", "1.4.6"));
        assert!(ok(">= 1.2, < 3 || 5.x", "5.1.0") && !ok(">= 1.2 < 3 || 5.x", "4.0.0"));
        assert!(ok("v1.x", "v1.4.0"));
    }

    #[test]
    fn pre_releases_need_a_group_that_names_one() {
        assert!(!ok(">=1.0.0", "1.1.0-rc.1"));
        assert!(ok(">=1.0.0-0", "1.1.0-rc.1"));
        assert!(ok(">=1.0.0-alpha", "2.0.0-beta"));
        assert!(!ok(">=1.0.0-rc.2", "1.0.0-rc.1"));
        assert!(ok(">=1.0.0-0 <3", "2.0.0-rc.1") && !ok(">=1.0.0 <3 || 5", "2.0.0-rc.1"));
    }

    #[test]
    fn bad_constraints_are_refused() {
        for bad in ["", ">=", "1.2.3.4", "~>a", ">>1", "1 -"] {
            assert!(Constraints::parse(bad).is_err(), "{bad}");
        }
    }
}
