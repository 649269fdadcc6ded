//! Name references: once names have changed (prefix, suffix, namespace, hash), every field that
//! referred to an object by its old name is pointed at its new one, the way kustomize picks the
//! referral among candidates.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::Error;
use crate::builtin::BackReference;
use crate::fieldspec::{self, CreateKind, FieldSpec};
use crate::resource::{Gvk, ResId, Resource};

/// What the referral choice needs to know about each object.
struct Candidate {
    id: ResId,
    original_namespace: String,
    previous: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

pub fn fix(resources: &mut [Resource], references: &[BackReference]) -> Result<(), Error> {
    let candidates: Vec<Candidate> = resources
        .iter()
        .map(|r| Candidate {
            id: r.id(),
            original_namespace: r.original_id().effective_namespace().to_string(),
            previous: r.previous_ids.clone(),
            prefixes: r.name_prefixes.clone(),
            suffixes: r.name_suffixes.clone(),
        })
        .collect();
    // Only renamed objects can be referral targets; they are found by a previous name.
    let mut by_previous_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, candidate) in candidates.iter().enumerate() {
        for previous in &candidate.previous {
            let entry = by_previous_name.entry(previous.name.as_str()).or_default();
            if entry.last() != Some(&i) {
                entry.push(i);
            }
        }
    }
    if by_previous_name.is_empty() {
        return Ok(());
    }
    for (index, resource) in resources.iter_mut().enumerate() {
        let original_gvk = resource.original_id().gvk;
        let referrer = &candidates[index];
        let subset = Subset::of(resource, referrer);
        let role_ref = role_ref_gvk(&resource.object);
        for back in references {
            for spec in back.referrers.iter().filter(|s| s.selects(&original_gvk)) {
                let referral = Referral {
                    referrer,
                    back,
                    spec,
                    candidates: &candidates,
                    by_previous_name: &by_previous_name,
                    subset: &subset,
                    role_ref: role_ref.as_ref(),
                };
                let mut set = |node: &mut Value| referral.set(node);
                fieldspec::apply(&mut resource.object, spec, CreateKind::Nothing, &mut set).map_err(|e| {
                    Error::new(format!(
                        "updating name reference in '{}' field of '{}': {e}",
                        spec.path, referrer.id
                    ))
                })?;
            }
        }
    }
    Ok(())
}

/// kustomize's SubsetThatCouldBeReferencedByResource, as a predicate.
struct Subset {
    everything: bool,
    referrer: ResId,
    binding_namespaces: HashSet<String>,
}

impl Subset {
    fn of(resource: &Resource, referrer: &Candidate) -> Subset {
        let mut binding_namespaces = HashSet::new();
        if resource.kind() == "RoleBinding"
            && let Some(Value::Array(subjects)) = resource.object.get("subjects")
        {
            for subject in subjects {
                if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && let Some(ns) = subject.get("namespace").and_then(Value::as_str)
                {
                    binding_namespaces.insert(ns.to_string());
                }
            }
        }
        Subset {
            everything: referrer.id.gvk.is_cluster_scoped(),
            referrer: referrer.id.clone(),
            binding_namespaces,
        }
    }

    fn contains(&self, candidate: &Candidate) -> bool {
        let id = &candidate.id;
        self.everything
            || id.gvk.is_cluster_scoped()
            || id.same_namespace(&self.referrer)
            || self.binding_namespaces.contains(&id.namespace)
    }
}

fn role_ref_gvk(object: &Value) -> Option<Gvk> {
    let role_ref = object.get("roleRef")?;
    Some(Gvk {
        group: role_ref.get("apiGroup")?.as_str()?.to_string(),
        version: String::new(),
        kind: role_ref.get("kind")?.as_str()?.to_string(),
    })
}

struct Referral<'a> {
    referrer: &'a Candidate,
    back: &'a BackReference,
    spec: &'a FieldSpec,
    candidates: &'a [Candidate],
    by_previous_name: &'a HashMap<&'a str, Vec<usize>>,
    subset: &'a Subset,
    role_ref: Option<&'a Gvk>,
}

/// kustomize's SameEndingSubSlice.
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}

impl Referral<'_> {
    fn set(&self, node: &mut Value) -> Result<(), String> {
        match node {
            Value::String(_) => self.set_scalar(node),
            Value::Object(_) => self.set_mapping(node),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Null => {}
                        Value::String(_) => self.set_scalar(item)?,
                        Value::Object(_) => self.set_mapping(item)?,
                        other => {
                            return Err(format!(
                                "{other} is expected to be either a string or a map of string"
                            ));
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn set_scalar(&self, node: &mut Value) -> Result<(), String> {
        let Value::String(old) = node else { return Ok(()) };
        let Some(chosen) = self.select(old, &|_| true, false)? else {
            return Ok(());
        };
        let name = &self.candidates[chosen].id.name;
        if name != old {
            *node = Value::String(name.clone());
        }
        Ok(())
    }

    fn set_mapping(&self, node: &mut Value) -> Result<(), String> {
        let Some(map) = node.as_object_mut() else {
            return Ok(());
        };
        let Some(old) = map
            .get("name")
            .map(|v| v.as_str().unwrap_or_default().to_string())
        else {
            return Err("path config error; no 'name' field in node".into());
        };
        // With a namespace, the candidates are those originally in it, or else those now in it.
        let namespace = map.get("namespace").and_then(Value::as_str).map(str::to_string);
        let by_original = namespace.as_deref().is_some_and(|ns| {
            self.candidates.iter().any(|c| {
                self.subset.contains(c) && !c.id.gvk.is_cluster_scoped() && c.original_namespace == ns
            })
        });
        let in_namespace = |c: &Candidate| match namespace.as_deref() {
            None => true,
            Some(_) if c.id.gvk.is_cluster_scoped() => false,
            Some(ns) if by_original => c.original_namespace == ns,
            Some(ns) => c.id.effective_namespace() == ns,
        };
        let Some(chosen) = self.select(&old, &in_namespace, true)? else {
            return Ok(());
        };
        let id = &self.candidates[chosen].id;
        if id.name == old && id.namespace.is_empty() {
            return Ok(());
        }
        map.insert("name".into(), Value::String(id.name.clone()));
        if !id.namespace.is_empty() {
            map.insert("namespace".into(), Value::String(id.namespace.clone()));
        }
        Ok(())
    }

    /// kustomize's selectReferral: sieve the candidates down to one.
    fn select(
        &self,
        old_name: &str,
        pool: &dyn Fn(&Candidate) -> bool,
        compare_namespaces: bool,
    ) -> Result<Option<usize>, String> {
        let Some(named) = self.by_previous_name.get(old_name) else {
            return Ok(None);
        };
        let back = self.back;
        let role_ref = if self.spec.path.ends_with("roleRef/name") {
            self.role_ref
        } else {
            None
        };
        let referrer_scoped = !self.referrer.id.gvk.is_cluster_scoped();
        let mut found: Vec<usize> = named
            .iter()
            .copied()
            .filter(|&i| {
                let c = &self.candidates[i];
                self.subset.contains(c)
                    && pool(c)
                    && c.previous
                        .iter()
                        .any(|p| p.gvk.selected_by(&back.group, &back.version, &back.kind))
                    && role_ref.is_none_or(|g| {
                        c.previous
                            .iter()
                            .any(|p| p.gvk.selected_by(&g.group, "", &g.kind))
                    })
                    && (!referrer_scoped
                        || c.id.gvk.is_cluster_scoped()
                        || c.id.gvk.kind == "ServiceAccount"
                        || c.id.same_namespace(&self.referrer.id))
            })
            .collect();
        if found.len() == 1 {
            return Ok(Some(found[0]));
        }
        let affixes_equal = |c: &Candidate, allow_empty: bool| {
            let r = self.referrer;
            if allow_empty {
                (c.prefixes.is_empty() || r.prefixes.is_empty() || same_ending(&c.prefixes, &r.prefixes))
                    && (c.suffixes.is_empty()
                        || r.suffixes.is_empty()
                        || same_ending(&c.suffixes, &r.suffixes))
            } else {
                same_ending(&c.prefixes, &r.prefixes) && same_ending(&c.suffixes, &r.suffixes)
            }
        };
        found.retain(|&i| affixes_equal(&self.candidates[i], true));
        if found.len() > 1 {
            found.retain(|&i| affixes_equal(&self.candidates[i], false));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0])),
            _ => {
                let first = &self.candidates[found[0]].id;
                let identical = found.iter().all(|&i| {
                    let id = &self.candidates[i].id;
                    id.name == first.name && (!compare_namespaces || id.namespace == first.namespace)
                });
                if identical {
                    Ok(Some(found[0]))
                } else {
                    let ids: Vec<String> = found.iter().map(|&i| self.candidates[i].id.to_string()).collect();
                    Err(format!("found multiple possible referrals: {}", ids.join(", ")))
                }
            }
        }
    }
}
