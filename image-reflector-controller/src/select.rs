//! Choosing the latest tag by an ImagePolicy's rule, as Flux does: `filterTags` first (a regex
//! the tag must match; `extract` expands its groups into the value ordered), then `semver`
//! (Masterminds constraints), `alphabetical` or `numerical`. The tag returned is always the
//! original tag, not the extracted value.
//!
//! Tags come in the store's order (descending bytes) and ties are broken as Flux breaks them:
//! semver keeps the first of equal versions (`v1.0.0` over `1.0.0`), numerical the last.

use driftless_api::image::{ImagePolicyChoice, TagFilter};
use driftless_semver::Constraints;

/// A policy that cannot work whatever the tags: stalls (`InvalidPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct InvalidPolicy(pub String);

/// A compiled ImagePolicy rule.
#[derive(Debug)]
pub struct Rule {
    order: Order,
    filter: Option<(regex::Regex, String)>,
}

#[derive(Debug)]
enum Order {
    SemVer(Constraints),
    Alphabetical { descending: bool },
    Numerical { descending: bool },
}

fn descending(order: Option<&str>) -> Result<bool, InvalidPolicy> {
    match order.map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("ASC") => Ok(false),
        Some("DESC") => Ok(true),
        Some(other) => Err(InvalidPolicy(format!("invalid order '{other}'"))),
    }
}

impl Rule {
    /// Compiles the policy and its tag filter.
    pub fn new(choice: &ImagePolicyChoice, filter: Option<&TagFilter>) -> Result<Self, InvalidPolicy> {
        let order = match (&choice.semver, &choice.alphabetical, &choice.numerical) {
            (Some(semver), None, None) => {
                Order::SemVer(Constraints::parse(&semver.range).map_err(|e| InvalidPolicy(e.to_string()))?)
            }
            (None, Some(a), None) => Order::Alphabetical {
                descending: descending(a.order.as_deref())?,
            },
            (None, None, Some(n)) => Order::Numerical {
                descending: descending(n.order.as_deref())?,
            },
            (None, None, None) => return Err(InvalidPolicy("no policy given".into())),
            _ => return Err(InvalidPolicy("exactly one policy is allowed".into())),
        };
        let filter = match filter.and_then(|f| f.pattern.as_deref().map(|p| (p, f.extract.clone()))) {
            Some((pattern, extract)) => {
                let re = regex::Regex::new(pattern).map_err(|e| {
                    InvalidPolicy(format!(
                        "failed to filter tags: invalid regular expression pattern '{pattern}': {e}"
                    ))
                })?;
                Some((re, extract.unwrap_or_default()))
            }
            None => None,
        };
        Ok(Self { order, filter })
    }

    /// The latest of `tags` (in store order); the error is Flux's message.
    pub fn latest<'a>(&self, tags: &'a [String]) -> Result<&'a str, String> {
        // (value ordered, original tag)
        let candidates: Vec<(String, &str)> = match &self.filter {
            None => tags.iter().map(|t| (t.clone(), t.as_str())).collect(),
            Some((re, extract)) => tags
                .iter()
                .filter_map(|tag| {
                    let caps = re.captures(tag)?;
                    if extract.is_empty() {
                        return Some((tag.clone(), tag.as_str()));
                    }
                    let mut value = String::new();
                    // Go's `Regexp.Expand` syntax (`$name`, `${name}`, `$1`, `$$`) is Rust's.
                    caps.expand(extract, &mut value);
                    Some((value, tag.as_str()))
                })
                .collect(),
        };
        if candidates.is_empty() {
            return Err("version list argument cannot be empty".into());
        }
        let chosen = match &self.order {
            Order::SemVer(constraints) => constraints
                // Flux reads versions of three dotted parts only (`1.2` is no version).
                .highest(&candidates, |(value, _)| {
                    if value.splitn(3, '.').count() == 3 {
                        value
                    } else {
                        ""
                    }
                })
                .map(|(_, tag)| *tag)
                .ok_or("unable to determine latest version from provided list")?,
            Order::Alphabetical { descending } => {
                let pick = if *descending {
                    candidates.iter().min_by(|a, b| a.0.cmp(&b.0))
                } else {
                    candidates.iter().max_by(|a, b| a.0.cmp(&b.0))
                };
                pick.map(|(_, t)| *t).unwrap_or_default()
            }
            Order::Numerical { descending } => {
                let mut best: Option<(f64, &str)> = None;
                for (value, tag) in &candidates {
                    let n: f64 = value
                        .parse()
                        .map_err(|_| format!("failed to parse invalid numeric value '{value}'"))?;
                    let keep = best.is_some_and(|(b, _)| if *descending { n > b } else { n < b });
                    if !keep {
                        best = Some((n, tag));
                    }
                }
                best.map(|(_, t)| t).unwrap_or_default()
            }
        };
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftless_api::image::{OrderPolicy, SemVerPolicy};

    fn tags(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        crate::tags::sort_descending(&mut v);
        v
    }

    fn semver(range: &str) -> ImagePolicyChoice {
        ImagePolicyChoice {
            semver: Some(SemVerPolicy { range: range.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn semver_picks_the_highest_in_range() {
        let t = tags(&[
            "1.0.0",
            "1.2.0",
            "2.0.0-rc.1",
            "1.10.0",
            "latest",
            "1.2",
            "v1.9.0",
        ]);
        let rule = Rule::new(&semver(">=1.0.0"), None).unwrap();
        assert_eq!(rule.latest(&t).unwrap(), "1.10.0");
        let rule = Rule::new(&semver(">=1.0.0-0"), None).unwrap();
        assert_eq!(rule.latest(&t).unwrap(), "2.0.0-rc.1");
        let rule = Rule::new(&semver("1.9.x"), None).unwrap();
        assert_eq!(rule.latest(&t).unwrap(), "v1.9.0");
        let rule = Rule::new(&semver(">=5"), None).unwrap();
        assert_eq!(
            rule.latest(&t).unwrap_err(),
            "unable to determine latest version from provided list"
        );
        // Equal versions: the first in store order wins, `v1.0.0` before `1.0.0`.
        let rule = Rule::new(&semver("1.0.0"), None).unwrap();
        assert_eq!(rule.latest(&tags(&["1.0.0", "v1.0.0"])).unwrap(), "v1.0.0");
        assert!(Rule::new(&semver("not a range"), None).is_err());
    }

    #[test]
    fn filters_extract_the_value_ordered() {
        let choice = ImagePolicyChoice {
            numerical: Some(OrderPolicy::default()),
            ..Default::default()
        };
        let filter = TagFilter {
            pattern: Some(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$".into()),
            extract: Some("$ts".into()),
        };
        let rule = Rule::new(&choice, Some(&filter)).unwrap();
        let t = tags(&[
            "main-abc123-1700000100",
            "main-def456-1700000900",
            "dev-1-9999999999",
            "1.0.0",
        ]);
        assert_eq!(rule.latest(&t).unwrap(), "main-def456-1700000900");
        let none = tags(&["dev-1"]);
        assert_eq!(
            rule.latest(&none).unwrap_err(),
            "version list argument cannot be empty"
        );
    }

    #[test]
    fn alphabetical_and_numerical_orders() {
        let alpha = |order: &str| ImagePolicyChoice {
            alphabetical: Some(OrderPolicy {
                order: Some(order.into()),
            }),
            ..Default::default()
        };
        let t = tags(&["RELEASE.2026-01-02", "RELEASE.2026-11-30", "RELEASE.2025-12-31"]);
        assert_eq!(
            Rule::new(&alpha("asc"), None).unwrap().latest(&t).unwrap(),
            "RELEASE.2026-11-30"
        );
        assert_eq!(
            Rule::new(&alpha("desc"), None).unwrap().latest(&t).unwrap(),
            "RELEASE.2025-12-31"
        );
        let num = ImagePolicyChoice {
            numerical: Some(OrderPolicy::default()),
            ..Default::default()
        };
        let rule = Rule::new(&num, None).unwrap();
        assert_eq!(rule.latest(&tags(&["9", "10", "100", "2"])).unwrap(), "100");
        assert_eq!(
            rule.latest(&tags(&["9", "x"])).unwrap_err(),
            "failed to parse invalid numeric value 'x'"
        );
    }
}
