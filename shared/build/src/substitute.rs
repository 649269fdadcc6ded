//! postBuild variable substitution with the semantics of Flux's envsubst: `${var}`,
//! `${var:=default}` (and `:-`, `=`, `-`), `$${var}` to escape, `$var` left alone, and strict
//! mode failing on undefined variables.

use std::collections::BTreeMap;

use driftless_api::kustomize::PostBuild;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

use crate::BuildError;

/// postBuild variables: `substituteFrom` in order (later wins), then the inline `substitute`.
pub async fn variables(
    client: &Client,
    namespace: &str,
    post_build: &PostBuild,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut vars = BTreeMap::new();
    for reference in post_build.substitute_from.iter().flatten() {
        let optional = reference.optional.unwrap_or(false);
        let message = |e: String| {
            format!(
                "substitute from '{}/{}' error: {e}",
                reference.kind, reference.name
            )
        };
        let missing = |e: String| BuildError::Missing(message(e));
        let unavailable = |e: kube::Error| BuildError::Unavailable(message(e.to_string()));
        match reference.kind.as_str() {
            "ConfigMap" => match Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
            {
                Ok(Some(cm)) => vars.extend(cm.data.unwrap_or_default()),
                Ok(None) if optional => {}
                Ok(None) => return Err(missing("not found".into())),
                Err(e) => return Err(unavailable(e)),
            },
            "Secret" => match Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
            {
                Ok(Some(secret)) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        vars.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                    }
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        vars.insert(k, v);
                    }
                }
                Ok(None) if optional => {}
                Ok(None) => return Err(missing("not found".into())),
                Err(e) => return Err(unavailable(e)),
            },
            other => {
                return Err(BuildError::Invalid(message(format!(
                    "unsupported kind '{other}'"
                ))));
            }
        }
    }
    vars.extend(post_build.substitute.clone().unwrap_or_default());
    Ok(vars)
}

/// Substitutes `vars` in every object (strictly, as Flux's StrictPostBuildSubstitutions gate
/// does by default), except those that opt out with `kustomize.toolkit.fluxcd.io/substitute:
/// disabled` as an annotation or label.
pub fn substitute_objects(objects: &mut [Value], vars: &BTreeMap<String, String>) -> Result<(), BuildError> {
    for object in objects.iter_mut() {
        let disabled = |field: &str| {
            object
                .pointer(&format!(
                    "/metadata/{field}/kustomize.toolkit.fluxcd.io~1substitute"
                ))
                .and_then(Value::as_str)
                == Some("disabled")
        };
        if disabled("annotations") || disabled("labels") {
            continue;
        }
        let text = driftless_kustomize::yaml::to_yaml(object);
        let substituted = substitute(&text, vars, true).map_err(|e| {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            BuildError::Invalid(format!("post build failed for '{name}': {e}"))
        })?;
        if substituted != text {
            *object = driftless_kustomize::yaml::parse_documents(&substituted)
                .map_err(|e| BuildError::Invalid(format!("post build produced invalid YAML: {e}")))?
                .into_iter()
                .next()
                .unwrap_or(Value::Null);
        }
    }
    Ok(())
}

/// Substitutes the variables in `input`. With `strict`, an undefined variable without a default
/// is an error naming it.
pub fn substitute(input: &str, vars: &BTreeMap<String, String>, strict: bool) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${var}` is the literal `${var}`.
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = after;
            continue;
        };
        let expression = &body[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let name = &expression[..name_end];
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            out.push('$');
            rest = after;
            continue;
        }
        let operator = &expression[name_end..];
        let value = vars.get(name);
        let replaced = if let Some(default) = operator
            .strip_prefix(":=")
            .or_else(|| operator.strip_prefix(":-"))
        {
            value
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        } else if let Some(default) = operator.strip_prefix('=').or_else(|| operator.strip_prefix('-')) {
            value.cloned().unwrap_or_else(|| default.to_string())
        } else if operator.is_empty() {
            match value {
                Some(v) => v.clone(),
                None if strict => return Err(format!("variable not set (strict mode): \"{name}\"")),
                None => String::new(),
            }
        } else {
            return Err(format!("unsupported substitution '${{{expression}}}'"));
        };
        out.push_str(&replaced);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("cluster".into(), "prod".into()), ("empty".into(), String::new())])
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let out = substitute(
            "a: ${cluster}-${region:=eu} ${empty:=x} $${kept} $plain ${empty}",
            &vars(),
            true,
        )
        .unwrap();
        assert_eq!(out, "a: prod-eu x ${kept} $plain ");
    }

    #[test]
    fn strict_mode_names_the_missing_variable() {
        let err = substitute("${missing}", &vars(), true).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        assert_eq!(substitute("${missing}", &vars(), false).unwrap(), "");
    }
}
